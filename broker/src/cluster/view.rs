//! The broker's view of the cluster, read from the coordinator and kept current by watches.
//!
//! One persistent recursive watch per subtree (`/brokers`, `/controller`, `/config/topics`,
//! `/admin`) tells us of every change with no polling. An event names the
//! znode that changed, and [`ClusterView::reload`] re-reads just that znode. The view is
//! published as an immutable snapshot (`Arc<ClusterView>`) through a `watch` channel, so
//! request handlers read it without locks and react to changes by waiting on the channel.

use super::reassignment::Replicas;
use bytes::Bytes;
use fjord_shared::cluster::{
    self, BrokerRegistration, ClusterId, ControllerInfo, PartitionState, PreferredReplicaElection,
    TopicAssignment, TopicConfig,
};
use fjord_shared::coord_client::{Client, Error as CoordError};
use fjord_shared::jute::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long Metadata keeps listing a broker after its registration went away.
///
/// A broker that dies leaves the broker list at the moment the controller moves its
/// leaderships. librdkafka, given both changes in one Metadata answer, moves each
/// partition to its new leader and then, while it decommissions the vanished broker,
/// sets those same partitions back to "no leader"; it then waits for its next
/// once-a-second metadata scan before it produces again. Listing the departed broker a
/// little longer lets clients move their partitions first and drop the broker later.
/// Leaders, ISR and offline replicas are still computed from live brokers only.
pub const DEPARTED_GRACE: Duration = Duration::from_secs(5);

/// One topic as the coordinator describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicView {
    /// The topic id as stored in the coordinator (see [`TopicView::set_topic_id`]).
    pub topic_id: String,
    /// `topic_id` parsed once, for the Fetch and Metadata requests that name topics by id.
    id: Uuid,
    /// partition → replicas, preferred leader first (during a reassignment: every
    /// replica, the target first; see [`super::reassignment`]).
    pub assignment: BTreeMap<i32, Vec<i32>>,
    /// partition → replicas joining it in a reassignment (Kafka's `adding_replicas`).
    pub adding: BTreeMap<i32, Vec<i32>>,
    /// partition → replicas leaving it in a reassignment (Kafka's `removing_replicas`).
    pub removing: BTreeMap<i32, Vec<i32>>,
    /// The version of the topic znode the assignment was read from.
    pub znode_version: i32,
    /// partition → (state, znode version for conditional updates).
    pub states: BTreeMap<i32, (PartitionState, i32)>,
    /// Topic config overrides.
    pub config: BTreeMap<String, String>,
}

impl TopicView {
    /// The topic id as the Kafka protocol carries it; nil for a topic that has none.
    pub fn uuid(&self) -> Uuid {
        self.id
    }

    /// A partition's replicas with its reassignment, if it is being reassigned.
    pub fn replicas(&self, partition: i32) -> Replicas {
        let list = |m: &BTreeMap<i32, Vec<i32>>| m.get(&partition).cloned().unwrap_or_default();
        Replicas {
            all: list(&self.assignment),
            adding: list(&self.adding),
            removing: list(&self.removing),
        }
    }

    /// Whether any partition of the topic is being reassigned.
    pub fn reassigning(&self) -> bool {
        self.adding
            .values()
            .chain(self.removing.values())
            .any(|r| !r.is_empty())
    }

    /// The topic znode's content for this view (version 3, Kafka's layout).
    pub fn znode(&self) -> TopicAssignment {
        let keyed = |m: &BTreeMap<i32, Vec<i32>>, all: bool| -> BTreeMap<String, Vec<i32>> {
            m.iter()
                .filter(|(_, r)| all || !r.is_empty())
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect()
        };
        TopicAssignment {
            version: 3,
            partitions: keyed(&self.assignment, true),
            topic_id: (!self.topic_id.is_empty()).then(|| self.topic_id.clone()),
            adding_replicas: keyed(&self.adding, false),
            removing_replicas: keyed(&self.removing, false),
        }
    }

    /// Sets the topic id (its coordinator text) and the parsed id together.
    pub fn set_topic_id(&mut self, text: String) {
        self.id = parse_topic_id(&text);
        self.topic_id = text;
    }
}

/// A topic znode's per-partition lists keyed by partition number; keys that are not
/// numbers are skipped.
fn keyed_by_partition(m: &BTreeMap<String, Vec<i32>>) -> BTreeMap<i32, Vec<i32>> {
    m.iter()
        .filter_map(|(p, r)| Some((p.parse().ok()?, r.clone())))
        .collect()
}

/// A topic id as stored in the coordinator (Kafka's URL-safe base64 of 16 bytes) as a
/// UUID; nil when it does not parse.
pub fn parse_topic_id(text: &str) -> Uuid {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
        Ok(16) => Uuid::from_bytes(bytes),
        _ => Uuid::nil(),
    }
}

/// The whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: String,
    pub controller: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Brokers whose registration went away, with when we noticed (see [`DEPARTED_GRACE`]).
    pub departed: BTreeMap<i32, (BrokerRegistration, Instant)>,
    pub topics: BTreeMap<String, TopicView>,
    /// Topics marked for deletion.
    pub deleting: BTreeSet<String>,
    /// A pending preferred-leader election: the partitions named (empty: all).
    pub preferred_election: Option<BTreeSet<(String, i32)>>,
    /// Brokers in a controlled shutdown.
    pub shutting_down: BTreeSet<i32>,
    /// Dynamic broker configs by entity (a broker id, or `<default>`).
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// False until the first full load: an empty view must not be taken as "no topics".
    pub loaded: bool,
}

/// Reads a znode's data; `None` if it does not exist.
pub async fn read(client: &Client, path: &str) -> Result<Option<(Bytes, i32)>, CoordError> {
    match client.get_data(path, false).await {
        Ok((data, stat)) => Ok(Some((data, stat.version))),
        Err(CoordError::Zk(ErrorCode::NoNode)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Children of a znode; empty if it does not exist.
pub async fn children(client: &Client, path: &str) -> Result<Vec<String>, CoordError> {
    match client.get_children(path, false).await {
        Ok(c) => Ok(c),
        Err(CoordError::Zk(ErrorCode::NoNode)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, data: &[u8]) -> Option<T> {
    match serde_json::from_slice(data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path, error = %e, "ignoring a znode whose JSON does not parse");
            None
        }
    }
}

impl ClusterView {
    /// Reads everything.
    pub async fn load(client: &Client) -> Result<ClusterView, CoordError> {
        let mut v = ClusterView::default();
        v.reload(client, cluster::CLUSTER_ID).await?;
        v.reload(client, cluster::CONTROLLER).await?;
        for id in children(client, cluster::BROKER_IDS).await? {
            v.reload(client, &format!("{}/{id}", cluster::BROKER_IDS))
                .await?;
        }
        for t in children(client, cluster::TOPICS).await? {
            v.reload_topic(client, &t).await?;
        }
        for t in children(client, cluster::DELETE_TOPICS).await? {
            v.deleting.insert(t);
        }
        v.reload(client, cluster::PREFERRED_REPLICA_ELECTION)
            .await?;
        for entity in children(client, cluster::BROKER_CONFIGS).await? {
            v.reload(client, &cluster::broker_config_path(&entity))
                .await?;
        }
        for id in children(client, cluster::CONTROLLED_SHUTDOWN).await? {
            if let Ok(id) = id.parse::<i32>() {
                v.shutting_down.insert(id);
            }
        }
        v.loaded = true;
        Ok(v)
    }

    async fn reload_topic(&mut self, client: &Client, topic: &str) -> Result<(), CoordError> {
        self.reload(client, &cluster::topic_path(topic)).await?;
        if self.topics.contains_key(topic) {
            self.reload(client, &cluster::topic_config_path(topic))
                .await?;
            for p in children(client, &cluster::partitions_path(topic)).await? {
                if let Ok(p) = p.parse::<i32>() {
                    self.reload(client, &cluster::partition_state_path(topic, p))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Re-reads the znode at `path` (one named by a watch event) into the view.
    pub async fn reload(&mut self, client: &Client, path: &str) -> Result<(), CoordError> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["cluster", "id"] => {
                if let Some((d, _)) = read(client, path).await? {
                    if let Some(c) = parse::<ClusterId>(path, &d) {
                        self.cluster_id = c.id;
                    }
                }
            }
            ["controller"] => {
                self.controller = match read(client, path).await? {
                    Some((d, _)) => parse::<ControllerInfo>(path, &d).map(|c| c.brokerid),
                    None => None,
                };
            }
            ["brokers", "ids", id] => {
                let Ok(id) = id.parse::<i32>() else {
                    return Ok(());
                };
                let registration = read(client, path)
                    .await?
                    .and_then(|(d, _)| parse::<BrokerRegistration>(path, &d));
                match registration {
                    Some(b) => self.broker_registered(id, b),
                    None => self.broker_departed(id, Instant::now()),
                }
            }
            ["brokers", "topics", topic] => match read(client, path).await? {
                Some((d, version)) => {
                    if let Some(a) = parse::<TopicAssignment>(path, &d) {
                        let is_new = !self.topics.contains_key(*topic);
                        let t = self.topics.entry((*topic).to_owned()).or_default();
                        t.set_topic_id(a.topic_id.clone().unwrap_or_default());
                        t.assignment = a.by_partition();
                        t.adding = keyed_by_partition(&a.adding_replicas);
                        t.removing = keyed_by_partition(&a.removing_replicas);
                        t.znode_version = version;
                        if is_new {
                            // A topic seen for the first time: its states and config may
                            // already exist (we joined late, or events raced).
                            Box::pin(self.reload_topic(client, topic)).await?;
                        }
                    }
                }
                None => {
                    self.topics.remove(*topic);
                }
            },
            ["brokers", "topics", topic, "partitions", p, "state"] => {
                let Ok(p) = p.parse::<i32>() else {
                    return Ok(());
                };
                let state = read(client, path).await?;
                if let Some(t) = self.topics.get_mut(*topic) {
                    match state.and_then(|(d, v)| parse::<PartitionState>(path, &d).map(|s| (s, v)))
                    {
                        Some(s) => {
                            t.states.insert(p, s);
                        }
                        None => {
                            t.states.remove(&p);
                        }
                    }
                }
            }
            ["config", "topics", topic] => {
                let config = read(client, path).await?;
                if let Some(t) = self.topics.get_mut(*topic) {
                    t.config = config
                        .and_then(|(d, _)| parse::<TopicConfig>(path, &d))
                        .map(|c| c.config)
                        .unwrap_or_default();
                }
            }
            ["config", "brokers", entity] => {
                match read(client, path)
                    .await?
                    .and_then(|(d, _)| parse::<TopicConfig>(path, &d))
                {
                    Some(c) => {
                        self.broker_configs.insert((*entity).to_owned(), c.config);
                    }
                    None => {
                        self.broker_configs.remove(*entity);
                    }
                }
            }
            ["admin", "preferred_replica_election"] => {
                self.preferred_election = read(client, path).await?.map(|(d, _)| {
                    serde_json::from_slice::<PreferredReplicaElection>(&d)
                        .map(|e| {
                            e.partitions
                                .into_iter()
                                .map(|p| (p.topic, p.partition))
                                .collect()
                        })
                        .unwrap_or_default()
                });
            }
            ["admin", "controlled_shutdown", id] => {
                if let Ok(id) = id.parse::<i32>() {
                    if read(client, path).await?.is_some() {
                        self.shutting_down.insert(id);
                    } else {
                        self.shutting_down.remove(&id);
                    }
                }
            }
            ["admin", "delete_topics", topic] => {
                if read(client, path).await?.is_some() {
                    self.deleting.insert((*topic).to_owned());
                } else {
                    self.deleting.remove(*topic);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn broker_registered(&mut self, id: i32, b: BrokerRegistration) {
        self.departed.remove(&id);
        self.brokers.insert(id, b);
    }

    fn broker_departed(&mut self, id: i32, now: Instant) {
        self.departed
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DEPARTED_GRACE);
        if let Some(b) = self.brokers.remove(&id) {
            self.departed.insert(id, (b, now));
        }
    }

    /// The brokers a Metadata answer lists at `now`: the live ones, and those that left
    /// less than [`DEPARTED_GRACE`] ago, sorted by id.
    pub fn listed_brokers(&self, now: Instant) -> Vec<(i32, &BrokerRegistration)> {
        let mut listed: BTreeMap<i32, &BrokerRegistration> =
            self.brokers.iter().map(|(id, b)| (*id, b)).collect();
        for (id, (b, at)) in &self.departed {
            if now.saturating_duration_since(*at) < DEPARTED_GRACE {
                listed.entry(*id).or_insert(b);
            }
        }
        listed.into_iter().collect()
    }

    /// Live brokers, sorted by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The leader of a partition, if it has one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let (s, _) = self.topics.get(topic)?.states.get(&partition)?;
        (s.leader >= 0).then_some(s.leader)
    }

    /// The name of the topic with id `id` (Fetch v13+ and Metadata v12+ address topics
    /// by id).
    pub fn topic_name(&self, id: Uuid) -> Option<&str> {
        if id.is_nil() {
            return None;
        }
        self.topics
            .iter()
            .find(|(_, t)| t.uuid() == id)
            .map(|(name, _)| name.as_str())
    }

    /// Whether every partition of `topic` has a live leader.
    pub fn topic_ready(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|t| {
            !t.assignment.is_empty() && self.partitions_led(topic, t.assignment.keys().copied())
        })
    }

    /// Whether each of `partitions` of `topic` is assigned and has a live leader.
    pub fn partitions_led(&self, topic: &str, mut partitions: impl Iterator<Item = i32>) -> bool {
        self.topics.get(topic).is_some_and(|t| {
            partitions.all(|p| {
                t.assignment.contains_key(&p)
                    && t.states
                        .get(&p)
                        .is_some_and(|(s, _)| s.leader >= 0 && self.brokers.contains_key(&s.leader))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(v: &ClusterView, now: Instant) -> Vec<(i32, u16)> {
        v.listed_brokers(now)
            .into_iter()
            .map(|(id, b)| (id, b.port as u16))
            .collect()
    }

    #[test]
    fn topic_ids_round_trip_between_coordinator_text_and_uuid() {
        let bytes = crate::cluster::random_uuid();
        let text = crate::cluster::uuid_text(&bytes);
        assert_eq!(parse_topic_id(&text), Uuid::from_bytes(bytes));
        assert!(parse_topic_id("").is_nil());
        assert!(parse_topic_id("not base64!").is_nil());
        assert!(parse_topic_id("AAAA").is_nil());
        let mut v = ClusterView::default();
        let mut orders = TopicView::default();
        orders.set_topic_id(text);
        v.topics.insert("orders".into(), orders);
        v.topics.insert("legacy".into(), TopicView::default());
        assert_eq!(v.topic_name(Uuid::from_bytes(bytes)), Some("orders"));
        assert_eq!(v.topic_name(Uuid::nil()), None);
        assert_eq!(v.topic_name(Uuid::from_bytes([7; 16])), None);
    }

    #[test]
    fn a_departed_broker_is_listed_for_the_grace_period_only() {
        let t0 = Instant::now();
        let mut v = ClusterView::default();
        v.broker_registered(1, BrokerRegistration::new("h", 9001, None, 0));
        v.broker_registered(2, BrokerRegistration::new("h", 9002, None, 0));
        v.broker_departed(2, t0);
        assert_eq!(v.live_brokers(), vec![1], "no longer live at once");
        assert_eq!(listed(&v, t0), vec![(1, 9001), (2, 9002)]);
        assert_eq!(
            listed(&v, t0 + DEPARTED_GRACE - Duration::from_millis(1)),
            vec![(1, 9001), (2, 9002)]
        );
        assert_eq!(listed(&v, t0 + DEPARTED_GRACE), vec![(1, 9001)]);
    }

    #[test]
    fn a_returning_broker_is_listed_with_its_new_registration() {
        let t0 = Instant::now();
        let mut v = ClusterView::default();
        v.broker_registered(1, BrokerRegistration::new("h", 9001, None, 0));
        v.broker_departed(1, t0);
        v.broker_registered(1, BrokerRegistration::new("h", 9101, None, 0));
        assert!(v.departed.is_empty());
        assert_eq!(listed(&v, t0), vec![(1, 9101)]);
        // Departing again starts a new grace period.
        let t1 = t0 + Duration::from_secs(60);
        v.broker_departed(1, t1);
        assert_eq!(listed(&v, t1), vec![(1, 9101)]);
    }

    #[test]
    fn old_departures_are_forgotten_and_unknown_ids_ignored() {
        let t0 = Instant::now();
        let mut v = ClusterView::default();
        v.broker_registered(1, BrokerRegistration::new("h", 9001, None, 0));
        v.broker_departed(1, t0);
        v.broker_departed(7, t0 + DEPARTED_GRACE);
        assert!(v.departed.is_empty(), "{:?}", v.departed);
    }
}
