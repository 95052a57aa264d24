//! The subject of an X.509 certificate as an RFC 2253 string, the form Java's
//! `X500Principal.getName()` gives: Kafka's default SSL principal is `User:` followed by it,
//! and ZooKeeper's `x509:` identity is it.
//!
//! Only the DER needed to reach the subject is read: the outer certificate, the
//! to-be-signed part's leading fields, and the name. Anything unexpected gives `None`, never
//! a panic.

/// One DER element: tag, and the content bytes.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads one element from the front of `input`, returning it and what follows.
fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High tag numbers (0x1f) never occur in the fields read here.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Element {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject name of a DER certificate, in RFC 2253 form (`CN=alice,O=Example,C=GB`).
pub fn subject_rfc2253(cert_der: &[u8]) -> Option<String> {
    let (cert, _) = element(cert_der)?;
    if cert.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = element(cert.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs.content;
    let (first, after) = element(rest)?;
    // [0] EXPLICIT version is optional.
    if first.tag == 0xa0 {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = element(rest)?.1;
    }
    let (subject, _) = element(rest)?;
    if subject.tag != SEQUENCE {
        return None;
    }
    name_rfc2253(subject.content)
}

/// A Name's RDN sequence, most significant last in DER, printed most specific first.
fn name_rfc2253(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (rdn, rest) = element(rdns)?;
        rdns = rest;
        if rdn.tag != SET {
            return None;
        }
        let mut attrs = Vec::new();
        let mut inner = rdn.content;
        while !inner.is_empty() {
            let (atv, rest) = element(inner)?;
            inner = rest;
            if atv.tag != SEQUENCE {
                return None;
            }
            let (oid, value_rest) = element(atv.content)?;
            if oid.tag != OID {
                return None;
            }
            let (value, _) = element(value_rest)?;
            attrs.push(attribute(oid.content, &value, value_rest)?);
        }
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

fn attribute(oid: &[u8], value: &Element<'_>, value_der: &[u8]) -> Option<String> {
    let dotted = oid_string(oid)?;
    let keyword = match dotted.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.6" => Some("C"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    let text = match value.tag {
        // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1).
        0x0c | 0x13 | 0x16 => std::str::from_utf8(value.content).ok().map(str::to_owned),
        0x14 => Some(value.content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e if value.content.len().is_multiple_of(2) => {
            let units: Vec<u16> = value
                .content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match (keyword, text) {
        (Some(k), Some(t)) => Some(format!("{k}={}", escape(&t))),
        // RFC 2253: other types as the dotted OID and the value's DER in hex.
        _ => {
            let tail = element(value_der)?.1.len();
            let der = &value_der[..value_der.len() - tail];
            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
            Some(format!("{dotted}=#{hex}"))
        }
    }
}

fn oid_string(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut parts = vec![u64::from(first / 40).min(2), 0];
    parts[1] = u64::from(first) - parts[0] * 40;
    let mut acc: u64 = 0;
    for &b in rest {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    if acc != 0 {
        return None;
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// RFC 2253 escaping: `,+"\<>;` anywhere, `#` or a space first, a space last.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn atv(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        tlv(
            SET,
            &tlv(
                SEQUENCE,
                &[tlv(OID, oid), tlv(tag, value.as_bytes())].concat(),
            ),
        )
    }

    fn cert(subject: &[u8]) -> Vec<u8> {
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1, 2, 3]),
            tlv(SEQUENCE, &tlv(OID, &[42, 134, 72])),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, subject),
            tlv(SEQUENCE, &[0; 200]),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        )
    }

    #[test]
    fn subject_in_rfc2253_order() {
        let subject = [
            atv(&[85, 4, 6], 0x13, "GB"),
            atv(&[85, 4, 10], 0x0c, "Example, Ltd"),
            atv(&[85, 4, 3], 0x0c, "alice"),
        ]
        .concat();
        assert_eq!(
            subject_rfc2253(&cert(&subject)).as_deref(),
            Some("CN=alice,O=Example\\, Ltd,C=GB")
        );
    }

    #[test]
    fn unknown_attributes_as_oid_and_hex() {
        // emailAddress (1.2.840.113549.1.9.1) as an IA5String.
        let email_oid = [42, 134, 72, 134, 247, 13, 1, 9, 1];
        let subject = [atv(&[85, 4, 3], 0x0c, "bob"), atv(&email_oid, 0x16, "b@x")].concat();
        assert_eq!(
            subject_rfc2253(&cert(&subject)).as_deref(),
            Some("1.2.840.113549.1.9.1=#1603624078,CN=bob")
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_rfc2253(&[]), None);
        assert_eq!(subject_rfc2253(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_rfc2253(&[0x30, 0x03, 0x30, 0x01]), None);
        let c = cert(&atv(&[85, 4, 3], 0x0c, "x"));
        for cut in 0..c.len() {
            let _ = subject_rfc2253(&c[..cut]);
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("#a b "), "\\#a b\\ ");
        assert_eq!(escape("a+b;c<d>\"e\\"), "a\\+b\\;c\\<d\\>\\\"e\\\\");
    }
}
