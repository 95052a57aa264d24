//! `fjord`: the operator's and developer's CLI. Parsing and logging setup only; the
//! commands live in `fjord_broker::cli`.

use std::process::ExitCode;

use clap::Parser;
use fjord_broker::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    fjord_shared::telemetry::init("warn");
    cli::run(cli)
}
