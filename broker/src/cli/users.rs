//! `fjord users`: SCRAM users, as `kafka-configs.sh --entity-type users` manages them, over
//! the Kafka admin APIs. The password is salted and hashed here; only the salted password
//! reaches the brokers, which store Kafka's credential format in the coordinator.
//!
//! - `list`: every user and its mechanisms.
//! - `set-scram USER [--mechanism M] [--iterations N]`: the password comes from
//!   `--password-file`, the `FJORD_USER_PASSWORD` environment variable, or stdin (one line),
//!   never from the command line, where other users of the machine could read it.
//! - `delete USER [--mechanism M]`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::error::CliError;
use super::kafka::KafkaArgs;
use super::table::Table;
use crate::security::admin::{alter_credentials, CredentialChange};
use crate::security::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use fjord_shared::coord_client::ConnectOptions;
use std::time::Duration;

/// `fjord users <command>`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(subcommand)]
    pub command: UsersCommand,
}

/// Which SCRAM mechanisms a command touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MechanismArg {
    #[value(name = "SCRAM-SHA-256")]
    Sha256,
    #[value(name = "SCRAM-SHA-512")]
    Sha512,
    /// Both.
    #[value(name = "both")]
    Both,
}

impl MechanismArg {
    fn mechanisms(self) -> Vec<Mechanism> {
        match self {
            MechanismArg::Sha256 => vec![Mechanism::Sha256],
            MechanismArg::Sha512 => vec![Mechanism::Sha512],
            MechanismArg::Both => vec![Mechanism::Sha256, Mechanism::Sha512],
        }
    }
}

/// The `users` commands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users with SCRAM credentials.
    List,
    /// Set a user's SCRAM password (creating the user).
    SetScram {
        user: String,
        #[arg(long, value_enum, default_value = "both", ignore_case = true)]
        mechanism: MechanismArg,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        iterations: u32,
        /// Read the password from this file (its first line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Write the credential straight to the coordinator (`--coordinator`) instead of
        /// going through a broker, as `kafka-configs --zookeeper` did: for creating the
        /// first (super) user of a cluster whose brokers require authentication.
        #[arg(long)]
        via_coordinator: bool,
    },
    /// Delete a user's SCRAM credentials.
    Delete {
        user: String,
        #[arg(long, value_enum, default_value = "both", ignore_case = true)]
        mechanism: MechanismArg,
    },
}

/// The password: from the file, `FJORD_USER_PASSWORD`, or the first line of stdin.
fn password(file: Option<PathBuf>) -> Result<String, CliError> {
    let text = if let Some(path) = file {
        std::fs::read_to_string(&path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
    } else if let Ok(p) = std::env::var("FJORD_USER_PASSWORD") {
        p
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(CliError::Input)?;
        line
    };
    let p = text.lines().next().unwrap_or("").to_owned();
    if p.is_empty() {
        return Err(CliError::Usage(
            "no password: give --password-file, set FJORD_USER_PASSWORD, or type it on stdin"
                .into(),
        ));
    }
    Ok(p)
}

/// Writes credentials directly to the coordinator.
async fn set_via_coordinator(
    coordinator: &str,
    user: &str,
    password: &str,
    mechanisms: &[Mechanism],
    iterations: u32,
) -> Result<(), CliError> {
    let opts = ConnectOptions::new(coordinator).connect_timeout(Duration::from_secs(5));
    let client = super::coord::open(coordinator, opts).await?;
    let mut changes = Vec::new();
    for m in mechanisms {
        let c = Credential::generate(*m, password, iterations)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        changes.push(CredentialChange::Set(*m, c));
    }
    let result = alter_credentials(&client, user, &changes)
        .await
        .map_err(|e| CliError::Usage(format!("cannot store the credentials: {e}")));
    let _ = client.close().await;
    result
}

pub async fn run(
    bootstrap: &str,
    coordinator: &str,
    args: UsersArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match args.command {
        UsersCommand::List => {
            let client = args.kafka.connect(bootstrap).await?;
            let mut users = client.describe_scram_users(None).await?;
            users.sort();
            let mut table = Table::new(&["USER", "MECHANISMS"]);
            for (user, mechs) in users {
                let list: Vec<String> = mechs
                    .iter()
                    .map(|(m, i)| format!("{} (iterations {i})", m.name()))
                    .collect();
                table.row(vec![user, list.join(", ")]);
            }
            table.write(out, "")?;
        }
        UsersCommand::SetScram {
            user,
            mechanism,
            iterations,
            password_file,
            via_coordinator,
        } => {
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(CliError::Usage(format!(
                    "--iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}"
                )));
            }
            let password = password(password_file)?;
            if via_coordinator {
                let mechs = mechanism.mechanisms();
                set_via_coordinator(coordinator, &user, &password, &mechs, iterations).await?;
                for m in mechs {
                    writeln!(
                        out,
                        "set {} credential of {user} in the coordinator",
                        m.name()
                    )?;
                }
                return Ok(());
            }
            let client = args.kafka.connect(bootstrap).await?;
            for m in mechanism.mechanisms() {
                client
                    .alter_scram_user(&user, m, Some(&password), iterations)
                    .await?;
                writeln!(out, "set {} credential of {user}", m.name())?;
            }
        }
        UsersCommand::Delete { user, mechanism } => {
            let client = args.kafka.connect(bootstrap).await?;
            for m in mechanism.mechanisms() {
                client.alter_scram_user(&user, m, None, 0).await?;
                writeln!(out, "deleted {} credential of {user}", m.name())?;
            }
        }
    }
    Ok(())
}
