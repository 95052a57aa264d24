//! `fjord coord 4lw WORD`: a four-letter word sent straight to a coordinator's client port
//! (no session), with its answer printed as it comes.

use std::io::Write;
use std::time::Duration;

use super::error::CliError;

/// Sends `word` to the first address of `coordinator` and prints what comes back.
pub async fn run(
    coordinator: &str,
    word: &str,
    timeout_ms: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(CliError::Usage(format!(
            "{word:?} is not a four-letter word (ruok, srvr, stat, mntr, cons, dump, ...)"
        )));
    }
    let addr = coordinator
        .split('/')
        .next()
        .and_then(|hosts| hosts.split(',').next())
        .unwrap_or(coordinator)
        .to_owned();
    let limit = Duration::from_millis(timeout_ms.max(100));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| CliError::Coordinator(format!("{addr} did not answer {word} in time")))?
        .map_err(|e| CliError::Coordinator(format!("{addr}: {e}")))?;
    if answer.is_empty() {
        return Err(CliError::Coordinator(format!(
            "{addr} answered {word} with nothing (not serving, or the word is not allowed)"
        )));
    }
    out.write_all(&answer)?;
    if !answer.ends_with(b"\n") {
        writeln!(out)?;
    }
    Ok(())
}
