//! Coordinator: the ensemble's members and roles, sessions with their ephemeral nodes,
//! client connections, and watches by path, from the members' four-letter words (the
//! same text from fjord-coordinator and ZooKeeper).

use super::super::html::{self, badge, esc, url, Level};
use super::super::hub::coordinator_rows;
use super::super::zk_text;
use super::super::Shared;
use super::render;
use crate::cli::four_letter;
use axum::extract::State;
use axum::response::Response;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_millis(2000);

fn mode_badge(mode: &str) -> String {
    let level = match mode {
        "leader" | "standalone" => Level::Ok,
        "follower" => Level::Info,
        "unreachable" | "not serving" => Level::Bad,
        _ => Level::Warn,
    };
    badge(level, mode)
}

pub async fn page(State(app): State<Shared>) -> Response {
    let mut body = String::new();
    let members = coordinator_rows(&app.coordinator_addr).await;
    body.push_str("<h2>Members</h2>");
    let config = match app.coordinator.get_data("/zookeeper/config", false).await {
        Ok((data, _)) => String::from_utf8_lossy(&data).into_owned(),
        Err(_) => String::new(),
    };
    let rows = members.iter().map(|m| {
        vec![
            format!("<code>{}</code>", esc(&m.address)),
            mode_badge(&m.mode),
            m.sessions.to_string(),
            m.connections.to_string(),
            m.znodes.to_string(),
            format!("{:.2} ms", m.avg_latency_ms),
        ]
    });
    body.push_str(&html::table(
        &[
            "Client address",
            "Role",
            "Sessions",
            "Connections",
            "Znodes",
            "Avg latency",
        ],
        rows,
        "id=\"members\"",
    ));
    let voters: Vec<&str> = config
        .lines()
        .filter(|l| l.starts_with("server."))
        .collect();
    if !voters.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">Ensemble configuration (<code>/zookeeper/config</code>):</p><pre>{}</pre>",
            esc(&voters.join("\n"))
        ));
    }
    let serving: Vec<String> = members
        .iter()
        .filter(|m| !matches!(m.mode.as_str(), "unreachable" | "not serving"))
        .map(|m| m.address.clone())
        .collect();

    body.push_str("<h2>Sessions and their ephemeral nodes</h2>");
    let dump = match serving.first() {
        Some(addr) => four_letter::ask(addr, "dump", LIMIT)
            .await
            .map(|t| zk_text::dump(&t))
            .unwrap_or_default(),
        None => zk_text::Dump::default(),
    };
    let rows = dump.sessions.iter().map(|(id, timeout)| {
        let paths = dump.ephemerals.get(id).cloned().unwrap_or_default();
        let links = paths
            .iter()
            .map(|p| format!("<a href=\"/tree?path={}\">{}</a>", url(p), esc(p)))
            .collect::<Vec<_>>()
            .join("<br>");
        vec![
            format!("<code>{}</code>", esc(id)),
            esc(timeout),
            if links.is_empty() {
                "<span class=\"muted\">none</span>".into()
            } else {
                links
            },
        ]
    });
    body.push_str(&html::table(
        &["Session", "Timeout", "Ephemeral nodes"],
        rows,
        "id=\"sessions\"",
    ));

    body.push_str("<h2>Connections</h2>");
    let mut conn_rows = Vec::new();
    let mut watches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for addr in &serving {
        if let Ok(text) = four_letter::ask(addr, "cons", LIMIT).await {
            for c in zk_text::cons(&text) {
                let f = |k: &str| c.fields.get(k).cloned().unwrap_or_else(|| "—".into());
                conn_rows.push(vec![
                    format!("<code>{}</code>", esc(addr)),
                    format!("<code>{}</code>", esc(&c.peer)),
                    format!("<code>{}</code>", esc(&f("sid"))),
                    esc(&f("recved")),
                    esc(&f("sent")),
                    esc(&f("lop")),
                ]);
            }
        }
        if let Ok(text) = four_letter::ask(addr, "wchp", LIMIT).await {
            for (path, sids) in zk_text::wchp(&text) {
                watches.entry(path).or_default().extend(sids);
            }
        }
    }
    body.push_str(&html::table(
        &["Member", "Client", "Session", "Received", "Sent", "Last op"],
        conn_rows,
        "id=\"connections\"",
    ));
    body.push_str("<h2>Watches by path</h2>");
    let rows = watches.iter().map(|(path, sids)| {
        vec![
            format!("<a href=\"/tree?path={}\">{}</a>", url(path), esc(path)),
            sids.iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect::<Vec<_>>()
                .join(" "),
        ]
    });
    body.push_str(&html::table(&["Path", "Sessions"], rows, "id=\"watches\""));
    render(&app, "Coordinator", "/coordinator", &body)
}
