//! Topics: every topic with its health, and one topic's partitions and configs.

use super::super::html::{self, badge, esc, url, Level};
use super::super::Shared;
use super::brokers::bytes;
use super::{render, token_field, Flash};
use crate::client::{OffsetSpec, PartitionInfo, TopicInfo};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only topics with an offline, under-replicated or under-min-ISR partition.
    #[serde(default)]
    pub unhealthy: Option<String>,
    #[serde(flatten)]
    pub flash: FlashFields,
}

#[derive(Debug, Default, Deserialize)]
pub struct FlashFields {
    pub done: Option<String>,
    pub error: Option<String>,
}

impl FlashFields {
    pub fn flash(&self) -> Flash {
        Flash {
            done: self.done.clone(),
            error: self.error.clone(),
        }
    }
}

/// (offline, under-replicated, under-min-ISR) partitions of a topic.
fn health(t: &TopicInfo, min_isr: usize) -> (usize, usize, usize) {
    let mut h = (0, 0, 0);
    for p in t.partitions.values() {
        if p.leader.is_none() {
            h.0 += 1;
            continue;
        }
        if p.isr.len() < p.replicas.len() {
            h.1 += 1;
        }
        if p.isr.len() < min_isr {
            h.2 += 1;
        }
    }
    h
}

fn status(p: &PartitionInfo, min_isr: usize) -> String {
    if p.leader.is_none() {
        badge(Level::Bad, "offline")
    } else if p.isr.len() < min_isr {
        badge(Level::Bad, "under min ISR")
    } else if p.isr.len() < p.replicas.len() {
        badge(Level::Warn, "under-replicated")
    } else {
        badge(Level::Ok, "healthy")
    }
}

pub async fn list(State(app): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    let unhealthy = q.unhealthy.as_deref().is_some_and(|v| !v.is_empty());
    let md = match app.kafka.fetch_metadata(None, false).await {
        Ok(md) => md,
        Err(e) => {
            let body = html::notice(Level::Bad, &format!("cannot read the cluster: {e}"));
            return render(&app, "Topics", "/topics", &body);
        }
    };
    let mut body = q.flash.flash().html();
    body.push_str(&format!(
        "<form class=\"toolbar\" method=\"get\" action=\"/topics\"><label style=\"flex-direction:row;gap:6px;align-items:center\">\
<input type=\"checkbox\" id=\"unhealthy\" name=\"unhealthy\" value=\"1\"{} onchange=\"this.form.submit()\"> unhealthy only</label>\
<noscript><button>Filter</button></noscript><span class=\"muted\">{} topics</span></form>",
        if unhealthy { " checked" } else { "" },
        md.topics.len()
    ));
    let mut rows = Vec::new();
    for t in md.topics.values() {
        let min_isr = app.hub.min_isr(&t.name);
        let (offline, under, under_min) = health(t, min_isr);
        if unhealthy && offline + under + under_min == 0 {
            continue;
        }
        let rf = t
            .partitions
            .values()
            .map(|p| p.replicas.len())
            .max()
            .unwrap_or(0);
        let state = if offline > 0 {
            badge(Level::Bad, &format!("{offline} offline"))
        } else if under_min > 0 {
            badge(Level::Bad, &format!("{under_min} under min ISR"))
        } else if under > 0 {
            badge(Level::Warn, &format!("{under} under-replicated"))
        } else {
            badge(Level::Ok, "healthy")
        };
        let internal = if t.is_internal {
            format!(" {}", badge(Level::Info, "internal"))
        } else {
            String::new()
        };
        rows.push(vec![
            format!(
                "<a href=\"/topics/{}\">{}</a>{internal}",
                url(&t.name),
                esc(&t.name)
            ),
            t.partitions.len().to_string(),
            rf.to_string(),
            min_isr.to_string(),
            state,
        ]);
    }
    body.push_str(&html::table(
        &["Topic", "Partitions", "Replication", "Min ISR", "Health"],
        rows,
        "id=\"topics\"",
    ));
    if app.allow_writes {
        body.push_str(&format!(
            "<h2>Create a topic</h2><form class=\"panel\" method=\"post\" action=\"/actions/topics/create\" id=\"create-topic\">{}\
<label>Name<input name=\"name\" required pattern=\"[a-zA-Z0-9._\\-]+\" maxlength=\"249\"></label>\
<label>Partitions<input name=\"partitions\" type=\"number\" min=\"1\" value=\"3\"></label>\
<label>Replication factor<input name=\"replication_factor\" type=\"number\" min=\"1\" value=\"1\"></label>\
<button type=\"submit\">Create</button></form>",
            token_field(&app)
        ));
    }
    render(&app, "Topics", "/topics", &body)
}

pub async fn one(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Query(flash): Query<FlashFields>,
) -> Response {
    let title = format!("Topic {name}");
    let md = match app
        .kafka
        .fetch_metadata(Some(std::slice::from_ref(&name)), false)
        .await
    {
        Ok(md) => md,
        Err(e) => {
            let body = html::notice(Level::Bad, &format!("cannot read the cluster: {e}"));
            return render(&app, &title, "/topics", &body);
        }
    };
    let Some(t) = md.topics.get(&name).filter(|t| t.error_code == 0) else {
        let body = format!(
            "{}{}",
            flash.flash().html(),
            html::notice(Level::Warn, &format!("there is no topic {name}"))
        );
        return render(&app, &title, "/topics", &body);
    };
    let min_isr = app.hub.min_isr(&name);
    let sizes: BTreeMap<(i32, i32), i64> = app
        .kafka
        .describe_log_dirs()
        .await
        .map(|dirs| {
            dirs.iter()
                .flat_map(|d| {
                    d.replicas
                        .iter()
                        .filter(|((topic, _), _)| topic == &name)
                        .map(move |((_, p), (size, _))| ((d.broker, *p), *size))
                })
                .collect()
        })
        .unwrap_or_default();
    let partitions: Vec<i32> = t.partitions.keys().copied().collect();
    let starts = app
        .kafka
        .list_offsets(&name, &partitions, OffsetSpec::Earliest)
        .await
        .unwrap_or_default();
    let ends = app
        .kafka
        .list_offsets(&name, &partitions, OffsetSpec::Latest)
        .await
        .unwrap_or_default();
    let offset = |m: &BTreeMap<i32, Option<i64>>, p: i32| {
        m.get(&p)
            .copied()
            .flatten()
            .map_or_else(|| "—".to_owned(), |o| o.to_string())
    };
    let mut rows = Vec::new();
    for p in t.partitions.values() {
        let size = p
            .leader
            .and_then(|l| sizes.get(&(l, p.partition)))
            .map_or_else(|| "—".to_owned(), |s| bytes(*s));
        rows.push(vec![
            format!(
                "<a href=\"/topics/{}/messages?partition={}\">{}</a>",
                url(&name),
                p.partition,
                p.partition
            ),
            p.leader
                .map_or_else(|| badge(Level::Bad, "none"), |l| l.to_string()),
            p.leader_epoch.to_string(),
            html::ids(&p.replicas),
            html::ids(&p.isr),
            offset(&starts, p.partition),
            offset(&ends, p.partition),
            size,
            status(p, min_isr),
        ]);
    }
    let mut body = flash.flash().html();
    body.push_str(&format!(
        "<p class=\"crumbs\"><a href=\"/topics\">Topics</a> / {} · id <code>{}</code> · \
<a href=\"/topics/{}/messages\">Browse messages →</a></p>",
        esc(&name),
        esc(t.topic_id.as_deref().unwrap_or("—")),
        url(&name)
    ));
    body.push_str("<h2>Partitions</h2>");
    body.push_str(&html::table(
        &[
            "Partition",
            "Leader",
            "Epoch",
            "Replicas",
            "ISR",
            "Log start",
            "Log end",
            "Size",
            "Health",
        ],
        rows,
        "id=\"partitions\"",
    ));
    body.push_str("<h2>Configs</h2>");
    match app.kafka.describe_topic_configs(&name).await {
        Ok(entries) => {
            let rows = entries.iter().map(|e| {
                let value = match (&e.value, e.sensitive) {
                    (_, true) => "<span class=\"muted\">(sensitive)</span>".to_owned(),
                    (Some(v), _) => format!("<code>{}</code>", esc(v)),
                    (None, _) => "<span class=\"muted\">—</span>".to_owned(),
                };
                let source = if e.source == crate::client::ConfigSource::DynamicTopic {
                    badge(Level::Info, "set on topic")
                } else {
                    format!("<span class=\"muted\">{}</span>", esc(&e.source.name()))
                };
                vec![format!("<code>{}</code>", esc(&e.name)), value, source]
            });
            body.push_str(&html::table(
                &["Name", "Value", "Source"],
                rows,
                "id=\"configs\"",
            ));
        }
        Err(e) => body.push_str(&html::notice(
            Level::Bad,
            &format!("cannot read the configs: {e}"),
        )),
    }
    if app.allow_writes {
        body.push_str(&format!(
            "<h2>Change</h2><form class=\"panel\" method=\"post\" action=\"/actions/topics/{n}/config\" id=\"alter-config\">{tok}\
<label>Config<input name=\"key\" required placeholder=\"retention.ms\"></label>\
<label>Value (empty: back to the default)<input name=\"value\"></label>\
<button type=\"submit\">Apply</button></form>\
<p></p><form class=\"panel\" method=\"post\" action=\"/actions/topics/{n}/delete\" id=\"delete-topic\" \
onsubmit=\"return confirm('Delete topic {js} and all its data?')\">{tok}\
<span>Deleting a topic removes all its data on every broker.</span>\
<button type=\"submit\" class=\"danger\">Delete topic</button></form>",
            n = url(&name),
            tok = token_field(&app),
            js = esc(&name.replace('\'', "")),
        ));
    }
    render(&app, &title, "/topics", &body)
}
