//! The `fjord-coordinator` binary: parse flags, start logging, bind, serve until SIGTERM.

use clap::Parser;
use fjord_coordinator::config::Config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cfg = Config::parse();
    fjord_shared::telemetry::init("info,openraft=warn,openraft::raft::responder=error");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fjord-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fjord_coordinator::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
