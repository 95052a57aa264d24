//! Waiting for the signals that end a server: SIGTERM (service managers, `kill`) and
//! SIGINT (Ctrl-C). Both servers shut down cleanly on either.

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Signal handlers could not be installed: Ctrl-C is still worth waiting for.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
