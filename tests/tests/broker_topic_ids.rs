//! Topic ids on the wire (KIP-516) against the real broker: CreateTopics v7 returns the new
//! topic's id; Metadata v10+ lists it, and v12 finds a topic by id alone; Fetch v13+ reads
//! by id; an id no topic has gets UNKNOWN_TOPIC_ID everywhere; DeleteTopics v6 deletes by
//! id. Also the newest group and produce versions a Kafka 3.7+ broker serves, which only
//! the Java client sends among the clients we test: FindCoordinator v4 and OffsetFetch v8
//! (batched), JoinGroup v9, ListGroups v5 (type filter) and Produce v11.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fjord_broker::client::records::encode_batch;
use fjord_broker::client::{ClientOptions, Compression, Connection, ProduceRecord};
use fjord_tests::{Process, Spec};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, FindCoordinatorRequest,
    GroupId, JoinGroupRequest, ListGroupsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;
use uuid::Uuid;

const UNKNOWN_TOPIC_ID: i16 = 100;
const MEMBER_ID_REQUIRED: i16 = 79;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const INVALID_REQUEST: i16 = 42;
const WAIT: Duration = Duration::from_secs(30);

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn start() -> (Process, Process) {
    let coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let b = Spec::broker(1, coord.addr()).start().unwrap();
    (coord, b)
}

async fn connect(b: &Process) -> Connection {
    let addr = b.connect_string();
    Connection::connect(&addr, &ClientOptions::new(&addr))
        .await
        .unwrap()
}

fn one_record_batch(value: &'static [u8]) -> bytes::Bytes {
    let record = ProduceRecord {
        key: None,
        value: Some(bytes::Bytes::from_static(value)),
        headers: Vec::new(),
        timestamp: Some(0),
    };
    encode_batch(&[record], Compression::None, 0).unwrap()
}

/// One record to partition 0 of `topic` with acks=all, as Produce `version`: the
/// partition's (error code, base offset).
async fn produce_one(
    conn: &mut Connection,
    topic: &str,
    value: &'static [u8],
    version: i16,
) -> (i16, i64) {
    let produced = conn
        .send(
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(one_record_batch(value)))])]),
            version,
            WAIT,
        )
        .await
        .unwrap();
    let p = &produced.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_by_id(id: Uuid) -> FetchRequest {
    FetchRequest::default()
        .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(-1)))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_addressed_by_id_in_every_api_that_allows_it() {
    let (_coord, b) = start();
    let mut conn = connect(&b).await;

    // CreateTopics v7 answers with the new topic's id.
    let created = conn
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(20_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name("by-id"))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
            7,
            WAIT,
        )
        .await
        .unwrap();
    let result = &created.topics[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    let id = result.topic_id;
    assert!(!id.is_nil(), "CreateTopics v7 returned no topic id");

    // Metadata v10 by name lists the same id; v12 finds the topic by id alone.
    let by_name = conn
        .send(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("by-id")))
            ])),
            10,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(by_name.topics[0].topic_id, id);
    let unknown = Uuid::from_bytes([9; 16]);
    let by_id = conn
        .send(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(id),
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(unknown),
            ])),
            12,
            WAIT,
        )
        .await
        .unwrap();
    let found = by_id.topics.iter().find(|t| t.topic_id == id).unwrap();
    assert_eq!(found.error_code, 0);
    assert_eq!(found.name.as_ref().map(|n| n.0.as_str()), Some("by-id"));
    assert_eq!(found.partitions.len(), 1);
    let missing = by_id.topics.iter().find(|t| t.topic_id == unknown).unwrap();
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_ID);

    // Fetch v13+ reads by id what a produce wrote by name.
    assert_eq!(produce_one(&mut conn, "by-id", b"hello", 9).await, (0, 0));
    for version in [13, 15, 17] {
        let fetched = conn.send(&fetch_by_id(id), version, WAIT).await.unwrap();
        let topic = &fetched.responses[0];
        assert_eq!(topic.topic_id, id, "v{version}");
        let p = &topic.partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.high_watermark, 1, "v{version}");
        let records = p.records.clone().unwrap_or_default();
        let batches = fjord_broker::client::records::decode_batches(records, 0).unwrap();
        let values: Vec<_> = batches.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(
            values,
            vec![Some(bytes::Bytes::from_static(b"hello"))],
            "v{version}"
        );
        let missing = conn
            .send(&fetch_by_id(unknown), version, WAIT)
            .await
            .unwrap();
        assert_eq!(
            missing.responses[0].partitions[0].error_code, UNKNOWN_TOPIC_ID,
            "v{version}"
        );
    }

    // DeleteTopics v6 by id: an unknown id is refused, a known one deleted.
    let deleted = conn
        .send(
            &DeleteTopicsRequest::default()
                .with_timeout_ms(20_000)
                .with_topics(vec![
                    DeleteTopicState::default().with_topic_id(unknown),
                    // A name and an id together are refused, as in Kafka.
                    DeleteTopicState::default()
                        .with_name(Some(name("by-id")))
                        .with_topic_id(id),
                    DeleteTopicState::default().with_topic_id(id),
                ]),
            6,
            WAIT,
        )
        .await
        .unwrap();
    let refused = deleted
        .responses
        .iter()
        .find(|r| r.topic_id == unknown)
        .unwrap();
    assert_eq!(refused.error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(refused.name, None);
    assert_eq!(deleted.responses[1].error_code, INVALID_REQUEST);
    let done = &deleted.responses[2];
    assert_eq!(done.topic_id, id);
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    assert_eq!(done.name.as_ref().map(|n| n.0.as_str()), Some("by-id"));
    let after = conn
        .send(
            &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id)])),
            12,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(after.topics[0].error_code, UNKNOWN_TOPIC_ID);
}

/// FindCoordinator v4 (several keys, one answer each) until every group has this broker
/// as its coordinator (the first request creates __consumer_offsets), then OffsetFetch v8
/// for all of them at once until none is still loading (COORDINATOR_LOAD_IN_PROGRESS, which
/// clients retry): its answer.
async fn wait_for_coordinators(
    conn: &mut Connection,
    groups: &[&'static str],
    port: u16,
) -> OffsetFetchResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = conn
            .send(
                &FindCoordinatorRequest::default().with_coordinator_keys(
                    groups
                        .iter()
                        .map(|g| StrBytes::from_static_str(g))
                        .collect(),
                ),
                4,
                WAIT,
            )
            .await
            .unwrap();
        let keys: Vec<_> = resp
            .coordinators
            .iter()
            .map(|c| c.key.to_string())
            .collect();
        assert_eq!(keys, groups);
        if resp
            .coordinators
            .iter()
            .all(|c| c.error_code == 0 && c.node_id.0 == 1 && c.port == i32::from(port))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no coordinator: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let resp = conn
            .send(
                &OffsetFetchRequest::default().with_groups(
                    groups
                        .iter()
                        .map(|g| {
                            OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(StrBytes::from_static_str(g)))
                                .with_topics(None)
                        })
                        .collect(),
                ),
                8,
                WAIT,
            )
            .await
            .unwrap();
        if resp
            .groups
            .iter()
            .all(|g| g.error_code != COORDINATOR_LOAD_IN_PROGRESS)
        {
            return resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still loading: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_coordinator_lookup_and_offset_fetch() {
    let (_coord, b) = start();
    let mut conn = connect(&b).await;
    let groups = ["alpha", "beta"];
    let loaded = wait_for_coordinators(&mut conn, &groups, b.addr().port()).await;
    assert!(loaded
        .groups
        .iter()
        .all(|g| g.error_code == 0 && g.topics.is_empty()));

    // OffsetCommit v9, a simple commit (no generation) for alpha only.
    assert_eq!(produce_one(&mut conn, "committed", b"x", 9).await, (0, 0));
    let committed = conn
        .send(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("alpha")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(name("committed"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m")))])]),
            9,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    // OffsetFetch v8: both groups in one request, each answered on its own.
    let resp = wait_for_coordinators(&mut conn, &groups, b.addr().port()).await;
    assert_eq!(resp.groups.len(), 2);
    let (alpha, beta) = (&resp.groups[0], &resp.groups[1]);
    assert_eq!(
        (alpha.group_id.as_str(), beta.group_id.as_str()),
        ("alpha", "beta")
    );
    assert_eq!((alpha.error_code, beta.error_code), (0, 0));
    assert!(beta.topics.is_empty());
    assert_eq!(alpha.topics.len(), 1);
    assert_eq!(alpha.topics[0].name.0.as_str(), "committed");
    let p = &alpha.topics[0].partitions[0];
    assert_eq!((p.partition_index, p.committed_offset), (0, 1));
    assert_eq!(p.metadata.as_ref().map(|m| m.as_str()), Some("m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_group_and_produce_versions() {
    let coord = Spec::coordinator()
        .args(["--tick-ms", "200"])
        .start()
        .unwrap();
    let b = Spec::broker(1, coord.addr())
        .args(["--group-initial-rebalance-delay-ms", "0"])
        .start()
        .unwrap();
    let mut conn = connect(&b).await;

    // Produce v11 (Kafka 3.8) is v9's request and answer.
    assert_eq!(produce_one(&mut conn, "v11", b"eleven", 11).await, (0, 0));

    // JoinGroup v9: MEMBER_ID_REQUIRED first, then a generation with this member leading.
    let _ = wait_for_coordinators(&mut conn, &["nine"], b.addr().port()).await;
    let join = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("nine")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_reason(Some(StrBytes::from_static_str("test")))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\x01"))])
    };
    let first = conn
        .send(&join(StrBytes::default()), 9, WAIT)
        .await
        .unwrap();
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    let joined = conn
        .send(&join(first.member_id.clone()), 9, WAIT)
        .await
        .unwrap();
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, first.member_id);
    assert!(!joined.skip_assignment);
    assert_eq!(joined.members.len(), 1);

    // ListGroups v5 filters by type: every group here is a classic one.
    let list = |types: &[&'static str]| {
        ListGroupsRequest::default()
            .with_types_filter(types.iter().map(|t| StrBytes::from_static_str(t)).collect())
    };
    for (types, expected) in [(&[][..], 1), (&["Classic"][..], 1), (&["consumer"][..], 0)] {
        let listed = conn.send(&list(types), 5, WAIT).await.unwrap();
        assert_eq!(listed.error_code, 0);
        assert_eq!(listed.groups.len(), expected, "types {types:?}");
        for g in &listed.groups {
            assert_eq!(g.group_id.as_str(), "nine");
            assert_eq!(g.group_type.as_str(), "classic");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_named_twice_in_one_create_is_refused() {
    let (_coord, b) = start();
    let mut conn = connect(&b).await;
    let topic = |n: &str| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let created = conn
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(20_000)
                .with_topics(vec![topic("twice"), topic("once"), topic("twice")]),
            7,
            WAIT,
        )
        .await
        .unwrap();
    let codes: Vec<(String, i16)> = created
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("twice".to_owned(), INVALID_REQUEST),
            ("once".to_owned(), 0),
            ("twice".to_owned(), INVALID_REQUEST),
        ]
    );
    let listed = conn
        .send(
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("twice")))
                ]))
                .with_allow_auto_topic_creation(false),
            12,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(listed.topics[0].error_code, 3, "twice must not exist"); // UNKNOWN_TOPIC_OR_PARTITION
}
