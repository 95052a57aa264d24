//! The console's writes (only with `--allow-writes`): create and delete topics, change a
//! topic's config, reset a group's offsets, delete a group. Each is a form POST carrying
//! the process's token, answered with a redirect back to the page with what happened.

use super::html::url;
use super::Shared;
use crate::client::{ConfigChange, NewTopic, OffsetSpec};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

type Fields = Form<HashMap<String, String>>;

/// Refuses the write unless writes are allowed and the form carries the token.
fn check(app: &Shared, form: &HashMap<String, String>) -> Result<(), Response> {
    if !app.allow_writes {
        return Err(super::error_page(
            StatusCode::FORBIDDEN,
            "Read-only",
            "this console is read-only: start it with --allow-writes to change the cluster",
        ));
    }
    if form.get("token") != Some(&app.token) {
        return Err(super::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "the form is stale or did not come from this console; reload the page and try again",
        ));
    }
    Ok(())
}

/// Back to `page` with a message.
fn back(page: &str, result: Result<String, String>) -> Response {
    let (key, text) = match result {
        Ok(done) => ("done", done),
        Err(error) => ("error", error),
    };
    let sep = if page.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{page}{sep}{key}={}", url(&text))).into_response()
}

pub async fn create_topic(State(app): State<Shared>, Form(f): Fields) -> Response {
    if let Err(r) = check(&app, &f) {
        return r;
    }
    let name = f
        .get("name")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let number = |k: &str| f.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let topic = NewTopic {
        name: name.clone(),
        partitions: number("partitions").map(|n| n as i32),
        replication_factor: number("replication_factor").map(|n| n as i16),
        configs: Vec::new(),
    };
    let result = app
        .kafka
        .create_topic(&topic, Duration::from_secs(30))
        .await
        .map(|()| format!("topic {name} created"))
        .map_err(|e| format!("cannot create {name}: {e}"));
    match result {
        Ok(done) => back(&format!("/topics/{}", url(&name)), Ok(done)),
        Err(e) => back("/topics", Err(e)),
    }
}

pub async fn delete_topic(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Form(f): Fields,
) -> Response {
    if let Err(r) = check(&app, &f) {
        return r;
    }
    match app.kafka.delete_topic(&name, Duration::from_secs(30)).await {
        Ok(()) => back("/topics", Ok(format!("topic {name} deleted"))),
        Err(e) => back(
            &format!("/topics/{}", url(&name)),
            Err(format!("cannot delete {name}: {e}")),
        ),
    }
}

pub async fn alter_config(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Form(f): Fields,
) -> Response {
    if let Err(r) = check(&app, &f) {
        return r;
    }
    let page = format!("/topics/{}", url(&name));
    let key = f
        .get("key")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if key.is_empty() {
        return back(&page, Err("name the config to change".into()));
    }
    let value = f
        .get("value")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let change = if value.is_empty() {
        ConfigChange::Delete(key.clone())
    } else {
        ConfigChange::Set(key.clone(), value.clone())
    };
    let result = app
        .kafka
        .alter_topic_configs(&name, &[change])
        .await
        .map(|()| {
            if value.is_empty() {
                format!("{key} is back to its default")
            } else {
                format!("{key} set to {value}")
            }
        })
        .map_err(|e| format!("cannot change {key}: {e}"));
    back(&page, result)
}

pub async fn reset_group(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Response {
    if let Err(r) = check(&app, &f) {
        return r;
    }
    let page = format!("/groups/{}", url(&id));
    let spec = match f.get("to").map(String::as_str) {
        Some("earliest") => OffsetSpec::Earliest,
        Some("latest") => OffsetSpec::Latest,
        _ => return back(&page, Err("reset to earliest or latest".into())),
    };
    let result = async {
        let desc = app
            .kafka
            .describe_group(&id)
            .await
            .map_err(|e| e.to_string())?;
        if !desc.is_inactive() {
            return Err(format!(
                "the group is {} with {} member(s): stop its consumers first",
                desc.state,
                desc.members.len()
            ));
        }
        let committed = app
            .kafka
            .fetch_committed_offsets(&id, None)
            .await
            .map_err(|e| e.to_string())?;
        let mut offsets = BTreeMap::new();
        for (topic, partition) in committed.keys() {
            let o = app
                .kafka
                .list_offset(topic, *partition, spec)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            offsets.insert((topic.clone(), *partition), o);
        }
        app.kafka
            .commit_offsets(&id, &offsets)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} partition(s) reset to {}",
            offsets.len(),
            f.get("to").map(String::as_str).unwrap_or_default()
        ))
    }
    .await;
    back(&page, result.map_err(|e| format!("cannot reset: {e}")))
}

pub async fn delete_group(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Form(f): Fields,
) -> Response {
    if let Err(r) = check(&app, &f) {
        return r;
    }
    match app.kafka.delete_group(&id).await {
        Ok(()) => back("/groups", Ok(format!("group {id} deleted"))),
        Err(e) => back(
            &format!("/groups/{}", url(&id)),
            Err(format!("cannot delete {id}: {e}")),
        ),
    }
}
