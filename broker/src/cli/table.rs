//! Plain-text tables for terminals: a header row, columns padded to their widest cell and
//! separated by two spaces, the last column unpadded (so no trailing blanks).

use std::io::Write;

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

    /// Writes the table, each line prefixed by `indent`.
    pub(crate) fn write(&self, out: &mut dyn Write, indent: &str) -> std::io::Result<()> {
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
    }
}
