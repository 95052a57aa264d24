//! How the tool prints coordinator data: node data as text when it is UTF-8 (escaped bytes
//! otherwise, so binary data never garbles a terminal), and stats with the field names
//! ZooKeeper's `zkCli` uses, so people who know one can read the other.

use std::io::Write;

use fjord_shared::coord_client::Stat;

/// Node data for display: as is when it is UTF-8, otherwise with every non-printable or
/// non-ASCII byte escaped (`\x00`, `\n`, ...).
pub(crate) fn data_text(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.to_owned(),
        Err(_) => data.escape_ascii().to_string(),
    }
}

/// Writes all 11 stat fields, one `name = value` line each, in zkCli's order and naming.
pub(crate) fn write_stat(out: &mut dyn Write, s: &Stat) -> std::io::Result<()> {
    writeln!(out, "cZxid = {:#x}", s.czxid)?;
    writeln!(out, "ctime = {}", timestamp(s.ctime))?;
    writeln!(out, "mZxid = {:#x}", s.mzxid)?;
    writeln!(out, "mtime = {}", timestamp(s.mtime))?;
    writeln!(out, "pZxid = {:#x}", s.pzxid)?;
    writeln!(out, "cversion = {}", s.cversion)?;
    writeln!(out, "dataVersion = {}", s.version)?;
    writeln!(out, "aclVersion = {}", s.aversion)?;
    writeln!(out, "ephemeralOwner = {:#x}", s.ephemeral_owner)?;
    writeln!(out, "dataLength = {}", s.data_length)?;
    writeln!(out, "numChildren = {}", s.num_children)
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC (`2024-05-01T12:00:00.123Z`).
pub(crate) fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so no date library is needed for one line of output.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// 1536 → `1.5 KiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_text_when_utf8_and_escaped_otherwise() {
        assert_eq!(data_text(b"{\"id\":1}"), "{\"id\":1}");
        assert_eq!(data_text("grüße".as_bytes()), "grüße");
        assert_eq!(data_text(b""), "");
        assert_eq!(data_text(&[0x00, b'a', 0xff, b'\n']), "\\x00a\\xff\\n");
    }

    #[test]
    fn timestamps_are_iso_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(timestamp(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(timestamp(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn stat_prints_all_fields_like_zkcli() {
        let s = Stat {
            czxid: 2,
            mzxid: 3,
            ctime: 0,
            mtime: 1000,
            version: 4,
            cversion: 5,
            aversion: 6,
            ephemeral_owner: 0x1000,
            data_length: 7,
            num_children: 8,
            pzxid: 9,
        };
        let mut out = Vec::new();
        write_stat(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = "cZxid = 0x2\nctime = 1970-01-01T00:00:00.000Z\nmZxid = 0x3\nmtime = 1970-01-01T00:00:01.000Z\n\
                    pZxid = 0x9\ncversion = 5\ndataVersion = 4\naclVersion = 6\nephemeralOwner = 0x1000\n\
                    dataLength = 7\nnumChildren = 8\n";
        assert_eq!(text, want);
    }
}
