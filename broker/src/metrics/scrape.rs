//! One scrape of a broker: the hot-path counters, and gauges computed now from the
//! partitions this broker hosts, the cluster view and the groups it coordinates.
//!
//! Names are those Kafka's JMX exporter (its `kafka-2_0_0.yml` rules) and kafka_exporter
//! emit, so dashboards and alert rules written for Apache Kafka work unchanged. Fjord's own
//! histograms are under `fjord_*`, in seconds.

use super::lag::GroupLag;
use crate::broker::Broker;
use crate::handler::SUPPORTED;
use crate::stats::errors::error_name;
use crate::stats::TOPIC_COUNTERS;
use fjord_shared::metrics::{Collector, Families};
use prometheus_client::encoding::DescriptorEncoder;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What one scrape shows.
pub struct Scrape {
    pub broker: Arc<Broker>,
    pub lag: GroupLag,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish()
    }
}

/// A hosted partition as the scrape sees it.
struct Hosted {
    topic: String,
    partition: i32,
    leader: bool,
    replicas: usize,
    isr: usize,
    min_insync: usize,
    high_watermark: i64,
    log: Option<(i64, i64, u64, usize)>,
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut f = Families::new(encoder);
        let b = &self.broker;
        let view = b.cluster.view();
        let mut hosted: Vec<Hosted> = b
            .replicas
            .all()
            .iter()
            .map(|p| {
                let replicas = view
                    .topics
                    .get(&p.tp.topic)
                    .and_then(|t| t.assignment.get(&p.tp.partition))
                    .map_or(0, Vec::len);
                let isr = p.isr_len();
                Hosted {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    leader: isr.is_some(),
                    replicas,
                    isr: isr.unwrap_or(0),
                    min_insync: p.min_insync(),
                    high_watermark: p.high_watermark(),
                    log: p.log_stats(),
                }
            })
            .collect();
        hosted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let led = || hosted.iter().filter(|h| h.leader);
        let under_replicated = led().filter(|h| h.isr < h.replicas).count();
        let under_min_isr = led().filter(|h| h.isr < h.min_insync).count();
        let at_min_isr = led().filter(|h| h.isr == h.min_insync).count();
        let controller = view.controller == Some(b.id);

        f.gauge(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions led here whose ISR is smaller than their replica set",
            under_replicated as i64,
        )?;
        f.gauge(
            "kafka_server_replicamanager_underminisrpartitioncount",
            "Partitions led here whose ISR is smaller than min.insync.replicas",
            under_min_isr as i64,
        )?;
        f.gauge(
            "kafka_server_replicamanager_atminisrpartitioncount",
            "Partitions led here whose ISR is exactly min.insync.replicas",
            at_min_isr as i64,
        )?;
        f.gauge(
            "kafka_server_replicamanager_partitioncount",
            "Partitions hosted here (led or followed)",
            hosted.len() as i64,
        )?;
        f.gauge(
            "kafka_server_replicamanager_leadercount",
            "Partitions led here",
            led().count() as i64,
        )?;
        f.counter(
            "kafka_server_replicamanager_isrshrinks",
            "ISR shrinks of partitions led here (by the leader or the controller)",
            b.replicas.isr_changes.shrinks.load(Ordering::Relaxed),
        )?;
        f.counter(
            "kafka_server_replicamanager_isrexpands",
            "ISR expansions of partitions led here",
            b.replicas.isr_changes.expands.load(Ordering::Relaxed),
        )?;

        // The controller's view of the whole cluster (0 on the other brokers, as in Kafka).
        let (mut offline, mut partitions) = (0i64, 0i64);
        if controller {
            for t in view.topics.values() {
                partitions += t.assignment.len() as i64;
                offline += t
                    .assignment
                    .keys()
                    .filter(|p| {
                        t.states.get(p).is_none_or(|(s, _)| {
                            s.leader < 0 || !view.brokers.contains_key(&s.leader)
                        })
                    })
                    .count() as i64;
            }
        }
        f.gauge(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller, 0 elsewhere (sums to 1 across a healthy cluster)",
            i64::from(controller),
        )?;
        f.gauge(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a live leader (reported by the controller)",
            offline,
        )?;
        f.gauge(
            "kafka_controller_kafkacontroller_globaltopiccount",
            "Topics in the cluster (reported by the controller)",
            if controller {
                view.topics.len() as i64
            } else {
                0
            },
        )?;
        f.gauge(
            "kafka_controller_kafkacontroller_globalpartitioncount",
            "Partitions in the cluster (reported by the controller)",
            partitions,
        )?;

        // BrokerTopicMetrics: the all-topics series has no topic label, as in Kafka.
        let topics = b.stats.topics();
        let all = b.stats.all.values();
        for (i, (name, help)) in TOPIC_COUNTERS.iter().enumerate() {
            let labelled = topics
                .iter()
                .filter(|(t, _)| view.topics.contains_key(t))
                .map(|(t, v)| (vec![("topic", t.as_str())], v[i]));
            f.counters(
                name,
                help,
                std::iter::once((vec![], all[i])).chain(labelled),
            )?;
        }

        // Per partition (kafka.log:type=Log and kafka.cluster:type=Partition).
        let per_log = |pick: fn(&(i64, i64, u64, usize)) -> i64| {
            hosted.iter().filter_map(move |h| {
                h.log.as_ref().map(|l| {
                    (
                        [
                            ("topic", h.topic.clone()),
                            ("partition", h.partition.to_string()),
                        ],
                        pick(l),
                    )
                })
            })
        };
        f.gauges(
            "kafka_log_log_size",
            "Bytes of the partition's log on disk",
            per_log(|l| l.2 as i64),
        )?;
        f.gauges(
            "kafka_log_log_logstartoffset",
            "The partition's log start offset",
            per_log(|l| l.0),
        )?;
        f.gauges(
            "kafka_log_log_logendoffset",
            "The partition's log end offset",
            per_log(|l| l.1),
        )?;
        f.gauges(
            "kafka_log_log_numlogsegments",
            "Segments of the partition's log",
            per_log(|l| l.3 as i64),
        )?;
        let per_led = |pick: fn(&Hosted) -> i64| {
            led().map(move |h| {
                (
                    [
                        ("topic", h.topic.clone()),
                        ("partition", h.partition.to_string()),
                    ],
                    pick(h),
                )
            })
        };
        f.gauges(
            "kafka_cluster_partition_underreplicated",
            "1 if the partition (led here) has fewer in-sync replicas than replicas",
            per_led(|h| i64::from(h.isr < h.replicas)),
        )?;
        f.gauges(
            "kafka_cluster_partition_insyncreplicascount",
            "In-sync replicas of the partition (led here)",
            per_led(|h| h.isr as i64),
        )?;
        f.gauges(
            "kafka_cluster_partition_replicascount",
            "Replicas of the partition (led here)",
            per_led(|h| h.replicas as i64),
        )?;
        // kafka_exporter's offsets, for the partitions led here (each once in the cluster).
        f.gauges(
            "kafka_topic_partition_current_offset",
            "Latest offset (high watermark) of the partition",
            per_led(|h| h.high_watermark),
        )?;
        f.gauges(
            "kafka_topic_partition_oldest_offset",
            "Oldest offset (log start) of the partition",
            per_led(|h| h.log.map_or(0, |l| l.0)),
        )?;

        self.groups(&mut f)?;
        self.requests(&mut f)?;
        f.histogram(
            "fjord_produce_acks_all_wait_seconds",
            "acks=all produce requests: from the append until the ISR has the records",
            &b.stats.acks_all_wait.snapshot(),
        )?;
        f.histogram(
            "fjord_log_flush_seconds",
            "Fsyncs of partition logs",
            &crate::stats::LOG_FLUSH.snapshot(),
        )?;
        fjord_shared::metrics::process::write(&mut f)
    }
}

impl Scrape {
    /// kafka_exporter's consumer group series, for the groups coordinated here.
    fn groups(&self, f: &mut Families<'_>) -> std::fmt::Result {
        let rows = self.lag.rows();
        let labels = |g: &str, t: &str, p: i32| {
            [
                ("consumergroup", g.to_owned()),
                ("topic", t.to_owned()),
                ("partition", p.to_string()),
            ]
        };
        f.gauges(
            "kafka_consumergroup_current_offset",
            "Committed offset of the group in the partition",
            rows.iter().map(|(g, t, p, c, _)| (labels(g, t, *p), *c)),
        )?;
        f.gauges(
            "kafka_consumergroup_lag",
            "Latest offset of the partition minus the group's committed offset",
            rows.iter().map(|(g, t, p, _, l)| (labels(g, t, *p), *l)),
        )?;
        let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (g, t, _, _, l) in &rows {
            *sums.entry((g, t)).or_default() += l;
        }
        f.gauges(
            "kafka_consumergroup_lag_sum",
            "The group's lag summed over the topic's partitions",
            sums.iter().map(|((g, t), l)| {
                (
                    [("consumergroup", g.to_string()), ("topic", t.to_string())],
                    *l,
                )
            }),
        )?;
        f.gauges(
            "kafka_consumergroup_members",
            "Members of the group",
            self.lag
                .groups
                .iter()
                .map(|g| ([("consumergroup", g.group.clone())], g.members as i64)),
        )
    }

    /// Kafka's RequestMetrics (requests and errors per API) and Fjord's durations.
    fn requests(&self, f: &mut Families<'_>) -> std::fmt::Result {
        let stats = &self.broker.stats.requests;
        let names: Vec<String> = SUPPORTED.iter().map(|(k, _, _)| format!("{k:?}")).collect();
        let mut requests = Vec::new();
        let mut errors = Vec::new();
        let mut durations = Vec::new();
        for (slot, name) in names.iter().enumerate() {
            for (version, n) in stats.requests_of(slot) {
                requests.push((
                    [("request", name.clone()), ("version", version.to_string())],
                    n,
                ));
            }
            for (code, n) in stats.errors_of(slot) {
                errors.push(([("request", name.clone()), ("error", error_name(code))], n));
            }
            if let Some(h) = stats.duration_of(slot).map(|h| h.snapshot()) {
                if h.count > 0 {
                    durations.push(([("request", name.clone())], h));
                }
            }
        }
        f.counters(
            "kafka_network_requestmetrics_requests",
            "Requests served, per API and version (RequestsPerSec)",
            requests,
        )?;
        f.counters(
            "kafka_network_requestmetrics_errors",
            "Error codes in responses, per API (ErrorsPerSec; NONE counts successes)",
            errors,
        )?;
        f.histograms(
            "fjord_request_duration_seconds",
            "Time from a request's receipt to its response being ready, per API",
            durations,
        )
    }
}
