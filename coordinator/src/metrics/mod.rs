//! The coordinator's HTTP endpoint (`--http-listen`): `/metrics` for Prometheus under
//! ZooKeeper's names, `/healthz` and `/readyz`, and ZooKeeper's AdminServer API
//! (`/commands`, `/commands/<name>`).

pub mod admin;
pub mod monitor;
pub mod scrape;
pub mod stats;

use crate::four_letter::View;
use crate::processor::Msg;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// What the handlers share.
#[derive(Debug)]
pub struct Endpoint {
    /// The processor's queue (behind a lock: `mpsc::Sender` is not `Sync` on every
    /// toolchain we support).
    pub processor: Mutex<mpsc::Sender<Msg>>,
    pub info: admin::Info,
}

/// The routes.
pub fn router(endpoint: Arc<Endpoint>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/commands", get(commands))
        .route("/commands/", get(commands))
        .route("/commands/{name}", get(command))
        .with_state(endpoint)
}

/// The processor's view, or `None` if it has stopped.
async fn view(endpoint: &Endpoint, full: bool) -> Option<View> {
    let (tx, rx) = oneshot::channel();
    let sent = endpoint
        .processor
        .lock()
        .ok()?
        .send(Msg::View { full, reply: tx });
    sent.ok()?;
    rx.await.ok()
}

fn stopped() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the coordinator is stopping\n",
    )
        .into_response()
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    match view(&endpoint, false).await {
        Some(view) => fjord_shared::http::metrics(&headers, scrape::Scrape { view }),
        None => stopped(),
    }
}

async fn healthz() -> Response {
    fjord_shared::http::health(Ok(()))
}

/// Ready: this member serves clients (it has a leader and its log works).
async fn readyz(State(endpoint): State<Arc<Endpoint>>) -> Response {
    let result = match view(&endpoint, false).await {
        None => Err("the coordinator is stopping".to_owned()),
        Some(v) if v.log_failed => Err("the transaction log failed".to_owned()),
        Some(v) if v.role.mode.is_none() => Err("this member has no leader".to_owned()),
        Some(_) => Ok(()),
    };
    fjord_shared::http::health(result)
}

/// The list of commands, as ZooKeeper's AdminServer shows it.
async fn commands() -> Response {
    let mut html = String::new();
    for (name, _, _) in admin::COMMANDS {
        html.push_str(&format!("<a href=\"/commands/{name}\">{name}</a>\n<br/>\n"));
    }
    ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], html).into_response()
}

async fn command(State(endpoint): State<Arc<Endpoint>>, Path(name): Path<String>) -> Response {
    let body = match admin::lookup(&name) {
        None => admin::unknown(&name),
        Some((command, full)) => match view(&endpoint, full).await {
            Some(v) => {
                let info = endpoint.info.clone();
                // Some commands read the data directory's size from disk.
                match tokio::task::spawn_blocking(move || admin::run(command, &v, &info)).await {
                    Ok(body) => body,
                    Err(_) => return stopped(),
                }
            }
            None => return stopped(),
        },
    };
    let text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}
