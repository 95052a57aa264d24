//! Plain-text tables for terminals: a header row, columns padded to their widest cell and
//! separated by two spaces, the last column unpadded (so no trailing blanks).
//!
//! With `--output json` every table is one line of JSON instead (an array of objects keyed
//! by column name: `PROTOCOL-TYPE` becomes `protocol_type`), key-value headers are one
//! object, and notes go to stderr, so stdout is JSON Lines a script can read.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches this process's output to JSON (`--output json`).
pub(crate) fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether output is JSON.
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A column or field name as a JSON key: `LOG-END-OFFSET` → `log_end_offset`,
/// `#PARTITIONS` → `partitions`, `protocol type` → `protocol_type`.
pub(crate) fn key(name: &str) -> String {
    name.trim_start_matches('#')
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
}

/// The blank line between sections (none in JSON).
pub(crate) fn gap(out: &mut dyn Write) -> std::io::Result<()> {
    if json() {
        Ok(())
    } else {
        writeln!(out)
    }
}

/// `name: value` lines, or one JSON object.
pub(crate) fn fields(out: &mut dyn Write, pairs: &[(&str, String)]) -> std::io::Result<()> {
    if json() {
        let obj: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (key(k), serde_json::Value::String(v.clone())))
            .collect();
        return writeln!(out, "{}", serde_json::Value::Object(obj));
    }
    for (k, v) in pairs {
        writeln!(out, "{k}: {v}")?;
    }
    Ok(())
}

/// A remark for people (nothing found, what was done): stdout in text, stderr in JSON.
pub(crate) fn note(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    if json() {
        eprintln!("{text}");
        Ok(())
    } else {
        writeln!(out, "{text}")
    }
}

/// A table being filled.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Appends a row (missing cells are blank).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table, each line prefixed by `indent` (or, in JSON, as one line).
    pub(crate) fn write(&self, out: &mut dyn Write, indent: &str) -> std::io::Result<()> {
        if json() {
            return writeln!(out, "{}", self.to_json());
        }
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(width - cell.chars().count() + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

impl Table {
    /// The rows as an array of objects keyed by column name; `-` cells are null.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let Some((headers, rows)) = self.rows.split_first() else {
            return serde_json::Value::Array(Vec::new());
        };
        let keys: Vec<String> = headers.iter().map(|h| key(h)).collect();
        serde_json::Value::Array(
            rows.iter()
                .map(|r| {
                    let obj: serde_json::Map<String, serde_json::Value> = keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            let v = match r.get(i).map(String::as_str) {
                                None | Some("-") => serde_json::Value::Null,
                                Some(cell) => serde_json::Value::String(cell.to_owned()),
                            };
                            (k.clone(), v)
                        })
                        .collect();
                    serde_json::Value::Object(obj)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_blanks() {
        let mut t = Table::new(&["ID", "ADDRESS", "RACK"]);
        t.row(vec!["1".into(), "127.0.0.1:9092".into(), "-".into()]);
        t.row(vec!["10".into(), "h:1".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out, "  ").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "  ID  ADDRESS         RACK\n  1   127.0.0.1:9092  -\n  10  h:1\n"
        );
        assert_eq!(
            t.to_json().to_string(),
            r#"[{"address":"127.0.0.1:9092","id":"1","rack":null},{"address":"h:1","id":"10","rack":""}]"#
        );
        assert_eq!(key("LOG-END-OFFSET"), "log_end_offset");
        assert_eq!(key("#PARTITIONS"), "partitions");
    }
}
