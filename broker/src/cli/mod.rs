//! The `fjord` command-line tool: the operator's and developer's view of a Fjord cluster.
//!
//! Commands are a clap-derived tree. Global flags name the endpoints (`--bootstrap` for the
//! Kafka side, `--coordinator` for the ZooKeeper side), each with an `FJORD_*` environment
//! fallback, so scripts can set them once. Each top-level command lives in its own module:
//! `cluster`, `topics`, `produce`, `consume`, `groups`, `acls` and `users` speak Kafka to
//! the brokers (through
//! [`crate::client`]); `coord` speaks ZooKeeper to the coordinator (the znode tree and its
//! watches).
//!
//! Errors never panic: every failure is one line `error: ...` on stderr and a non-zero exit
//! status, so scripts can test `$?` and humans can read the reason.

mod acls;
mod cluster;
mod cluster_brokers;
pub mod console;
mod consume;
mod coord;
mod error;
mod four_letter;
mod group_reset;
mod groups;
mod kafka;
mod output;
mod placement;
mod produce;
mod progress;
mod reassign;
mod reassign_plan;
mod replica_moves;
mod signal;
mod table;
mod topic_health;
mod topic_offsets;
mod topics;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::acls::{AclsArgs, AclsCommand};
pub use self::cluster::ClusterArgs;
pub use self::consume::{ConsumeArgs, StartAt};
pub use self::coord::{CoordArgs, CoordCommand};
pub use self::error::CliError;
pub use self::group_reset::{ResetOffsetsArgs, TopicSelection};
pub use self::groups::{GroupsArgs, GroupsCommand};
pub use self::kafka::KafkaArgs;
pub use self::produce::ProduceArgs;
pub use self::topics::{TopicsArgs, TopicsCommand};
pub use self::users::{UsersArgs, UsersCommand};

/// `fjord [--bootstrap HOST:PORT] [--coordinator HOST:PORT] <command>`.
#[derive(Debug, Parser)]
#[command(name = "fjord", version, about = "Operate and inspect a Fjord cluster")]
pub struct Cli {
    /// A broker to bootstrap from (Kafka protocol).
    #[arg(
        long,
        global = true,
        env = "FJORD_BOOTSTRAP",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,

    /// The coordinator (ZooKeeper protocol): HOST:PORT, or several comma-separated, optionally
    /// followed by a /chroot path.
    #[arg(
        long,
        global = true,
        env = "FJORD_COORDINATOR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:2181"
    )]
    pub coordinator: String,

    #[command(flatten)]
    pub coordinator_security: crate::security::coordinator::CoordinatorSecurity,

    /// How tables print: `text` (aligned columns) or `json` (each table one line of JSON,
    /// an array of objects keyed by column name; notes go to stderr).
    #[arg(
        long,
        global = true,
        env = "FJORD_OUTPUT",
        value_enum,
        default_value = "text"
    )]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show brokers, the controller, and every topic's partitions.
    Cluster(ClusterArgs),
    /// List, create, describe, alter and delete topics.
    Topics(TopicsArgs),
    /// Send stdin lines as records to a topic.
    Produce(ProduceArgs),
    /// Print a topic's records.
    Consume(ConsumeArgs),
    /// List, describe and delete consumer groups, and reset their committed offsets.
    Groups(GroupsArgs),
    /// Browse, change and watch the coordinator's znode tree.
    Coord(CoordArgs),
    /// List, create and delete Kafka ACLs (needs brokers with --authorizer acl).
    Acls(AclsArgs),
    /// List, set and delete SCRAM users.
    Users(UsersArgs),
    /// Serve a web console for the cluster (read-only unless --allow-writes).
    Console(console::ConsoleArgs),
}

/// Runs a parsed command line to completion and returns the process exit status. Failures
/// are printed as one `error: ...` line on stderr.
pub fn run(cli: Cli) -> ExitCode {
    // One thread is plenty for a CLI and leaves the machine to the servers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`fjord coord tree / | head`): nothing more to say.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line, writing results to stdout.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    coord::set_security(cli.coordinator_security.clone());
    table::set_json(cli.output == OutputFormat::Json);
    match cli.command {
        Command::Cluster(args) => {
            cluster::run(&cli.bootstrap, &cli.coordinator, args, &mut out).await
        }
        Command::Topics(args) => topics::run(&cli.bootstrap, args, &mut out).await,
        Command::Produce(args) => produce::run(&cli.bootstrap, args).await,
        Command::Consume(args) => {
            // Records are many small lines: buffer them (consume flushes after each fetch).
            let mut out = std::io::BufWriter::new(out.lock());
            consume::run(&cli.bootstrap, args, &mut out).await
        }
        Command::Groups(args) => {
            groups::run(&cli.bootstrap, args, &mut out, &mut std::io::stderr()).await
        }
        Command::Coord(args) => coord::run(&cli.coordinator, args, &mut out).await,
        Command::Acls(args) => acls::run(&cli.bootstrap, args, &mut out).await,
        Command::Users(args) => users::run(&cli.bootstrap, &cli.coordinator, args, &mut out).await,
        Command::Console(args) => console::run(&cli.bootstrap, &cli.coordinator, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_parse_anywhere() {
        let cli = Cli::try_parse_from(["fjord", "coord", "--coordinator", "h:1/root", "ls", "/a"])
            .unwrap();
        assert_eq!(cli.coordinator, "h:1/root");
        let cli = Cli::try_parse_from([
            "fjord",
            "--coordinator",
            "h:2",
            "coord",
            "get",
            "/a",
            "--stat",
        ])
        .unwrap();
        assert_eq!(cli.coordinator, "h:2");
        let Command::Coord(args) = cli.command else {
            panic!("not coord");
        };
        assert!(matches!(args.command, CoordCommand::Get { stat: true, .. }));
    }

    #[test]
    fn coord_subcommands_parse() {
        let parse = |args: &[&str]| {
            let mut v = vec!["fjord", "coord"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|c| match c.command {
                Command::Coord(a) => a.command,
                other => panic!("not coord: {other:?}"),
            })
        };
        assert!(matches!(parse(&["ls"]).unwrap(), CoordCommand::Ls { path } if path == "/"));
        assert!(matches!(
            parse(&["create", "/q/x-", "data", "--ephemeral", "--sequential"]).unwrap(),
            CoordCommand::Create {
                ephemeral: true,
                sequential: true,
                container: false,
                data: Some(_),
                ..
            }
        ));
        assert!(parse(&["create", "/c", "--container", "--ephemeral"]).is_err());
        assert!(matches!(
            parse(&["set", "/a", "-x", "--version", "-1"]).unwrap(),
            CoordCommand::Set {
                version: Some(-1),
                ..
            }
        ));
        assert!(matches!(
            parse(&["delete", "/a", "--recursive", "--version", "3"]).unwrap(),
            CoordCommand::Delete {
                version: Some(3),
                recursive: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["watch", "/a", "--recursive"]).unwrap(),
            CoordCommand::Watch {
                recursive: true,
                ..
            }
        ));
        assert!(parse(&["get"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut v = vec!["fjord"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.command)
    }

    #[test]
    fn kafka_flags_parse_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "fjord",
            "topics",
            "list",
            "--bootstrap",
            "b:9",
            "--request-timeout-ms",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.bootstrap, "b:9");
        let Command::Topics(t) = cli.command else {
            panic!("not topics");
        };
        assert_eq!(t.kafka.request_timeout_ms, 7);
        assert!(matches!(t.command, TopicsCommand::List { .. }));
    }

    #[test]
    fn topics_subcommands_parse() {
        let Command::Topics(t) = parse(&[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
        ])
        .unwrap() else {
            panic!("not topics")
        };
        let TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            ..
        } = t.command
        else {
            panic!("not create")
        };
        assert_eq!(name, "orders");
        assert_eq!((partitions, replication_factor), (Some(3), Some(2)));
        assert_eq!(configs.len(), 2);
        assert!(parse(&["topics", "create", "x", "--partitions", "0"]).is_err());
        assert!(parse(&["topics", "create", "x", "--config", "novalue"]).is_err());
        // alter needs at least one change.
        assert!(parse(&["topics", "alter", "x"]).is_err());
        assert!(parse(&["topics", "alter", "x", "--delete-config", "retention.ms"]).is_ok());
        assert!(parse(&["topics", "describe", "x", "--all-configs"]).is_ok());
        assert!(parse(&["topics", "delete", "x"]).is_ok());
    }

    #[test]
    fn produce_and_consume_parse() {
        let Command::Produce(p) = parse(&[
            "produce",
            "t",
            "-K",
            ":",
            "-H",
            "a=b",
            "--acks",
            "1",
            "--compression",
            "zstd",
            "--batch-size",
            "10",
            "-p",
            "2",
        ])
        .unwrap() else {
            panic!("not produce")
        };
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.headers, vec![("a".to_owned(), "b".to_owned())]);
        assert_eq!(p.acks, crate::client::Acks::Leader);
        assert_eq!(p.compression, crate::client::Compression::Zstd);
        assert_eq!((p.batch_size, p.partition), (10, Some(2)));
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "--batch-size", "0"]).is_err());

        let Command::Consume(c) = parse(&[
            "consume",
            "t",
            "--from",
            "@5",
            "-f",
            "-n",
            "3",
            "--print-key",
            "--print-offset",
        ])
        .unwrap() else {
            panic!("not consume")
        };
        assert_eq!(c.from, StartAt::Timestamp(5));
        assert!(c.follow && c.print_key && c.print_offset && !c.print_headers);
        assert_eq!(c.count, Some(3));
        let Command::Consume(c) = parse(&["consume", "t"]).unwrap() else {
            panic!("not consume")
        };
        assert_eq!(c.from, StartAt::Beginning);
    }

    fn groups(args: &[&str]) -> Result<GroupsCommand, clap::Error> {
        let mut v = vec!["groups"];
        v.extend_from_slice(args);
        parse(&v).map(|c| match c {
            Command::Groups(g) => g.command,
            other => panic!("not groups: {other:?}"),
        })
    }

    #[test]
    fn groups_subcommands_parse() {
        assert!(matches!(groups(&["list"]).unwrap(), GroupsCommand::List));
        assert!(matches!(
            groups(&["describe", "g", "--members"]).unwrap(),
            GroupsCommand::Describe { group: Some(group), members: true, all: false } if group == "g"
        ));
        assert!(groups(&["describe"]).is_err());
        let GroupsCommand::Delete { groups: names } = groups(&["delete", "a", "b"]).unwrap() else {
            panic!("not delete")
        };
        assert_eq!(names, ["a", "b"]);
        assert!(groups(&["delete"]).is_err());
        // Kafka flags after the subcommand.
        let Command::Groups(g) = parse(&["groups", "list", "--retries", "2"]).unwrap() else {
            panic!("not groups")
        };
        assert_eq!(g.kafka.retries, 2);
    }

    #[test]
    fn reset_offsets_parses() {
        let reset = |args: &[&str]| {
            let mut v = vec!["reset-offsets", "g"];
            v.extend_from_slice(args);
            groups(&v).map(|c| match c {
                GroupsCommand::ResetOffsets(r) => r,
                other => panic!("not reset-offsets: {other:?}"),
            })
        };
        let r = reset(&[
            "--topic",
            "orders:0,2",
            "--topic",
            "audit",
            "--shift-by",
            "-3",
        ])
        .unwrap();
        assert_eq!(r.group, "g");
        assert_eq!(
            r.topics,
            vec![
                TopicSelection {
                    topic: "orders".into(),
                    partitions: Some(vec![0, 2])
                },
                TopicSelection {
                    topic: "audit".into(),
                    partitions: None
                },
            ]
        );
        assert_eq!(r.shift_by, Some(-3));
        assert!(!r.execute);
        let r = reset(&[
            "--all-topics",
            "--to-datetime",
            "1970-01-01T00:00:01Z",
            "--execute",
        ])
        .unwrap();
        assert!(r.all_topics && r.execute);
        assert_eq!(r.to_datetime, Some(1000));
        assert!(
            reset(&["--topic", "t", "--to-earliest"])
                .unwrap()
                .to_earliest
        );
        assert_eq!(
            reset(&["--topic", "t", "--to-offset", "7"])
                .unwrap()
                .to_offset,
            Some(7)
        );
        // Exactly one target, at least one scope.
        assert!(reset(&["--topic", "t"]).is_err());
        assert!(reset(&["--topic", "t", "--to-earliest", "--to-latest"]).is_err());
        assert!(reset(&["--to-earliest"]).is_err());
        assert!(reset(&["--topic", "t", "--to-offset", "-1"]).is_err());
        assert!(reset(&["--topic", "t:x", "--to-latest"]).is_err());
        assert!(reset(&["--topic", "t", "--to-datetime", "noon"]).is_err());
    }

    #[test]
    fn cluster_parses() {
        let Command::Cluster(c) = parse(&["cluster", "--registrations"]).unwrap() else {
            panic!("not cluster")
        };
        assert!(c.registrations);
    }
}
