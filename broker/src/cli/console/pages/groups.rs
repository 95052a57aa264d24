//! Groups: every consumer group with its state and lag, and one group's members,
//! assignments, committed offsets and lag per partition, with a chart of its lag over
//! the last 30 minutes.

use super::super::html::{self, badge, esc, url, Level};
use super::super::hub::group_lag;
use super::super::Shared;
use super::topics::FlashFields;
use super::{render, token_field};
use axum::extract::{Path, Query, State};
use axum::response::Response;

fn state_badge(state: &str) -> String {
    let level = match state {
        "Stable" => Level::Ok,
        "Empty" => Level::Info,
        "PreparingRebalance" | "CompletingRebalance" => Level::Warn,
        _ => Level::Bad,
    };
    badge(level, state)
}

pub async fn list(State(app): State<Shared>, Query(flash): Query<FlashFields>) -> Response {
    let groups = app.hub.groups();
    let rows = groups.iter().map(|g| {
        vec![
            format!(
                "<a href=\"/groups/{}\">{}</a>",
                url(&g.group),
                esc(&g.group)
            ),
            state_badge(&g.state),
            g.members.to_string(),
            g.lag.map_or_else(|| "—".into(), |l| l.to_string()),
            g.coordinator.to_string(),
        ]
    });
    let body = format!(
        "{}<p class=\"muted\">Read every few seconds; lag is the latest offset minus the committed \
offset, summed over the group's partitions.</p>{}",
        flash.flash().html(),
        html::table(
            &["Group", "State", "Members", "Lag", "Coordinator"],
            rows,
            "id=\"groups\""
        )
    );
    render(&app, "Groups", "/groups", &body)
}

pub async fn one(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Query(flash): Query<FlashFields>,
) -> Response {
    let title = format!("Group {id}");
    let mut body = format!(
        "{}<p class=\"crumbs\"><a href=\"/groups\">Groups</a> / {}</p>",
        flash.flash().html(),
        esc(&id)
    );
    let desc = match app.kafka.describe_group(&id).await {
        Ok(d) => d,
        Err(e) => {
            body.push_str(&html::notice(Level::Bad, &format!("cannot describe: {e}")));
            return render(&app, &title, "/groups", &body);
        }
    };
    let lag = group_lag(&app.kafka, &id).await.unwrap_or_default();
    let total: i64 = lag.values().map(|(_, _, l)| l).sum();
    body.push_str(&format!(
        "<p>{} · protocol <code>{}</code> · coordinator broker {} · lag <strong id=\"group-lag\">{total}</strong></p>",
        state_badge(&desc.state),
        esc(if desc.protocol.is_empty() { "—" } else { &desc.protocol }),
        desc.coordinator.id
    ));
    let points: Vec<[i64; 2]> = app
        .hub
        .lag_history(&id)
        .into_iter()
        .map(|(t, l)| [t, l])
        .collect();
    body.push_str(&format!(
        "<h2>Lag, last 30 minutes</h2><svg class=\"chart\" viewBox=\"0 0 600 160\" preserveAspectRatio=\"none\" \
data-group=\"{}\" data-points=\"{}\"><line x1=\"0\" y1=\"152\" x2=\"600\" y2=\"152\" vector-effect=\"non-scaling-stroke\"/>\
<line x1=\"0\" y1=\"16\" x2=\"600\" y2=\"16\" vector-effect=\"non-scaling-stroke\"/>\
<polyline points=\"\" vector-effect=\"non-scaling-stroke\"/></svg>\
<p class=\"muted chart-caption\"></p>",
        esc(&id),
        esc(&serde_json::to_string(&points).unwrap_or_else(|_| "[]".into()))
    ));
    body.push_str("<h2>Members</h2>");
    let members = desc.members.iter().map(|m| {
        let assigned = m
            .assignment
            .iter()
            .map(|(t, ps)| format!("{} [{}]", esc(t), html::ids(ps)))
            .collect::<Vec<_>>()
            .join("<br>");
        vec![
            format!("<code>{}</code>", esc(&m.member_id)),
            esc(m.group_instance_id.as_deref().unwrap_or("—")),
            esc(&m.client_id),
            esc(&m.client_host),
            if assigned.is_empty() {
                "<span class=\"muted\">none</span>".into()
            } else {
                assigned
            },
        ]
    });
    body.push_str(&html::table(
        &["Member", "Instance", "Client", "Host", "Assignment"],
        members,
        "id=\"members\"",
    ));
    body.push_str("<h2>Offsets</h2>");
    let rows = lag.iter().map(|((t, p), (committed, end, l))| {
        vec![
            format!("<a href=\"/topics/{}\">{}</a>", url(t), esc(t)),
            p.to_string(),
            committed.to_string(),
            end.to_string(),
            if *l > 0 {
                format!("<strong>{l}</strong>")
            } else {
                l.to_string()
            },
        ]
    });
    body.push_str(&html::table(
        &["Topic", "Partition", "Committed", "Latest", "Lag"],
        rows,
        "id=\"offsets\"",
    ));
    if app.allow_writes {
        body.push_str(&format!(
            "<h2>Change</h2><form class=\"panel\" method=\"post\" action=\"/actions/groups/{g}/reset\" id=\"reset-group\">{tok}\
<label>Reset every committed partition to<select name=\"to\"><option value=\"earliest\">earliest</option>\
<option value=\"latest\">latest</option></select></label><button type=\"submit\">Reset offsets</button>\
<span class=\"muted\">(only while the group has no members)</span></form><p></p>\
<form class=\"panel\" method=\"post\" action=\"/actions/groups/{g}/delete\" id=\"delete-group\" \
onsubmit=\"return confirm('Delete this group and its offsets?')\">{tok}\
<button type=\"submit\" class=\"danger\">Delete group</button></form>",
            g = url(&id),
            tok = token_field(&app)
        ));
    }
    render(&app, &title, "/groups", &body)
}
