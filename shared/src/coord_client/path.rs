//! Paths as the client sees them versus as the server sees them.
//!
//! A connect string `HOST:PORT[,HOST:PORT..][/chroot]` may end in a chroot: every path the
//! application passes is then relative to it. The chroot is prepended to every path sent and
//! stripped from every path received (created names, sync results, watch events), exactly as
//! ZooKeeper's Java client does, so code written against `/brokers/ids` works unchanged under
//! `/kafka-a` or `/kafka-b`.
//!
//! Paths are also validated here, with the rules of ZooKeeper's `PathUtils.validatePath`,
//! so a malformed path fails locally with a clear message instead of a bare `BADARGUMENTS`.

use super::error::Error;

/// The port used when a connect-string entry names none (ZooKeeper's default client port).
pub const DEFAULT_PORT: u16 = 2181;

/// A parsed connect string: the servers to rotate over and the optional chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// `host:port` entries, in the order given (IPv6 hosts keep their brackets).
    pub hosts: Vec<String>,
    /// The chroot, or `None` when absent or `/`.
    pub chroot: Option<String>,
}

impl ConnectString {
    /// Parses `HOST:PORT[,HOST:PORT..][/chroot]`. A missing port means 2181.
    pub fn parse(s: &str) -> Result<ConnectString, Error> {
        let bad = |why: &str| Error::BadArgument(format!("connect string {s:?}: {why}"));
        let (hosts_part, chroot) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                validate_path(c, false).map_err(|_| bad("invalid chroot"))?;
                Some(c.to_owned())
            }
        };
        let mut hosts = Vec::new();
        for entry in hosts_part.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(bad("empty host entry"));
            }
            hosts.push(normalize_host(entry).ok_or_else(|| bad("bad HOST:PORT entry"))?);
        }
        Ok(ConnectString { hosts, chroot })
    }
}

/// Returns `host:port`, adding the default port when there is none; `None` if malformed.
fn normalize_host(entry: &str) -> Option<String> {
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p != 0);
    if let Some(rest) = entry.strip_prefix('[') {
        // IPv6 literal: `[addr]` or `[addr]:port`.
        let (addr, after) = rest.split_once(']')?;
        if addr.is_empty() {
            return None;
        }
        return match after {
            "" => Some(format!("[{addr}]:{DEFAULT_PORT}")),
            p => p
                .strip_prefix(':')
                .filter(|p| port_ok(p))
                .map(|_| entry.to_owned()),
        };
    }
    match entry.rsplit_once(':') {
        None => Some(format!("{entry}:{DEFAULT_PORT}")),
        Some((host, port)) if !host.is_empty() && !host.contains(':') && port_ok(port) => {
            Some(entry.to_owned())
        }
        Some(_) => None,
    }
}

/// Maps paths between the application's view and the server's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chroot(Option<String>);

impl Chroot {
    pub(crate) fn new(root: Option<String>) -> Self {
        Chroot(root)
    }

    /// The path to send for an application path.
    pub(crate) fn to_server(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_owned(),
            Some(root) if path == "/" => root.clone(),
            Some(root) => format!("{root}{path}"),
        }
    }

    /// The application's path for a path the server sent. Paths outside the chroot (which a
    /// correct server never sends) pass through unchanged rather than being mangled.
    pub(crate) fn to_client(&self, path: &str) -> String {
        let Some(root) = &self.0 else {
            return path.to_owned();
        };
        match path.strip_prefix(root.as_str()) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => path.to_owned(),
        }
    }
}

/// Checks a znode path with ZooKeeper's rules. `sequential` allows a trailing `/` (the server
/// appends the sequence number).
pub(crate) fn validate_path(path: &str, sequential: bool) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::BadArgument(format!("invalid path {path:?}: {why}")));
    if path.is_empty() {
        return bad("empty");
    }
    if !path.starts_with('/') {
        return bad("must start with /");
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') && !sequential {
        return bad("must not end with /");
    }
    let body = if sequential {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    for segment in body.split('/').skip(1) {
        match segment {
            "" => return bad("empty node name"),
            "." | ".." => return bad("relative paths are not allowed"),
            _ => {}
        }
    }
    if path.chars().any(|c| {
        matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{f000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
    }) {
        return bad("contains a forbidden character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_parse() {
        let cs = ConnectString::parse("127.0.0.1:2181").unwrap();
        assert_eq!(cs.hosts, vec!["127.0.0.1:2181"]);
        assert_eq!(cs.chroot, None);

        let cs = ConnectString::parse("a:1, b:2 ,c/kafka/x").unwrap();
        assert_eq!(cs.hosts, vec!["a:1", "b:2", "c:2181"]);
        assert_eq!(cs.chroot.as_deref(), Some("/kafka/x"));

        let cs = ConnectString::parse("[::1]:2182,[fe80::1]/").unwrap();
        assert_eq!(cs.hosts, vec!["[::1]:2182", "[fe80::1]:2181"]);
        assert_eq!(cs.chroot, None);

        for bad in [
            "", "a:1,", ",a:1", "a:x", "a:0", "a:70000", ":1", "[]:1", "[::1]x", "::1:5", "a:1/b/",
            "a:1//", "a:1/b//c",
        ] {
            assert!(
                matches!(ConnectString::parse(bad), Err(Error::BadArgument(_))),
                "{bad:?} should fail"
            );
        }
    }

    #[test]
    fn chroot_maps_both_ways() {
        let c = Chroot::new(Some("/app".into()));
        assert_eq!(c.to_server("/"), "/app");
        assert_eq!(c.to_server("/a/b"), "/app/a/b");
        assert_eq!(c.to_client("/app"), "/");
        assert_eq!(c.to_client("/app/a/b"), "/a/b");
        // Not under the chroot: a sibling sharing a prefix, or elsewhere entirely.
        assert_eq!(c.to_client("/apple"), "/apple");
        assert_eq!(c.to_client("/other"), "/other");

        let none = Chroot::default();
        assert_eq!(none.to_server("/a"), "/a");
        assert_eq!(none.to_client("/a"), "/a");
    }

    #[test]
    fn paths_validate_like_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/a.b/c..d", "/zookeeper", "/ünï"] {
            assert!(validate_path(ok, false).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/./a",
            "/a/..",
            "/a\u{0}",
            "/a\u{7f}",
            "/\u{f000}",
        ] {
            assert!(validate_path(bad, false).is_err(), "{bad:?}");
        }
        // A sequential create may end in / (the server appends the counter).
        assert!(validate_path("/q/", true).is_ok());
        assert!(validate_path("/q/item-", true).is_ok());
        assert!(validate_path("/q//", true).is_err());
    }
}
