//! Tree: browse the coordinator's znodes (data as text, hex or pretty JSON; stat; ACL),
//! with a live pane of the watch events under the current path.

use super::super::html::{self, esc, url, Level};
use super::super::Shared;
use super::render;
use crate::cli::output::timestamp;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct TreeQuery {
    #[serde(default)]
    pub path: Option<String>,
    /// `text` (default), `hex` or `json`.
    #[serde(default)]
    pub view: Option<String>,
}

fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The path's ancestors as links: `/ a / b`.
fn crumbs(path: &str) -> String {
    let mut out = "<a href=\"/tree?path=%2F\">/</a>".to_owned();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        out.push_str(&format!(
            " <a href=\"/tree?path={}\">{}</a> /",
            url(&at),
            esc(part)
        ));
    }
    out.trim_end_matches(" /").to_owned()
}

/// The data in the chosen view.
pub fn show_data(data: &[u8], view: &str) -> String {
    match view {
        "hex" => data
            .chunks(16)
            .enumerate()
            .map(|(i, line)| {
                let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
                let ascii: String = line
                    .iter()
                    .map(|b| {
                        if b.is_ascii_graphic() || *b == b' ' {
                            *b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                format!("{:08x}  {:<47}  {}", i * 16, hex.join(" "), ascii)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        "json" => match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(e) => format!("(not JSON: {e})"),
        },
        _ => match std::str::from_utf8(data) {
            Ok(s) => s.to_owned(),
            Err(_) => data.escape_ascii().to_string(),
        },
    }
}

pub async fn page(State(app): State<Shared>, Query(q): Query<TreeQuery>) -> Response {
    let path = q
        .path
        .clone()
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let view = q.view.clone().unwrap_or_else(|| "text".into());
    let mut body = format!("<p class=\"crumbs\">{}</p>", crumbs(&path));
    let coord = &app.coordinator;
    let node = coord.get_data(&path, false).await;
    let (data, stat) = match node {
        Ok(n) => n,
        Err(e) => {
            body.push_str(&html::notice(Level::Warn, &format!("{path}: {e}")));
            body.push_str(&live_pane(&path));
            return render(&app, "Tree", "/tree", &body);
        }
    };
    let mut children = coord.get_children(&path, false).await.unwrap_or_default();
    children.sort();
    body.push_str("<div class=\"cols\"><div>");
    body.push_str(&format!("<h2>Children ({})</h2>", children.len()));
    let rows = children.iter().map(|c| {
        let p = child_path(&path, c);
        vec![format!("<a href=\"/tree?path={}\">{}</a>", url(&p), esc(c))]
    });
    body.push_str(&html::table(&["Name"], rows, "id=\"children\""));
    body.push_str("<h2>Stat</h2>");
    let ctime = timestamp(stat.ctime);
    let mtime = timestamp(stat.mtime);
    let stat_rows: Vec<(&str, String)> = vec![
        ("cZxid", format!("{:#x}", stat.czxid)),
        ("ctime", ctime),
        ("mZxid", format!("{:#x}", stat.mzxid)),
        ("mtime", mtime),
        ("pZxid", format!("{:#x}", stat.pzxid)),
        ("cversion", stat.cversion.to_string()),
        ("dataVersion", stat.version.to_string()),
        ("aclVersion", stat.aversion.to_string()),
        ("ephemeralOwner", format!("{:#x}", stat.ephemeral_owner)),
        ("dataLength", stat.data_length.to_string()),
        ("numChildren", stat.num_children.to_string()),
    ];
    body.push_str(&html::table(
        &["Field", "Value"],
        stat_rows
            .into_iter()
            .map(|(k, v)| vec![format!("<code>{k}</code>"), esc(&v)]),
        "id=\"stat\"",
    ));
    body.push_str("</div><div>");
    let tab = |v: &str, label: &str| {
        if v == view {
            format!("<strong>{label}</strong>")
        } else {
            format!(
                "<a href=\"/tree?path={}&amp;view={v}\">{label}</a>",
                url(&path)
            )
        }
    };
    body.push_str(&format!(
        "<h2>Data ({} bytes)</h2><p>{} · {} · {}</p><pre id=\"data\">{}</pre>",
        data.len(),
        tab("text", "text"),
        tab("hex", "hex"),
        tab("json", "JSON"),
        esc(&show_data(&data, &view))
    ));
    body.push_str("<h2>ACL</h2>");
    match coord.get_acl(&path).await {
        Ok((acl, _)) => {
            let rows = acl.iter().map(|a| {
                vec![
                    esc(&a.id.scheme),
                    format!("<code>{}</code>", esc(&a.id.id)),
                    esc(&perms(a.perms)),
                ]
            });
            body.push_str(&html::table(
                &["Scheme", "Id", "Permissions"],
                rows,
                "id=\"acl\"",
            ));
        }
        Err(e) => body.push_str(&html::notice(
            Level::Warn,
            &format!("cannot read the ACL: {e}"),
        )),
    }
    body.push_str(&live_pane(&path));
    body.push_str("</div></div>");
    render(&app, "Tree", "/tree", &body)
}

fn perms(bits: i32) -> String {
    use fjord_shared::jute::perms;
    [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, c)| *c)
    .collect()
}

fn live_pane(path: &str) -> String {
    format!(
        "<h2>Live: watch events under this path</h2><ul class=\"events\" id=\"znode-live\" data-path=\"{}\">\
<li class=\"none muted\">waiting for changes…</li></ul>",
        esc(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_views() {
        assert_eq!(show_data(b"{\"a\":1}", "json"), "{\n  \"a\": 1\n}");
        assert!(show_data(b"ab\x00", "hex").starts_with("00000000  61 62 00"));
        assert_eq!(show_data(b"\xff", "text"), "\\xff");
        assert_eq!(perms(31), "cdrwa");
        assert!(crumbs("/a/b").contains("path=%2Fa%2Fb"));
    }
}
