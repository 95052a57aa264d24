//! Reading the coordinator's four-letter words (`srvr`, `mntr`, `cons`, `dump`, `wchp`),
//! whose text is the same from fjord-coordinator and ZooKeeper, so the console's
//! Coordinator page works against either.

use std::collections::BTreeMap;

/// `srvr`: the member's mode and headline numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Srvr {
    /// `leader`, `follower`, `standalone`, or `not serving`.
    pub mode: String,
    pub zxid: String,
    pub connections: u64,
    pub outstanding: u64,
    pub nodes: u64,
    /// min/avg/max latency, ms.
    pub latency: (f64, f64, f64),
}

pub fn srvr(text: &str) -> Srvr {
    let mut s = Srvr {
        mode: "not serving".into(),
        ..Srvr::default()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Mode" => s.mode = v.to_owned(),
            "Zxid" => s.zxid = v.to_owned(),
            "Connections" => s.connections = v.parse().unwrap_or(0),
            "Outstanding" => s.outstanding = v.parse().unwrap_or(0),
            "Node count" => s.nodes = v.parse().unwrap_or(0),
            "Latency min/avg/max" => {
                let n: Vec<f64> = v.split('/').filter_map(|x| x.parse().ok()).collect();
                if let [a, b, c] = n[..] {
                    s.latency = (a, b, c);
                }
            }
            _ => {}
        }
    }
    s
}

/// `mntr`: key (without `zk_`) → value.
pub fn mntr(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim_start_matches("zk_").to_owned(), v.trim().to_owned()))
        .collect()
}

/// One connection from `cons`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conn {
    pub peer: String,
    /// Its `key=value` fields: `sid`, `recved`, `sent`, `to`, `lop`, ...
    pub fields: BTreeMap<String, String>,
}

pub fn cons(text: &str) -> Vec<Conn> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('/')?;
            let (peer, rest) = rest.split_once('[')?;
            let inner = rest.split_once('(')?.1.trim_end_matches(')');
            let fields = inner
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some(Conn {
                peer: peer.to_owned(),
                fields,
            })
        })
        .collect()
}

/// `dump`: sessions with their timeouts (ms), and each session's ephemeral nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub sessions: Vec<(String, String)>,
    pub ephemerals: BTreeMap<String, Vec<String>>,
}

pub fn dump(text: &str) -> Dump {
    #[derive(PartialEq)]
    enum Part {
        None,
        Sessions,
        Ephemerals,
        Other,
    }
    let mut d = Dump::default();
    let mut part = Part::None;
    let mut owner: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("Global Sessions") {
            part = Part::Sessions;
            continue;
        }
        if line.starts_with("Sessions with Ephemerals") {
            part = Part::Ephemerals;
            continue;
        }
        if line.starts_with("Connections with Ephemerals") || line.starts_with("ephemeral nodes") {
            part = if line.starts_with("ephemeral") {
                Part::None
            } else {
                Part::Other
            };
            continue;
        }
        match part {
            Part::Sessions if line.starts_with("0x") => {
                let mut it = line.split_whitespace();
                if let (Some(id), Some(to)) = (it.next(), it.next()) {
                    d.sessions.push((id.to_owned(), to.to_owned()));
                }
            }
            Part::Ephemerals => {
                if let Some(id) = line.strip_suffix(':').filter(|l| l.starts_with("0x")) {
                    owner = Some(id.to_owned());
                } else if let (Some(o), Some(path)) = (&owner, line.strip_prefix('\t')) {
                    d.ephemerals
                        .entry(o.clone())
                        .or_default()
                        .push(path.trim().to_owned());
                }
            }
            _ => {}
        }
    }
    d
}

/// `wchp`: watched path → the sessions watching it.
pub fn wchp(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut path: Option<String> = None;
    for line in text.lines() {
        if let Some(sid) = line.strip_prefix('\t') {
            if let Some(p) = &path {
                out.entry(p.clone())
                    .or_default()
                    .push(sid.trim().to_owned());
            }
        } else if line.starts_with('/') {
            path = Some(line.trim().to_owned());
            out.entry(line.trim().to_owned()).or_default();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_texts_parse() {
        let s = srvr("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/1.5/6\nReceived: 13\nSent: 13\nConnections: 2\nOutstanding: 0\nZxid: 0x3\nMode: standalone\nNode count: 7\n");
        assert_eq!(s.mode, "standalone");
        assert_eq!((s.connections, s.nodes, s.zxid.as_str()), (2, 7, "0x3"));
        assert_eq!(s.latency, (0.0, 1.5, 6.0));
        assert_eq!(
            srvr("This ZooKeeper instance is not currently serving requests\n").mode,
            "not serving"
        );
        let m = mntr("zk_version\t3.8.0\nzk_znode_count\t7\n");
        assert_eq!(m["znode_count"], "7");
        let c = cons(" /127.0.0.1:58514[1](queued=0,recved=13,sent=13,sid=0x100000d2cd60000,lop=PING,est=1796630748668,to=4000)\n\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].peer, "127.0.0.1:58514");
        assert_eq!(c[0].fields["sid"], "0x100000d2cd60000");
        let d = dump("SessionTracker dump:\nGlobal Sessions(1):\n0x100000d2cd60000\t4000ms\nephemeral nodes dump:\nSessions with Ephemerals (1):\n0x100000d2cd60000:\n\t/app/e\n\t/app/f\nConnections with Ephemerals (1):\n0x100000d2cd60000:\n\t/app/e\n");
        assert_eq!(
            d.sessions,
            vec![("0x100000d2cd60000".into(), "4000ms".into())]
        );
        assert_eq!(d.ephemerals["0x100000d2cd60000"], vec!["/app/e", "/app/f"]);
        let w = wchp("/app\n\t0x1\n\t0x2\n/b\n\t0x1\n");
        assert_eq!(w["/app"], vec!["0x1", "0x2"]);
        assert_eq!(w["/b"], vec!["0x1"]);
    }
}
