//! The `fjord` command-line tool: the operator's and developer's view of a Fjord cluster.
//!
//! Commands are a clap-derived tree. Global flags name the endpoints (`--bootstrap` for the
//! Kafka side, `--coordinator` for the ZooKeeper side), each with an `FJORD_*` environment
//! fallback, so scripts can set them once. Each top-level command lives in its own module;
//! today that is only `coord` (the znode tree and its watches).
//!
//! Errors never panic: every failure is one line `error: ...` on stderr and a non-zero exit
//! status, so scripts can test `$?` and humans can read the reason.

mod coord;
mod error;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::coord::{CoordArgs, CoordCommand};
pub use self::error::CliError;

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

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Browse, change and watch the coordinator's znode tree.
    Coord(CoordArgs),
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
    match cli.command {
        Command::Coord(args) => coord::run(&cli.coordinator, args, &mut out).await,
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
        let Command::Coord(args) = cli.command;
        assert!(matches!(args.command, CoordCommand::Get { stat: true, .. }));
    }

    #[test]
    fn coord_subcommands_parse() {
        let parse = |args: &[&str]| {
            let mut v = vec!["fjord", "coord"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|c| match c.command {
                Command::Coord(a) => a.command,
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
}
