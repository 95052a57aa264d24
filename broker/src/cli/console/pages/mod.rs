//! The console's pages, one file each, rendered on the server.

pub mod brokers;
pub mod coordinator;
pub mod events;
pub mod groups;
pub mod messages;
pub mod overview;
pub mod topics;
pub mod tree;

use super::html::{self, esc, Level};
use super::App;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

/// A page in the console's frame.
pub fn render(app: &App, title: &str, active: &str, body: &str) -> Response {
    let cluster = app.hub.overview().cluster_id;
    Html(html::page(title, active, &cluster, body)).into_response()
}

/// The outcome of a write, shown once on the page it returns to (`?done=` or `?error=`).
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    pub done: Option<String>,
    pub error: Option<String>,
}

impl Flash {
    pub fn html(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.done {
            out.push_str(&html::notice(Level::Ok, d));
        }
        if let Some(e) = &self.error {
            out.push_str(&html::notice(Level::Bad, e));
        }
        out
    }
}

/// The hidden field every write form carries.
pub fn token_field(app: &App) -> String {
    format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\">",
        esc(&app.token)
    )
}

/// A timeline list (the Events page and the Overview's recent events), live-updated.
pub fn timeline_list(app: &App, n: usize) -> String {
    let mut out = format!("<ul class=\"events timeline\" data-max=\"{n}\">");
    let events = app.hub.timeline(n);
    if events.is_empty() {
        out.push_str(
            "<li class=\"none muted\">nothing has happened since the console started</li>",
        );
    }
    for e in events {
        out.push_str(&format!(
            "<li><span class=\"t\">{}</span>{}<span>{}</span></li>",
            esc(&short_time(e.at_ms)),
            html::badge(e.level, e.kind),
            esc(&e.text)
        ));
    }
    out.push_str("</ul>");
    out
}

/// `2026-12-07 08:40:00Z`, as the script shows live lines.
pub fn short_time(ms: i64) -> String {
    let t = html::time(ms);
    format!("{} {}Z", &t[..10], &t[11..19])
}
