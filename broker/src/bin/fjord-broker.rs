//! The `fjord-broker` binary: parse flags, start logging, run until SIGTERM.

use clap::Parser;
use fjord_broker::config::BrokerConfig;
use std::process::ExitCode;

/// See `fjord_broker::alloc`: a request declaring a huge array must not abort the process.
#[global_allocator]
static ALLOC: fjord_broker::alloc::LazyHugeAlloc = fjord_broker::alloc::LazyHugeAlloc;

fn main() -> ExitCode {
    let cfg = BrokerConfig::parse();
    fjord_shared::telemetry::init("info");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fjord-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fjord_broker::run::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
