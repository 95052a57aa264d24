//! `fjord coord 4lw WORD`: a four-letter word sent straight to a coordinator's client port
//! (no session), with its answer printed as it comes. The console asks the same way.

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
    let addr = addresses(coordinator)
        .into_iter()
        .next()
        .unwrap_or_else(|| coordinator.to_owned());
    let answer = ask(&addr, word, Duration::from_millis(timeout_ms.max(100))).await?;
    out.write_all(answer.as_bytes())?;
    if !answer.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// The member addresses of a connect string (`h1:p1,h2:p2/chroot`).
pub fn addresses(coordinator: &str) -> Vec<String> {
    coordinator
        .split('/')
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sends `word` to the member at `addr` and returns its whole answer; an empty answer
/// (not serving, or a word the server does not allow) is an error.
pub async fn ask(addr: &str, word: &str, limit: Duration) -> Result<String, CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(CliError::Usage(format!(
            "{word:?} is not a four-letter word (ruok, srvr, stat, mntr, cons, dump, ...)"
        )));
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
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
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
