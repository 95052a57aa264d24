//! Overview: the cluster's health at a glance, live.

use super::super::html::esc;
use super::super::Shared;
use super::{render, timeline_list};
use axum::extract::State;
use axum::response::Response;

pub async fn page(State(app): State<Shared>) -> Response {
    let o = app.hub.overview();
    let mut body = String::new();
    body.push_str(&format!(
        "<p id=\"overview-error\" class=\"notice bad\"{}>{}</p>",
        if o.error.is_none() {
            " style=\"display:none\""
        } else {
            ""
        },
        esc(o.error.as_deref().unwrap_or(""))
    ));
    body.push_str("<div class=\"tiles\">");
    for t in &o.tiles {
        body.push_str(&format!(
            "<div class=\"tile {}\" data-tile=\"{}\"><div class=\"label\">{}</div>\
<div class=\"value\">{}</div><div class=\"detail\">{}</div></div>",
            t.level.class(),
            t.key,
            esc(t.label),
            esc(&t.value),
            esc(&t.detail)
        ));
    }
    if o.tiles.is_empty() {
        body.push_str("<p class=\"muted\">reading the cluster…</p>");
    }
    body.push_str("</div>");
    body.push_str(&format!(
        "<h2>Brokers</h2><p>live: <strong id=\"live-brokers\">{}</strong> · down: <strong id=\"down-brokers\">{}</strong></p>",
        esc(&super::super::html::ids(&o.live_brokers)),
        if o.missing_brokers.is_empty() {
            "none".to_owned()
        } else {
            esc(&super::super::html::ids(&o.missing_brokers))
        }
    ));
    body.push_str("<h2>Recent events</h2>");
    body.push_str(&timeline_list(&app, 12));
    body.push_str("<p><a href=\"/events\">All events →</a></p>");
    render(&app, "Overview", "/", &body)
}
