//! `fjord coord`: the coordinator's znode tree from the command line.
//!
//! Every invocation opens a session, runs one command and closes the session again, so an
//! ephemeral node created here lives only as long as the command, and no session is left for
//! the server to expire. `watch` keeps its session until interrupted (SIGINT or SIGTERM),
//! printing one `EventType /path` line per event as it arrives, so it can be piped into other
//! tools; the persistent watch it sets is re-registered by the client after reconnects.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use fjord_shared::coord_client::{
    Acl, AddWatchMode, Client, ConnectOptions, CreateMode, Error, ErrorCode, Event, SessionEvent,
};

use super::error::CliError;
use super::output::{data_text, write_stat};
use super::signal::interrupted;
use crate::security::coordinator::CoordinatorSecurity;

/// `fjord coord [options] <command>`.
#[derive(Debug, Args)]
pub struct CoordArgs {
    /// How long to keep trying to reach the coordinator, in milliseconds.
    #[arg(
        long,
        env = "FJORD_CONNECT_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 3000
    )]
    pub connect_timeout_ms: u64,

    /// The session timeout to ask for, in milliseconds (the server clamps it).
    #[arg(
        long,
        env = "FJORD_SESSION_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u64,

    #[command(subcommand)]
    pub command: CoordCommand,
}

/// The `coord` commands.
#[derive(Debug, Subcommand)]
pub enum CoordCommand {
    /// List a node's children, one name per line, sorted.
    Ls {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a node and all its descendants, indented by depth.
    Tree {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a node's data (as text when UTF-8, escaped bytes otherwise).
    Get {
        path: String,
        /// Also print the node's stat.
        #[arg(long)]
        stat: bool,
    },
    /// Print a node's stat (all 11 fields, named as zkCli names them).
    Stat { path: String },
    /// Create a node and print its path (with the sequence number, if sequential).
    Create {
        path: String,
        /// The node's data (empty if omitted).
        #[arg(allow_hyphen_values = true)]
        data: Option<String>,
        /// Ephemeral: removed when this command's session closes, i.e. when it exits.
        #[arg(long, conflicts_with = "container")]
        ephemeral: bool,
        /// Append a 10-digit sequence number to the name.
        #[arg(long, conflicts_with = "container")]
        sequential: bool,
        /// A container node: removed by the server once its last child is gone.
        #[arg(long)]
        container: bool,
    },
    /// Replace a node's data.
    #[command(allow_negative_numbers = true)]
    Set {
        path: String,
        #[arg(allow_hyphen_values = true)]
        data: String,
        /// Only if the node has this data version (-1: any).
        #[arg(long, value_name = "N")]
        version: Option<i32>,
    },
    /// Delete a node.
    #[command(allow_negative_numbers = true)]
    Delete {
        path: String,
        /// Only if the node has this data version (-1: any).
        #[arg(long, value_name = "N")]
        version: Option<i32>,
        /// Delete the node's descendants first (not atomic: nodes are deleted one by one).
        #[arg(long)]
        recursive: bool,
    },
    /// Print the node's events (`NodeDataChanged /a/b`, ...) until Ctrl-C.
    Watch {
        path: String,
        /// Also watch every descendant.
        #[arg(long)]
        recursive: bool,
    },
    /// Print a node's ACL, one `scheme:id:perms` line per entry (perms from cdrwa).
    GetAcl { path: String },
    /// Replace a node's ACL: entries `scheme:id:perms`, e.g. `world:anyone:r`,
    /// `sasl:kafka:cdrwa`, `x509:CN=broker1:cdrwa`, `digest:user:HASH:cdrwa`.
    SetAcl {
        path: String,
        #[arg(required = true, value_name = "SCHEME:ID:PERMS")]
        acl: Vec<String>,
        /// Only if the node has this ACL version (-1: any).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        version: i32,
    },
    /// The coordinator ensemble's voting members: list them, add one, remove one.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Every ephemeral node under a path, with the session that owns it: one
    /// `PATH 0xSESSION` line each, sorted by path.
    Ephemerals {
        #[arg(default_value = "/")]
        path: String,
    },
    /// The number of nodes under a path (all descendants, not counting the node itself).
    Count { path: String },
    /// Waits until the member this command is connected to has caught up with the leader
    /// as of now (ZooKeeper's sync), then prints the path.
    Sync {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Who this command's session is: one `scheme:id` line per identity.
    Whoami,
    /// Sends a four-letter word (`ruok`, `srvr`, `stat`, `mntr`, `cons`, `dump`, `wchs`,
    /// `wchc`, `wchp`, `envi`, `conf`, `isro`) to the first coordinator address and
    /// prints the answer.
    #[command(name = "4lw")]
    FourLetter { word: String },
}

const PERMS: [(char, i32); 5] = [
    ('c', fjord_shared::jute::perms::CREATE),
    ('d', fjord_shared::jute::perms::DELETE),
    ('r', fjord_shared::jute::perms::READ),
    ('w', fjord_shared::jute::perms::WRITE),
    ('a', fjord_shared::jute::perms::ADMIN),
];

/// `scheme:id:perms` (the id may itself hold ':', as a digest's does).
fn parse_acl_entry(text: &str) -> Result<Acl, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{text:?} is not SCHEME:ID:PERMS (perms from cdrwa)"
        ))
    };
    let (scheme, rest) = text.split_once(':').ok_or_else(bad)?;
    let (id, perms) = rest.rsplit_once(':').ok_or_else(bad)?;
    let mut bits = 0;
    for c in perms.chars() {
        bits |= PERMS
            .iter()
            .find(|(p, _)| *p == c.to_ascii_lowercase())
            .ok_or_else(bad)?
            .1;
    }
    Ok(Acl {
        perms: bits,
        id: fjord_shared::coord_client::Id {
            scheme: scheme.to_owned(),
            id: id.to_owned(),
        },
    })
}

fn acl_entry_text(a: &Acl) -> String {
    let perms: String = PERMS
        .iter()
        .filter(|(_, bit)| a.perms & bit != 0)
        .map(|(c, _)| *c)
        .collect();
    format!("{}:{}:{perms}", a.id.scheme, a.id.id)
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// One `server.ID=HOST:PORT:ROLE` line per member, then the configuration's version.
    List,
    /// Adds a voting member, given as ID=HOST:PORT (its peer address). It must already be
    /// running (`fjord-coordinator --id ID --peer-listen HOST:PORT ...` on an empty data
    /// directory); it catches up first, then gets a vote.
    Add { member: String },
    /// Removes a voting member by id.
    Remove { id: u64 },
}

/// How this process reaches the coordinator (TLS, SASL, digest), from the global flags.
static SECURITY: std::sync::OnceLock<CoordinatorSecurity> = std::sync::OnceLock::new();

/// Records the coordinator security flags for every session this process opens.
pub(crate) fn set_security(security: CoordinatorSecurity) {
    let _ = SECURITY.set(security);
}

/// Opens a session with `coordinator`, with the coordinator security flags applied. An
/// authenticated session creates znodes under Kafka's ACL policy (the CLI writes SCRAM
/// credentials that only their owner may read).
pub(crate) async fn open(coordinator: &str, mut opts: ConnectOptions) -> Result<Client, CliError> {
    opts.secure_acls = SECURITY
        .get()
        .is_some_and(CoordinatorSecurity::authenticates);
    let opts = match SECURITY.get() {
        Some(s) => s.apply(opts).map_err(|e| CliError::Usage(e.to_string()))?,
        None => opts,
    };
    Client::connect(opts)
        .await
        .map_err(|source| CliError::Connect {
            addr: coordinator.to_owned(),
            source,
        })
}

/// Connects to `coordinator`, runs one command, and closes the session.
pub async fn run(coordinator: &str, args: CoordArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if let CoordCommand::FourLetter { word } = &args.command {
        return super::four_letter::run(coordinator, word, args.connect_timeout_ms, out).await;
    }
    let opts = ConnectOptions::new(coordinator)
        .connect_timeout(Duration::from_millis(args.connect_timeout_ms))
        .session_timeout(Duration::from_millis(args.session_timeout_ms));
    let client = open(coordinator, opts).await?;
    let result = execute(&client, args.command, out).await;
    // The command's outcome is what the user asked about; a failed close only leaves the
    // session to expire on the server, so it is worth a warning, not a failure.
    if let Err(e) = client.close().await {
        tracing::warn!(error = %e, "closing the coordinator session failed");
    }
    result
}

async fn execute(
    client: &Client,
    command: CoordCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        CoordCommand::Ls { path } => {
            let mut children = client
                .get_children(&path, false)
                .await
                .map_err(CliError::at(&path))?;
            children.sort();
            for child in children {
                writeln!(out, "{child}")?;
            }
        }
        CoordCommand::Tree { path } => tree(client, &path, out).await?,
        CoordCommand::Get { path, stat } => {
            let (data, st) = client
                .get_data(&path, false)
                .await
                .map_err(CliError::at(&path))?;
            writeln!(out, "{}", data_text(&data))?;
            if stat {
                write_stat(out, &st)?;
            }
        }
        CoordCommand::Stat { path } => match client
            .exists(&path, false)
            .await
            .map_err(CliError::at(&path))?
        {
            Some(st) => write_stat(out, &st)?,
            None => return Err(CliError::at(&path)(Error::Zk(ErrorCode::NoNode))),
        },
        CoordCommand::Create {
            path,
            data,
            ephemeral,
            sequential,
            container,
        } => {
            let mode = match (container, ephemeral, sequential) {
                (true, _, _) => CreateMode::Container,
                (false, false, false) => CreateMode::Persistent,
                (false, true, false) => CreateMode::Ephemeral,
                (false, false, true) => CreateMode::PersistentSequential,
                (false, true, true) => CreateMode::EphemeralSequential,
            };
            let data = data.unwrap_or_default().into_bytes();
            let created = client
                .create(&path, data, &Acl::open_unsafe(), mode)
                .await
                .map_err(CliError::at(&path))?;
            writeln!(out, "{created}")?;
        }
        CoordCommand::GetAcl { path } => {
            let (acl, _) = client.get_acl(&path).await.map_err(CliError::at(&path))?;
            for a in &acl {
                writeln!(out, "{}", acl_entry_text(a))?;
            }
        }
        CoordCommand::SetAcl { path, acl, version } => {
            let acl = acl
                .iter()
                .map(|e| parse_acl_entry(e))
                .collect::<Result<Vec<_>, _>>()?;
            let version = (version >= 0).then_some(version);
            client
                .set_acl(&path, &acl, version)
                .await
                .map_err(CliError::at(&path))?;
        }
        CoordCommand::Set {
            path,
            data,
            version,
        } => {
            client
                .set_data(&path, data.into_bytes(), version)
                .await
                .map_err(CliError::at(&path))?;
        }
        CoordCommand::Delete {
            path,
            version,
            recursive,
        } => {
            if recursive {
                delete_descendants(client, &path).await?;
            }
            client
                .delete(&path, version)
                .await
                .map_err(CliError::at(&path))?;
        }
        CoordCommand::Watch { path, recursive } => watch(client, &path, recursive, out).await?,
        CoordCommand::Ephemerals { path } => {
            let mut found = Vec::new();
            ephemerals(client, &path, &mut found).await?;
            found.sort();
            for (p, owner) in found {
                writeln!(out, "{p} {owner:#x}")?;
            }
        }
        CoordCommand::Count { path } => {
            let n = client
                .get_all_children_number(&path)
                .await
                .map_err(CliError::at(&path))?;
            writeln!(out, "{n}")?;
        }
        CoordCommand::Sync { path } => {
            let synced = client.sync(&path).await.map_err(CliError::at(&path))?;
            writeln!(out, "{synced}")?;
        }
        CoordCommand::Whoami => {
            let who = client
                .who_am_i()
                .await
                .map_err(|e| CliError::Coordinator(e.to_string()))?;
            for info in who {
                writeln!(out, "{}:{}", info.auth_scheme, info.user)?;
            }
        }
        // Answered by `run` without a session.
        CoordCommand::FourLetter { .. } => {}
        CoordCommand::Members(m) => {
            const CONFIG: &str = "/zookeeper/config";
            let data = match m {
                MembersCommand::List => {
                    client.sync(CONFIG).await.map_err(CliError::at(CONFIG))?;
                    client
                        .get_data(CONFIG, false)
                        .await
                        .map_err(CliError::at(CONFIG))?
                        .0
                }
                MembersCommand::Add { member } => {
                    let Some((id, addr)) = member.split_once('=') else {
                        return Err(CliError::Usage(format!("{member:?} is not ID=HOST:PORT")));
                    };
                    let spec = format!("server.{}={}", id.trim(), addr.trim());
                    client
                        .reconfig(&spec, "", "")
                        .await
                        .map_err(CliError::at(CONFIG))?
                        .0
                }
                MembersCommand::Remove { id } => {
                    client
                        .reconfig("", &id.to_string(), "")
                        .await
                        .map_err(CliError::at(CONFIG))?
                        .0
                }
            };
            writeln!(out, "{}", data_text(&data))?;
        }
    }
    Ok(())
}

/// The path of `child` under `parent`.
fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Prints `path`, then each descendant's name indented two spaces per level, children in
/// name order. Nodes deleted while walking are skipped.
async fn tree(client: &Client, path: &str, out: &mut dyn Write) -> Result<(), CliError> {
    // An explicit stack instead of recursion: depth is unbounded and async recursion boxes.
    let mut stack = vec![(path.to_owned(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        let children = match client.get_children(&node, false).await {
            Ok(c) => c,
            Err(Error::Zk(ErrorCode::NoNode)) if depth > 0 => continue,
            Err(e) => return Err(CliError::at(&node)(e)),
        };
        let name = if depth == 0 {
            node.as_str()
        } else {
            node.rsplit('/').next().unwrap_or(&node)
        };
        writeln!(out, "{}{name}", "  ".repeat(depth))?;
        let mut children = children;
        children.sort();
        for child in children.into_iter().rev() {
            stack.push((child_path(&node, &child), depth + 1));
        }
    }
    Ok(())
}

/// Deletes every descendant of `path`, deepest first. Nodes that vanish meanwhile are fine.
async fn delete_descendants(client: &Client, path: &str) -> Result<(), CliError> {
    let mut found = Vec::new();
    let mut next = 0;
    let mut frontier = vec![path.to_owned()];
    // Breadth-first listing: `found` ends up with every parent before its children.
    while let Some(node) = frontier.get(next).cloned() {
        next += 1;
        match client.get_children(&node, false).await {
            Ok(children) => {
                for child in children {
                    let p = child_path(&node, &child);
                    frontier.push(p.clone());
                    found.push(p);
                }
            }
            Err(Error::Zk(ErrorCode::NoNode)) if node != path => {}
            Err(e) => return Err(CliError::at(&node)(e)),
        }
    }
    for node in found.iter().rev() {
        match client.delete(node, None).await {
            Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => {}
            Err(e) => return Err(CliError::at(node)(e)),
        }
    }
    Ok(())
}

/// Sets a persistent (optionally recursive) watch and prints its events until interrupted.
async fn watch(
    client: &Client,
    path: &str,
    recursive: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Subscribe first so no event between the watch being set and the loop is missed.
    let mut events = client.events();
    let mode = if recursive {
        AddWatchMode::PersistentRecursive
    } else {
        AddWatchMode::Persistent
    };
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    client
        .add_watch(path, mode)
        .await
        .map_err(CliError::at(path))?;
    eprintln!(
        "watching {path}{}; Ctrl-C to stop",
        if recursive {
            " and its descendants"
        } else {
            ""
        }
    );
    loop {
        tokio::select! {
            r = &mut interrupted => return r.map_err(CliError::Signal),
            event = events.recv() => match event {
                Some(Event::Watch(w)) => {
                    writeln!(out, "{} {}", w.event_type, w.path)?;
                    out.flush()?;
                }
                Some(Event::Session(SessionEvent::Disconnected)) => {
                    tracing::warn!("connection to the coordinator lost; reconnecting");
                }
                Some(Event::Session(SessionEvent::Connected)) => {
                    tracing::warn!("reconnected; the watch is re-registered");
                }
                Some(Event::Session(SessionEvent::Expired)) | None => {
                    return Err(CliError::Session(Error::SessionExpired));
                }
                Some(Event::Session(_)) => {}
            },
        }
    }
}

/// The ephemeral nodes at and under `path`, with their owners.
async fn ephemerals(
    client: &Client,
    path: &str,
    found: &mut Vec<(String, i64)>,
) -> Result<(), CliError> {
    let mut pending = vec![path.to_owned()];
    while let Some(p) = pending.pop() {
        let Some(st) = client.exists(&p, false).await.map_err(CliError::at(&p))? else {
            continue;
        };
        if st.ephemeral_owner != 0 {
            found.push((p.clone(), st.ephemeral_owner));
        }
        if st.num_children == 0 {
            continue;
        }
        let children = match client.get_children(&p, false).await {
            Ok(c) => c,
            // Gone meanwhile: nothing under it to list.
            Err(Error::Zk(ErrorCode::NoNode)) => continue,
            Err(e) => return Err(CliError::at(&p)(e)),
        };
        for c in children {
            pending.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_join_under_the_root_and_elsewhere() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }

    #[test]
    fn acl_entries_round_trip() {
        for text in [
            "world:anyone:r",
            "sasl:kafka:cdrwa",
            "x509:CN=broker1,O=Fjord:cdrwa",
            "digest:user:D/InIHSb7yEEbrWz8b9l71RjZJU=:rw",
        ] {
            let acl = parse_acl_entry(text).unwrap();
            assert_eq!(acl_entry_text(&acl), text);
        }
        assert_eq!(
            parse_acl_entry("world:anyone:cdrwa").unwrap().perms,
            fjord_shared::jute::perms::ALL
        );
        for bad in ["world", "world:anyone", "world:anyone:x"] {
            assert!(parse_acl_entry(bad).is_err(), "{bad}");
        }
    }
}
