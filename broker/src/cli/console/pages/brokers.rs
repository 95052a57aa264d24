//! Brokers: who is live, who leads what, how much each stores.

use super::super::html::{self, badge, esc, Level};
use super::super::Shared;
use super::render;
use axum::extract::State;
use axum::response::Response;
use std::collections::BTreeMap;

pub async fn page(State(app): State<Shared>) -> Response {
    let md = match app.kafka.fetch_metadata(None, false).await {
        Ok(md) => md,
        Err(e) => {
            let body = html::notice(Level::Bad, &format!("cannot read the cluster: {e}"));
            return render(&app, "Brokers", "/brokers", &body);
        }
    };
    // broker → (leaders, replicas, in-sync replicas)
    let mut counts: BTreeMap<i32, (usize, usize, usize)> = BTreeMap::new();
    for t in md.topics.values() {
        for p in t.partitions.values() {
            if let Some(l) = p.leader {
                counts.entry(l).or_default().0 += 1;
            }
            for r in &p.replicas {
                counts.entry(*r).or_default().1 += 1;
            }
            for r in &p.isr {
                counts.entry(*r).or_default().2 += 1;
            }
        }
    }
    let sizes: BTreeMap<i32, i64> = match app.kafka.describe_log_dirs().await {
        Ok(dirs) => dirs
            .iter()
            .map(|d| (d.broker, d.replicas.values().map(|(s, _)| *s).sum()))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let o = app.hub.overview();
    let mut rows = Vec::new();
    for (id, b) in &md.brokers {
        let (leaders, replicas, in_sync) = counts.get(id).copied().unwrap_or_default();
        let role = if md.controller_id == Some(*id) {
            badge(Level::Info, "controller")
        } else {
            String::new()
        };
        rows.push(vec![
            format!("<strong>{id}</strong> {role}"),
            badge(Level::Ok, "live"),
            format!("<code>{}</code>", esc(&b.addr())),
            esc(b.rack.as_deref().unwrap_or("—")),
            format!("<span class=\"num\">{leaders}</span>"),
            format!("{replicas} ({in_sync} in sync)"),
            sizes.get(id).map_or_else(|| "—".into(), |s| bytes(*s)),
        ]);
    }
    for id in &o.missing_brokers {
        let (leaders, replicas, in_sync) = counts.get(id).copied().unwrap_or_default();
        rows.push(vec![
            format!("<strong>{id}</strong>"),
            badge(Level::Bad, "down"),
            "—".into(),
            "—".into(),
            leaders.to_string(),
            format!("{replicas} ({in_sync} in sync)"),
            "—".into(),
        ]);
    }
    let body = html::table(
        &[
            "Broker", "Status", "Address", "Rack", "Leaders", "Replicas", "Stored",
        ],
        rows,
        "id=\"brokers\"",
    );
    render(&app, "Brokers", "/brokers", &body)
}

pub use crate::cli::output::bytes;
