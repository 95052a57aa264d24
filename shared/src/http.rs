//! The servers' HTTP listener (`--http-listen`): binding, serving an axum router until
//! shutdown, and the `/metrics` answer with content negotiation.

use crate::metrics::{Collector, Format};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `--http-listen`, if given (port 0 picks a free port): the listener and the
/// address it got.
pub async fn bind(addr: Option<SocketAddr>) -> std::io::Result<Option<(TcpListener, SocketAddr)>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok(Some((listener, bound)))
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Errors on single
/// connections are the client's business; the listener itself only fails if accepting
/// does, which is logged.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "the HTTP listener stopped");
        }
    })
}

/// The `/metrics` answer: what `collector` shows, in the format the `Accept` header asks
/// for.
pub fn metrics(headers: &HeaderMap, collector: impl Collector) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match crate::metrics::render(format, collector) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

/// A health answer: 200 with `ok`, or 503 with the reason.
pub fn health(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}
