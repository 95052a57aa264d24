//! The message browser: records of one partition, the latest ones or from an offset or a
//! time, with key, value, headers and timestamp.

use super::super::html::{self, esc, url, Level};
use super::super::Shared;
use super::{render, short_time};
use crate::client::{FetchOptions, OffsetSpec};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

/// The most records one page shows.
const MAX_LIMIT: usize = 500;
/// Longer values are cut (the page says so).
const MAX_SHOWN: usize = 2000;

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    #[serde(default)]
    pub partition: Option<i32>,
    /// `latest` (default), `earliest`, `offset` or `time`.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub offset: Option<String>,
    /// Milliseconds since the epoch, or `YYYY-MM-DDTHH:MM:SS` (UTC).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Bytes as text when they are UTF-8, else as hex; cut to [`MAX_SHOWN`].
pub fn show_bytes(b: Option<&[u8]>) -> String {
    let Some(b) = b else {
        return "<span class=\"muted\">null</span>".into();
    };
    let (text, hex) = match std::str::from_utf8(b) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (
            b.iter()
                .take(MAX_SHOWN / 2)
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
            true,
        ),
    };
    let cut = text.chars().count() > MAX_SHOWN;
    let shown: String = text.chars().take(MAX_SHOWN).collect();
    format!(
        "<code>{}</code>{}{}",
        esc(&shown),
        if hex {
            " <span class=\"badge info\">hex</span>"
        } else {
            ""
        },
        if cut {
            format!(" <span class=\"muted\">… ({} bytes)</span>", b.len())
        } else {
            String::new()
        }
    )
}

/// `1700000000000` or `2026-12-07T08:00:00` (UTC) as ms since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Some(ms);
    }
    let t = text.trim().trim_end_matches('Z');
    let (date, clock) = t.split_once('T').or_else(|| t.split_once(' '))?;
    let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
    let c: Vec<i64> = clock.split(':').filter_map(|x| x.parse().ok()).collect();
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), c.as_slice()) else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

pub async fn page(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Response {
    let title = format!("Messages in {name}");
    let partition = q.partition.unwrap_or(0);
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_LIMIT);
    let from = q.from.clone().unwrap_or_else(|| "latest".into());
    let md = app
        .kafka
        .fetch_metadata(Some(std::slice::from_ref(&name)), false)
        .await;
    let partitions: Vec<i32> = md
        .as_ref()
        .ok()
        .and_then(|m| m.topics.get(&name))
        .map(|t| t.partitions.keys().copied().collect())
        .unwrap_or_default();
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/topics\">Topics</a> / <a href=\"/topics/{u}\">{n}</a> / messages</p>",
        u = url(&name),
        n = esc(&name)
    );
    let options: String = partitions
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{p}\"{}>{p}</option>",
                if *p == partition { " selected" } else { "" }
            )
        })
        .collect();
    let sel = |v: &str| if from == v { " selected" } else { "" };
    body.push_str(&format!(
        "<form class=\"panel\" method=\"get\" id=\"browse\">\
<label>Partition<select name=\"partition\">{options}</select></label>\
<label>From<select name=\"from\"><option value=\"latest\"{}>latest</option><option value=\"earliest\"{}>earliest</option>\
<option value=\"offset\"{}>offset</option><option value=\"time\"{}>time</option></select></label>\
<label>Offset<input name=\"offset\" value=\"{}\" size=\"10\"></label>\
<label>Time (UTC or ms)<input name=\"time\" value=\"{}\" placeholder=\"2026-12-07T08:00:00\" size=\"20\"></label>\
<label>Limit<input name=\"limit\" type=\"number\" min=\"1\" max=\"{MAX_LIMIT}\" value=\"{limit}\"></label>\
<button type=\"submit\">Show</button></form>",
        sel("latest"),
        sel("earliest"),
        sel("offset"),
        sel("time"),
        esc(q.offset.as_deref().unwrap_or("")),
        esc(q.time.as_deref().unwrap_or("")),
    ));
    if !partitions.contains(&partition) {
        body.push_str(&html::notice(
            Level::Warn,
            &format!("{name} has no partition {partition}"),
        ));
        return render(&app, &title, "/topics", &body);
    }
    let kafka = &app.kafka;
    let start = match from.as_str() {
        "earliest" => kafka
            .list_offset(&name, partition, OffsetSpec::Earliest)
            .await
            .map(|o| o.unwrap_or(0)),
        "offset" => match q.offset.as_deref().map(str::trim).map(str::parse::<i64>) {
            Some(Ok(o)) if o >= 0 => Ok(o),
            _ => {
                body.push_str(&html::notice(Level::Bad, "give an offset (0 or more)"));
                return render(&app, &title, "/topics", &body);
            }
        },
        "time" => match q.time.as_deref().and_then(parse_time) {
            Some(ms) => kafka
                .list_offset(&name, partition, OffsetSpec::Timestamp(ms))
                .await
                .map(|o| o.unwrap_or(i64::MAX)),
            None => {
                body.push_str(&html::notice(
                    Level::Bad,
                    "give a time as YYYY-MM-DDTHH:MM:SS (UTC) or milliseconds since the epoch",
                ));
                return render(&app, &title, "/topics", &body);
            }
        },
        _ => {
            let earliest = kafka
                .list_offset(&name, partition, OffsetSpec::Earliest)
                .await;
            let latest = kafka
                .list_offset(&name, partition, OffsetSpec::Latest)
                .await;
            match (earliest, latest) {
                (Ok(e), Ok(l)) => Ok((l.unwrap_or(0) - limit as i64).max(e.unwrap_or(0))),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
    };
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            body.push_str(&html::notice(
                Level::Bad,
                &format!("cannot find the offset: {e}"),
            ));
            return render(&app, &title, "/topics", &body);
        }
    };
    let mut records = Vec::new();
    let mut next = start;
    let mut high_watermark = None;
    // A few fetches at most: enough for `limit` records of ordinary size.
    for _ in 0..8 {
        if records.len() >= limit || start == i64::MAX {
            break;
        }
        match kafka
            .fetch(&name, partition, next, &FetchOptions::default())
            .await
        {
            Ok(f) => {
                high_watermark = Some(f.high_watermark);
                let done = f.records.is_empty() || f.next_offset <= next;
                records.extend(f.records);
                next = f.next_offset;
                if done || next >= f.high_watermark {
                    break;
                }
            }
            Err(e) => {
                body.push_str(&html::notice(Level::Bad, &format!("cannot read: {e}")));
                break;
            }
        }
    }
    records.truncate(limit);
    body.push_str(&format!(
        "<p class=\"muted\">{} record(s) from offset {} · high watermark {}</p>",
        records.len(),
        if start == i64::MAX {
            "— (none at or after that time)".to_owned()
        } else {
            start.to_string()
        },
        high_watermark.map_or_else(|| "—".to_owned(), |h| h.to_string())
    ));
    let rows = records.iter().map(|r| {
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| format!("<code>{}</code>={}", esc(k), show_bytes(v.as_deref())))
            .collect::<Vec<_>>()
            .join("<br>");
        vec![
            r.offset.to_string(),
            esc(&short_time(r.timestamp)),
            show_bytes(r.key.as_deref()),
            show_bytes(r.value.as_deref()),
            headers,
        ]
    });
    body.push_str(&html::table(
        &["Offset", "Timestamp", "Key", "Value", "Headers"],
        rows,
        "id=\"messages\"",
    ));
    render(&app, &title, "/topics", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-02T00:00:01"), Some(86_401_000));
        assert_eq!(parse_time("2026-12-07T08:00:00Z"), Some(1_796_630_400_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(show_bytes(Some(b"<b>")), "<code>&lt;b&gt;</code>");
        assert!(show_bytes(Some(&[0xff, 0x00])).contains("ff 00"));
        assert!(show_bytes(None).contains("null"));
    }
}
