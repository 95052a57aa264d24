//! Events: a live, readable timeline of what the coordinator saw.

use super::super::Shared;
use super::{render, timeline_list};
use axum::extract::State;
use axum::response::Response;

pub async fn page(State(app): State<Shared>) -> Response {
    let body = format!(
        "<p class=\"muted\">Brokers joining and leaving, the controller moving, partition \
leaders and ISRs changing, topics created and deleted: from the coordinator's watches, \
since the console started.</p>{}",
        timeline_list(&app, 500)
    );
    render(&app, "Events", "/events", &body)
}
