//! The console's live side: background tasks that follow the cluster and tell every open
//! page through one server-sent-events stream.
//!
//! - The poller reads metadata every second (and topic configs, groups with their lag,
//!   and the coordinator's words less often) into the Overview, and publishes it.
//! - The watcher keeps a persistent recursive watch on the coordinator's tree: every
//!   event goes to the Tree page's live pane, and the ones that mean something in Kafka's
//!   layout become timeline lines (a broker leaving, an ISR shrinking, ...). A broker
//!   leaving also wakes the poller, so the Overview turns red at once.

use super::health::{self, CoordinatorRow, GroupRow, Overview};
use super::html::Level;
use super::timeline::{self, Event, Znode};
use crate::cli::four_letter;
use crate::client::{Client as Kafka, OffsetSpec};
use fjord_shared::cluster::{BrokerRegistration, PartitionState};
use fjord_shared::coord_client::{AddWatchMode, Client as Coordinator, EventType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, Notify};

/// Timeline lines kept for the Events page.
const TIMELINE: usize = 500;
/// Lag history kept for the group charts.
pub const LAG_WINDOW_MS: i64 = 30 * 60 * 1000;
/// Every how many metadata polls the topic configs are read.
const CONFIG_EVERY: u32 = 15;
/// Seconds between reads of the groups, and of the coordinator's members.
const GROUPS_EVERY: u8 = 5;
const COORDINATOR_EVERY: u8 = 2;

/// What the live stream carries.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Live {
    Overview(Box<Overview>),
    Timeline(Event),
    Znode {
        at_ms: i64,
        event: String,
        path: String,
    },
    Lag {
        group: String,
        at_ms: i64,
        lag: i64,
    },
}

impl Live {
    pub fn name(&self) -> &'static str {
        match self {
            Live::Overview(_) => "overview",
            Live::Timeline(_) => "timeline",
            Live::Znode { .. } => "znode",
            Live::Lag { .. } => "lag",
        }
    }
}

/// Shared by the background tasks and the page handlers.
#[derive(Debug)]
pub struct Hub {
    pub tx: broadcast::Sender<Live>,
    pub overview: RwLock<Overview>,
    pub timeline: Mutex<VecDeque<Event>>,
    pub groups: RwLock<Vec<GroupRow>>,
    pub lag_history: Mutex<BTreeMap<String, VecDeque<(i64, i64)>>>,
    seen: Mutex<BTreeSet<i32>>,
    min_isr: RwLock<HashMap<String, usize>>,
    coordinator: RwLock<Vec<CoordinatorRow>>,
    /// The brokers registered with the coordinator, as the watcher follows them.
    registered: RwLock<Option<BTreeSet<i32>>>,
    poke: Notify,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Hub {
            tx,
            overview: RwLock::new(Overview::default()),
            timeline: Mutex::new(VecDeque::new()),
            groups: RwLock::new(Vec::new()),
            lag_history: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeSet::new()),
            min_isr: RwLock::new(HashMap::new()),
            coordinator: RwLock::new(Vec::new()),
            registered: RwLock::new(None),
            poke: Notify::new(),
        })
    }

    pub fn overview(&self) -> Overview {
        self.overview.read().map(|o| o.clone()).unwrap_or_default()
    }

    pub fn timeline(&self, n: usize) -> Vec<Event> {
        lock(&self.timeline).iter().take(n).cloned().collect()
    }

    fn set_registered(&self, id: i32, registered: bool) {
        if let Ok(mut r) = self.registered.write() {
            let set = r.get_or_insert_with(BTreeSet::new);
            if registered {
                set.insert(id);
            } else {
                set.remove(&id);
            }
        }
    }

    /// `min.insync.replicas` of `topic`, as last read (1 if not known).
    pub fn min_isr(&self, topic: &str) -> usize {
        self.min_isr
            .read()
            .ok()
            .and_then(|m| m.get(topic).copied())
            .unwrap_or(1)
    }

    pub fn groups(&self) -> Vec<GroupRow> {
        self.groups.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn lag_history(&self, group: &str) -> Vec<(i64, i64)> {
        lock(&self.lag_history)
            .get(group)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    fn publish(&self, live: Live) {
        // No page open: nobody to tell.
        let _ = self.tx.send(live);
    }

    /// Adds a timeline line and tells the pages.
    pub fn record(&self, level: Level, kind: &'static str, text: String) {
        let e = Event {
            at_ms: now_ms(),
            level,
            kind,
            text,
        };
        {
            let mut t = lock(&self.timeline);
            t.push_front(e.clone());
            t.truncate(TIMELINE);
        }
        self.publish(Live::Timeline(e));
    }
}

/// Follows the cluster until the process ends: the Overview every second (or at once
/// when the watcher pokes), groups and their lag every few seconds, the coordinator's
/// members every other second, each in a task of its own so a slow one (a group whose
/// partition leader just died) never holds the Overview back.
pub async fn poll(hub: Arc<Hub>, kafka: Kafka, coordinator: String) {
    let groups = {
        let (hub, kafka) = (hub.clone(), kafka.clone());
        tokio::spawn(async move {
            loop {
                poll_groups(&hub, &kafka).await;
                tokio::time::sleep(Duration::from_secs(GROUPS_EVERY.into())).await;
            }
        })
    };
    let members = {
        let hub = hub.clone();
        tokio::spawn(async move {
            loop {
                let rows = coordinator_rows(&coordinator).await;
                if let Ok(mut c) = hub.coordinator.write() {
                    *c = rows;
                }
                tokio::time::sleep(Duration::from_secs(COORDINATOR_EVERY.into())).await;
            }
        })
    };
    let _stop = AbortOnDrop(vec![groups, members]);
    let mut tick: u32 = 0;
    loop {
        match kafka.fetch_metadata(None, false).await {
            Ok(md) => {
                if tick.is_multiple_of(CONFIG_EVERY) {
                    poll_min_isr(&hub, &kafka, &md).await;
                }
                let seen = {
                    let mut s = lock(&hub.seen);
                    s.extend(md.brokers.keys().copied());
                    s.clone()
                };
                let min_isr = hub.min_isr.read().map(|m| m.clone()).unwrap_or_default();
                let coord_rows = hub
                    .coordinator
                    .read()
                    .map(|c| c.clone())
                    .unwrap_or_default();
                let registered = hub.registered.read().ok().and_then(|r| r.clone());
                let o = health::overview(
                    &md,
                    &min_isr,
                    &seen,
                    registered.as_ref(),
                    &hub.groups(),
                    &coord_rows,
                    now_ms(),
                );
                publish_overview(&hub, o);
            }
            Err(e) => {
                let mut o = hub.overview();
                o.error = Some(format!("cannot read the cluster: {e}"));
                o.at_ms = now_ms();
                publish_overview(&hub, o);
            }
        }
        tick = tick.wrapping_add(1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = hub.poke.notified() => {}
        }
    }
}

/// Stops the helper tasks when the poller stops.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn publish_overview(hub: &Hub, o: Overview) {
    if let Ok(mut cur) = hub.overview.write() {
        *cur = o.clone();
    }
    hub.publish(Live::Overview(Box::new(o)));
}

async fn poll_min_isr(hub: &Hub, kafka: &Kafka, md: &crate::client::ClusterMetadata) {
    let mut out = HashMap::new();
    for name in md.topics.keys() {
        if let Ok(Some(v)) = kafka.min_insync_replicas(name).await {
            out.insert(name.clone(), v);
        }
    }
    if let Ok(mut m) = hub.min_isr.write() {
        *m = out;
    }
}

/// Every group's state, members and lag; the lag history grows by one sample each.
async fn poll_groups(hub: &Hub, kafka: &Kafka) {
    let Ok(listing) = kafka.list_groups().await else {
        return;
    };
    let mut rows = Vec::new();
    let now = now_ms();
    for g in listing {
        let (state, members) = match kafka.describe_group(&g.group_id).await {
            Ok(d) => (d.state, d.members.len()),
            Err(_) => (g.state.clone().unwrap_or_default(), 0),
        };
        let lag = group_lag(kafka, &g.group_id).await;
        rows.push(GroupRow {
            group: g.group_id.clone(),
            state,
            members,
            lag: lag.map(|l| l.values().map(|(_, _, lag)| lag).sum()),
            coordinator: g.coordinator,
        });
    }
    rows.sort_by(|a, b| a.group.cmp(&b.group));
    {
        let mut history = lock(&hub.lag_history);
        for r in &rows {
            if let Some(lag) = r.lag {
                let h = history.entry(r.group.clone()).or_default();
                h.push_back((now, lag));
                while h.front().is_some_and(|(t, _)| now - t > LAG_WINDOW_MS) {
                    h.pop_front();
                }
                hub.publish(Live::Lag {
                    group: r.group.clone(),
                    at_ms: now,
                    lag,
                });
            }
        }
        history.retain(|g, _| rows.iter().any(|r| &r.group == g));
    }
    if let Ok(mut g) = hub.groups.write() {
        *g = rows;
    }
}

/// (topic, partition) → (committed, latest, lag) for every partition `group` committed.
pub async fn group_lag(
    kafka: &Kafka,
    group: &str,
) -> Option<BTreeMap<(String, i32), (i64, i64, i64)>> {
    let committed = kafka.fetch_committed_offsets(group, None).await.ok()?;
    let mut out = BTreeMap::new();
    for ((topic, partition), c) in committed {
        if c.offset < 0 {
            continue;
        }
        let Ok(Some(end)) = kafka
            .list_offset(&topic, partition, OffsetSpec::Latest)
            .await
        else {
            continue;
        };
        out.insert((topic, partition), (c.offset, end, (end - c.offset).max(0)));
    }
    Some(out)
}

/// `srvr` and `mntr` of every member of the connect string.
pub async fn coordinator_rows(coordinator: &str) -> Vec<CoordinatorRow> {
    let limit = Duration::from_millis(1500);
    let mut rows = Vec::new();
    for addr in four_letter::addresses(coordinator) {
        let row = match four_letter::ask(&addr, "srvr", limit).await {
            Ok(text) => {
                let s = super::zk_text::srvr(&text);
                let sessions = match four_letter::ask(&addr, "mntr", limit).await {
                    Ok(m) => super::zk_text::mntr(&m)
                        .get("global_sessions")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                CoordinatorRow {
                    address: addr,
                    mode: s.mode,
                    sessions,
                    connections: s.connections,
                    avg_latency_ms: s.latency.1,
                    znodes: s.nodes,
                }
            }
            Err(_) => CoordinatorRow {
                address: addr,
                mode: "unreachable".into(),
                ..Default::default()
            },
        };
        rows.push(row);
    }
    rows
}

/// Follows the coordinator's tree until the process ends (the client re-registers the
/// watch after reconnecting).
pub async fn watch(hub: Arc<Hub>, coord: Arc<Coordinator>) {
    let mut events = coord.events();
    let mut states: HashMap<(String, i32), PartitionState> = HashMap::new();
    load_states(&coord, &mut states).await;
    load_registered(&hub, &coord).await;
    if let Err(e) = coord
        .add_watch("/", AddWatchMode::PersistentRecursive)
        .await
    {
        tracing::warn!(error = %e, "cannot watch the coordinator's tree; the live panes stay quiet");
        return;
    }
    let mut last_reload = Instant::now();
    while let Some(ev) = events.recv().await {
        let fjord_shared::coord_client::Event::Watch(w) = ev else {
            // Reconnected after a gap: read the states again so diffs stay right.
            if last_reload.elapsed() > Duration::from_secs(1) {
                load_states(&coord, &mut states).await;
                load_registered(&hub, &coord).await;
                last_reload = Instant::now();
            }
            continue;
        };
        hub.publish(Live::Znode {
            at_ms: now_ms(),
            event: w.event_type.to_string(),
            path: w.path.clone(),
        });
        let created = w.event_type == EventType::NodeCreated;
        let deleted = w.event_type == EventType::NodeDeleted;
        let changed = w.event_type == EventType::NodeDataChanged;
        match timeline::classify(&w.path) {
            Znode::Broker(id) if created => {
                hub.set_registered(id, true);
                let addr = coord
                    .get_data(&w.path, false)
                    .await
                    .ok()
                    .and_then(|(d, _)| serde_json::from_slice::<BrokerRegistration>(&d).ok())
                    .map(|r| format!(" ({})", r.endpoints.join(", ")))
                    .unwrap_or_default();
                hub.record(Level::Ok, "broker", format!("broker {id} joined{addr}"));
                hub.poke.notify_one();
            }
            Znode::Broker(id) if deleted => {
                hub.set_registered(id, false);
                hub.record(
                    Level::Bad,
                    "broker",
                    format!("broker {id} left the cluster"),
                );
                hub.poke.notify_one();
            }
            Znode::Controller if created || changed => {
                let who = coord
                    .get_data(&w.path, false)
                    .await
                    .ok()
                    .and_then(|(d, _)| timeline::controller_of(&d));
                if let Some(id) = who {
                    hub.record(
                        Level::Warn,
                        "controller",
                        format!("broker {id} is now the controller"),
                    );
                }
                hub.poke.notify_one();
            }
            Znode::Controller if deleted => {
                hub.record(Level::Warn, "controller", "the controller resigned".into());
            }
            Znode::Topic(t) if created => {
                hub.record(Level::Info, "topic", format!("topic {t} created"));
                hub.poke.notify_one();
            }
            Znode::Topic(t) if deleted => {
                hub.record(Level::Info, "topic", format!("topic {t} deleted"));
                states.retain(|(topic, _), _| topic != &t);
                hub.poke.notify_one();
            }
            Znode::PartitionState(t, p) if created || changed => {
                let Some(new) = coord
                    .get_data(&w.path, false)
                    .await
                    .ok()
                    .and_then(|(d, _)| timeline::state_of(&d))
                else {
                    continue;
                };
                let key = (t.clone(), p);
                for (level, text) in timeline::partition_change(&t, p, states.get(&key), &new) {
                    hub.record(level, "partition", text);
                }
                states.insert(key, new);
                hub.poke.notify_one();
            }
            _ => {}
        }
    }
}

/// The registered brokers now.
async fn load_registered(hub: &Hub, coord: &Coordinator) {
    let ids = coord
        .get_children(fjord_shared::cluster::BROKER_IDS, false)
        .await
        .ok()
        .map(|c| c.iter().filter_map(|id| id.parse().ok()).collect());
    if let Ok(mut r) = hub.registered.write() {
        *r = ids;
    }
}

/// Every partition state now, for diffs.
async fn load_states(coord: &Coordinator, states: &mut HashMap<(String, i32), PartitionState>) {
    states.clear();
    let Ok(topics) = coord
        .get_children(fjord_shared::cluster::TOPICS, false)
        .await
    else {
        return;
    };
    for t in topics {
        let parts_path = fjord_shared::cluster::partitions_path(&t);
        let Ok(parts) = coord.get_children(&parts_path, false).await else {
            continue;
        };
        for p in parts.iter().filter_map(|p| p.parse::<i32>().ok()) {
            let path = fjord_shared::cluster::partition_state_path(&t, p);
            if let Some(s) = coord
                .get_data(&path, false)
                .await
                .ok()
                .and_then(|(d, _)| timeline::state_of(&d))
            {
                states.insert((t.clone(), p), s);
            }
        }
    }
}
