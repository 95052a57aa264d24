//! The console's HTML: escaping, the page frame (navigation, the live stream's script),
//! and small building blocks. Every piece of cluster data goes through [`esc`].

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// How healthy something is: the colour of its badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Bad,
    Info,
}

impl Level {
    pub fn class(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Bad => "bad",
            Level::Info => "info",
        }
    }
}

/// A coloured badge.
pub fn badge(level: Level, text: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        level.class(),
        esc(text)
    )
}

/// The navigation: (path, label).
const NAV: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/brokers", "Brokers"),
    ("/topics", "Topics"),
    ("/groups", "Groups"),
    ("/coordinator", "Coordinator"),
    ("/tree", "Tree"),
    ("/events", "Events"),
];

/// A whole page: `active` is the navigation entry it belongs to.
pub fn page(title: &str, active: &str, cluster: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let class = if href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Fjord</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
<body><header><div class=\"brand\">Fjord <span>{cluster}</span></div><nav>{nav}</nav>\
<div id=\"live-status\" class=\"live-status\" title=\"live updates\">connecting…</div></header>\
<main><h1>{title}</h1>{body}</main>\
<script src=\"/static/console.js\"></script></body></html>\n",
        title = esc(title),
        cluster = esc(cluster),
    )
}

/// A table with a header row; cells are HTML already.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>, attrs: &str) -> String {
    let mut out = format!("<table {attrs}><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    let mut empty = true;
    for row in rows {
        empty = false;
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if empty {
        let _ = write!(
            out,
            "<tr><td class=\"empty\" colspan=\"{}\">none</td></tr>",
            headers.len()
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// A list of broker ids: `1, 2, 3`.
pub fn ids(ids: &[i32]) -> String {
    ids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds since the epoch, as UTC time.
pub fn time(ms: i64) -> String {
    crate::cli::output::timestamp(ms)
}

/// A message box.
pub fn notice(level: Level, text: &str) -> String {
    format!("<p class=\"notice {}\">{}</p>", level.class(), esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url("a b/c?d"), "a%20b%2Fc%3Fd");
        assert!(page("T<", "/", "c", "").contains("<title>T&lt; · Fjord</title>"));
    }
}
