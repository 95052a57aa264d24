//! `fjord`: the operator's and developer's CLI. Parsing and logging setup only; the
//! commands live in `fjord_broker::cli`.

use std::process::ExitCode;

use clap::Parser;
use fjord_broker::cli::{self, Cli};

/// See `fjord_broker::alloc`: a request declaring a huge array must not abort the process.
#[global_allocator]
static ALLOC: fjord_broker::alloc::LazyHugeAlloc = fjord_broker::alloc::LazyHugeAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fjord_shared::telemetry::init("warn");
    cli::run(cli)
}
