//! `fjord console`: a web console for one cluster, served by the CLI itself.
//!
//! Pages are rendered on the server from what the brokers (Kafka protocol) and the
//! coordinator (ZooKeeper protocol) say when the page is asked for; one server-sent-events
//! stream (`/live`) updates the live parts (the Overview's tiles, the timeline, the Tree
//! page's watch pane, group lag) from the [`hub`]'s background tasks. A little hand-written
//! script fills those in; nothing is fetched from elsewhere. The console is read-only
//! unless started with `--allow-writes`: then pages show forms to create and delete
//! topics, change topic configs, reset a group's offsets and delete a group, and the write
//! endpoints take a per-process token so another site cannot post to them.

mod actions;
mod assets;
mod health;
mod html;
pub mod hub;
mod pages;
mod timeline;
mod zk_text;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use fjord_shared::coord_client::{Client as Coordinator, ConnectOptions};

use super::error::CliError;
use super::kafka::KafkaArgs;
use crate::client::Client as Kafka;
use hub::Hub;

/// `fjord console [--listen ADDR] [--allow-writes]`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Where to serve the console (port 0 picks a free port, printed as `listening on
    /// ADDR`).
    #[arg(long, env = "FJORD_CONSOLE_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Offer and accept changes: create and delete topics, change topic configs, reset a
    /// group's offsets, delete a group. Without it the console only reads.
    #[arg(long, env = "FJORD_CONSOLE_ALLOW_WRITES", default_value_t = false)]
    pub allow_writes: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub kafka: Kafka,
    pub coordinator: Arc<Coordinator>,
    /// The coordinator connect string, for the four-letter words.
    pub coordinator_addr: String,
    pub hub: Arc<Hub>,
    pub allow_writes: bool,
    /// Must come back with every write (a hidden form field).
    pub token: String,
}

pub type Shared = Arc<App>;

/// Runs the console until interrupted.
pub async fn run(bootstrap: &str, coordinator: &str, args: ConsoleArgs) -> Result<(), CliError> {
    let kafka = args.kafka.connect(bootstrap).await?;
    let opts = ConnectOptions::new(coordinator)
        .connect_timeout(Duration::from_secs(5))
        .session_timeout(Duration::from_secs(10));
    let coord = Arc::new(super::coord::open(coordinator, opts).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(CliError::Output)?;
    let mut token = [0u8; 16];
    fjord_shared::random::fill(&mut token)
        .map_err(|e| CliError::Internal(format!("no random token for the write forms: {e:?}")))?;
    let hub = Hub::new();
    let app = Arc::new(App {
        kafka: kafka.clone(),
        coordinator: coord.clone(),
        coordinator_addr: coordinator.to_owned(),
        hub: hub.clone(),
        allow_writes: args.allow_writes,
        token: token.iter().map(|b| format!("{b:02x}")).collect(),
    });
    let poller = tokio::spawn(hub::poll(hub.clone(), kafka, coordinator.to_owned()));
    let watcher = tokio::spawn(hub::watch(hub.clone(), coord.clone()));
    println!("listening on {addr}");
    eprintln!(
        "console on http://{addr}/ ({}); Ctrl-C to stop",
        if args.allow_writes {
            "writes allowed"
        } else {
            "read-only"
        }
    );
    let shutdown = async {
        let _ = super::signal::interrupted().await;
    };
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await;
    poller.abort();
    watcher.abort();
    if let Err(e) = coord.close().await {
        tracing::debug!(error = %e, "closing the coordinator session failed");
    }
    served.map_err(CliError::Output)
}

/// The routes.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/brokers", get(pages::brokers::page))
        .route("/topics", get(pages::topics::list))
        .route("/topics/{name}", get(pages::topics::one))
        .route("/topics/{name}/messages", get(pages::messages::page))
        .route("/groups", get(pages::groups::list))
        .route("/groups/{id}", get(pages::groups::one))
        .route("/coordinator", get(pages::coordinator::page))
        .route("/tree", get(pages::tree::page))
        .route("/events", get(pages::events::page))
        .route("/live", get(live))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .route("/actions/topics/create", post(actions::create_topic))
        .route("/actions/topics/{name}/delete", post(actions::delete_topic))
        .route("/actions/topics/{name}/config", post(actions::alter_config))
        .route("/actions/groups/{id}/reset", post(actions::reset_group))
        .route("/actions/groups/{id}/delete", post(actions::delete_group))
        .with_state(app)
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        assets::CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        assets::JS,
    )
        .into_response()
}

/// The live stream: every hub event as a server-sent event named by its kind, the
/// current Overview first.
async fn live(State(app): State<Shared>) -> Response {
    let rx = app.hub.tx.subscribe();
    let first = hub::Live::Overview(Box::new(app.hub.overview()));
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        if let Some(f) = first {
            return Some((sse(&f), (None, rx)));
        }
        loop {
            match rx.recv().await {
                Ok(live) => return Some((sse(&live), (None, rx))),
                // A slow page missed some: it carries on with the next.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn sse(live: &hub::Live) -> Result<SseEvent, Infallible> {
    let data = serde_json::to_string(live).unwrap_or_else(|_| "{}".into());
    Ok(SseEvent::default().event(live.name()).data(data))
}

/// An error page with its status.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html::notice(html::Level::Bad, message);
    (
        status,
        axum::response::Html(html::page(title, "", "", &body)),
    )
        .into_response()
}
