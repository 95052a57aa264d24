//! The broker's HTTP endpoint (`--http-listen`): `/metrics` for Prometheus, `/healthz`
//! and `/readyz` for service managers and load balancers.

pub mod lag;
pub mod scrape;

use crate::broker::Broker;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The routes.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(broker)
}

async fn metrics(State(broker): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    let lag = lag::GroupLag::gather(&broker).await;
    fjord_shared::http::metrics(&headers, scrape::Scrape { broker, lag })
}

/// Alive: the process answers.
async fn healthz() -> Response {
    fjord_shared::http::health(Ok(()))
}

/// Ready for clients: registered in the cluster and not fenced from the coordinator.
async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    fjord_shared::http::health(ready(&broker))
}

fn ready(broker: &Broker) -> Result<(), String> {
    if broker.cluster.is_fenced() {
        return Err("fenced: the coordinator session is lost".into());
    }
    let view = broker.cluster.view();
    if !view.loaded {
        return Err("the cluster metadata is not loaded yet".into());
    }
    if !view.brokers.contains_key(&broker.id) {
        return Err(format!("broker {} is not registered", broker.id));
    }
    Ok(())
}
