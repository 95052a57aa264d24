//! The `fjord-coordinator` binary: parse flags, start logging, bind, serve until SIGTERM.

use clap::Parser;
use fjord_coordinator::config::Config;
use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: with 32 clients writing, a quarter of the
/// processor thread's CPU went to glibc's `malloc`/`free` (its fastbins are consolidated
/// on every larger allocation, and blocks freed on another thread go back through locks);
/// mimalloc's thread-local free lists cut the server's CPU per write by about a tenth and
/// its memory with 500,000 nodes by 8%. Built with `no_thp` (Cargo.toml): otherwise mimalloc
/// advises its arenas onto transparent huge pages and an idle coordinator holds 25 MiB
/// instead of 10. Memory freed is not always returned to the system, so nothing should
/// read a large file into one buffer (recovery reads logs through a window, `FrameFile`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
