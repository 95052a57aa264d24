//! Client tests against an in-process fake broker: a few dozen lines that decode requests
//! and encode responses with the same codec crate, keep one in-memory log per partition,
//! and can be told to misbehave (answer NOT_LEADER_OR_FOLLOWER once, refuse a version,
//! stay silent, send a huge frame). They check the client's wiring: framing, the
//! handshake, routing, retries and record round trips, without a real broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[derive(Default)]
struct State {
    port: u16,
    /// Highest ApiVersions version answered normally.
    api_versions_max: i16,
    topics: BTreeMap<String, i32>,
    /// (topic, partition) → batches with their base offsets, and the next offset.
    logs: BTreeMap<(String, i32), (Vec<Bytes>, i64)>,
    /// Answer the next produce with this error code.
    fail_next_produce: Option<i16>,
    /// Requests seen, by API.
    seen: Vec<ApiKey>,
    /// Never answer anything but ApiVersions.
    silent: bool,
    /// Answer Metadata with a frame claiming this many bytes.
    huge_metadata_frame: Option<i32>,
    /// Topic config overrides.
    configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Wait this long before answering anything but ApiVersions.
    delay: Duration,
    /// Connections accepted.
    connections: usize,
}

type Shared = Arc<Mutex<State>>;

struct Fake {
    addr: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(State {
        port,
        api_versions_max: 4,
        topics: [("t".to_owned(), 2)].into(),
        ..State::default()
    }));
    let st = state.clone();
    let task = tokio::spawn(async move {
        // Connection tasks end with the runtime at the end of each test.
        while let Ok((sock, _)) = listener.accept().await {
            st.lock().unwrap().connections += 1;
            tokio::spawn(serve(sock, st.clone()));
        }
    });
    Fake {
        addr: format!("127.0.0.1:{port}"),
        state,
        task,
    }
}

fn opts(addr: &str) -> ClientOptions {
    let mut o = ClientOptions::new(addr);
    o.connect_timeout = Duration::from_secs(2);
    o.request_timeout = Duration::from_secs(2);
    o.backoff = Duration::from_millis(10);
    o
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

async fn serve(mut sock: TcpStream, state: Shared) {
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        if sock.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(buf);
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        let api = ApiKey::try_from(header.request_api_key).unwrap();
        let v = header.request_api_version;
        state.lock().unwrap().seen.push(api);
        let (silent, huge, delay) = {
            let st = state.lock().unwrap();
            (st.silent, st.huge_metadata_frame, st.delay)
        };
        if api != ApiKey::ApiVersions && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if silent && api != ApiKey::ApiVersions {
            continue;
        }
        if let (ApiKey::Metadata, Some(n)) = (api, huge) {
            sock.write_all(&n.to_be_bytes()).await.unwrap();
            continue;
        }
        let mut out = BytesMut::new();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, api.response_header_version(v))
            .unwrap();
        let answered = match api {
            ApiKey::ApiVersions => api_versions(&state, v, &mut out),
            ApiKey::Metadata => metadata(&state, MetadataRequest::decode(&mut buf, v).unwrap())
                .encode(&mut out, v)
                .is_ok(),
            ApiKey::Produce => {
                match produce(&state, ProduceRequest::decode(&mut buf, v).unwrap()) {
                    Some(r) => r.encode(&mut out, v).is_ok(),
                    None => false,
                }
            }
            ApiKey::Fetch => fetch(&state, FetchRequest::decode(&mut buf, v).unwrap())
                .encode(&mut out, v)
                .is_ok(),
            ApiKey::ListOffsets => {
                list_offsets(&state, ListOffsetsRequest::decode(&mut buf, v).unwrap())
                    .encode(&mut out, v)
                    .is_ok()
            }
            ApiKey::CreateTopics => {
                create_topics(&state, CreateTopicsRequest::decode(&mut buf, v).unwrap())
                    .encode(&mut out, v)
                    .is_ok()
            }
            ApiKey::DescribeConfigs => {
                describe_configs(&state, DescribeConfigsRequest::decode(&mut buf, v).unwrap())
                    .encode(&mut out, v)
                    .is_ok()
            }
            ApiKey::AlterConfigs => {
                alter_configs(&state, AlterConfigsRequest::decode(&mut buf, v).unwrap())
                    .encode(&mut out, v)
                    .is_ok()
            }
            ApiKey::DescribeCluster => {
                let port = state.lock().unwrap().port;
                DescribeClusterResponse::default()
                    .with_cluster_id(s("fake-cluster"))
                    .with_controller_id(BrokerId(1))
                    .with_brokers(vec![DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(1))
                        .with_host(s("127.0.0.1"))
                        .with_port(i32::from(port))])
                    .encode(&mut out, v)
                    .is_ok()
            }
            other => panic!("fake broker got {other:?}"),
        };
        if answered {
            let n = (out.len() - 4) as i32;
            out[..4].copy_from_slice(&n.to_be_bytes());
            sock.write_all(&out).await.unwrap();
        }
    }
}

fn api_versions(state: &Shared, v: i16, out: &mut BytesMut) -> bool {
    let max = state.lock().unwrap().api_versions_max;
    let ranges = [
        (ApiKey::ApiVersions, 0, max),
        (ApiKey::Metadata, 0, 9),
        (ApiKey::Produce, 3, 9),
        (ApiKey::Fetch, 4, 12),
        (ApiKey::ListOffsets, 1, 7),
        (ApiKey::CreateTopics, 2, 7),
        // No IncrementalAlterConfigs: config changes take the legacy path.
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::DescribeCluster, 0, 1),
    ];
    let keys = ranges
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    let mut resp = ApiVersionsResponse::default().with_api_keys(keys);
    if v > max {
        // As Kafka: error 35 and the list, encoded as v0.
        resp.error_code = 35;
        return resp.encode(out, 0).is_ok();
    }
    resp.encode(out, v).is_ok()
}

fn metadata(state: &Shared, req: MetadataRequest) -> MetadataResponse {
    let st = state.lock().unwrap();
    let names: Vec<String> = match req.topics {
        None => st.topics.keys().cloned().collect(),
        Some(ts) => ts
            .into_iter()
            .filter_map(|t| Some(t.name?.0.as_str().to_owned()))
            .collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| {
            let t = MetadataResponseTopic::default().with_name(Some(TopicName(s(&name))));
            match st.topics.get(&name) {
                None => t.with_error_code(3),
                Some(&n) => t.with_partitions(
                    (0..n)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                                .with_replica_nodes(vec![BrokerId(1)])
                                .with_isr_nodes(vec![BrokerId(1)])
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    MetadataResponse::default()
        .with_cluster_id(Some(s("fake-cluster")))
        .with_controller_id(BrokerId(1))
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(s("127.0.0.1"))
            .with_port(i32::from(st.port))])
        .with_topics(topics)
}

fn produce(state: &Shared, req: ProduceRequest) -> Option<ProduceResponse> {
    let mut st = state.lock().unwrap();
    let mut responses = Vec::new();
    for t in req.topic_data {
        let topic = t.name.0.as_str().to_owned();
        let mut parts = Vec::new();
        for p in t.partition_data {
            let mut r = PartitionProduceResponse::default().with_index(p.index);
            if let Some(code) = st.fail_next_produce.take() {
                parts.push(r.with_error_code(code));
                continue;
            }
            let batch = p.records.unwrap_or_default();
            let count: i32 = RecordBatchDecoder::decode_batch_info(&mut batch.clone())
                .unwrap()
                .iter()
                .map(|b| b.record_count)
                .sum();
            let (batches, next) = st.logs.entry((topic.clone(), p.index)).or_default();
            let mut stored = BytesMut::from(&batch[..]);
            stored[..8].copy_from_slice(&next.to_be_bytes());
            batches.push(stored.freeze());
            r.base_offset = *next;
            *next += i64::from(count);
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(s(&topic)))
                .with_partition_responses(parts),
        );
    }
    (req.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

fn fetch(state: &Shared, req: FetchRequest) -> FetchResponse {
    let st = state.lock().unwrap();
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.topic.0.as_str().to_owned();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let (batches, next) = st
                        .logs
                        .get(&(topic.clone(), p.partition))
                        .cloned()
                        .unwrap_or_default();
                    let mut data = BytesMut::new();
                    for b in batches {
                        let base = i64::from_be_bytes(b[..8].try_into().unwrap());
                        let count = RecordBatchDecoder::decode_batch_info(&mut b.clone()).unwrap()
                            [0]
                        .record_count;
                        if base + i64::from(count) > p.fetch_offset {
                            data.extend_from_slice(&b);
                        }
                    }
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(next)
                        .with_last_stable_offset(next)
                        .with_log_start_offset(0)
                        .with_records(Some(data.freeze()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(TopicName(s(&topic)))
                .with_partitions(parts)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

fn list_offsets(state: &Shared, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let st = state.lock().unwrap();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.as_str().to_owned();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let next = st
                        .logs
                        .get(&(topic.clone(), p.partition_index))
                        .map_or(0, |l| l.1);
                    let offset = match p.timestamp {
                        -2 => 0,
                        -1 => next,
                        _ => -1,
                    };
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_offset(offset)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn create_topics(state: &Shared, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut st = state.lock().unwrap();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_owned();
            let r = CreatableTopicResult::default().with_name(t.name);
            match st.topics.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => r
                    .with_error_code(36)
                    .with_error_message(Some(s(&format!("Topic '{}' already exists.", e.key())))),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(t.num_partitions.max(1));
                    r
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn describe_configs(state: &Shared, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let st = state.lock().unwrap();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let topic = r.resource_name.as_str().to_owned();
            let mut configs: Vec<DescribeConfigsResourceResult> = st
                .configs
                .get(&topic)
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                        .with_config_source(1)
                })
                .collect();
            configs.push(
                DescribeConfigsResourceResult::default()
                    .with_name(s("segment.bytes"))
                    .with_value(Some(s("1073741824")))
                    .with_config_source(5),
            );
            DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn alter_configs(state: &Shared, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut st = state.lock().unwrap();
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let topic = r.resource_name.as_str().to_owned();
            // Legacy AlterConfigs replaces the whole set.
            let set = r
                .configs
                .into_iter()
                .map(|c| {
                    let v = c.value.map(|v| v.as_str().to_owned()).unwrap_or_default();
                    (c.name.as_str().to_owned(), v)
                })
                .collect();
            st.configs.insert(topic, set);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

fn rec(v: &str) -> ProduceRecord {
    ProduceRecord {
        value: Some(Bytes::copy_from_slice(v.as_bytes())),
        ..ProduceRecord::default()
    }
}

#[tokio::test]
async fn bootstrap_negotiates_and_loads_brokers() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let md = client.cached_metadata();
    assert_eq!(md.cluster_id.as_deref(), Some("fake-cluster"));
    assert_eq!(md.controller_id, Some(1));
    assert_eq!(md.broker_addr(1), Some(f.addr.clone()));
    let all = client.fetch_metadata(None, false).await.unwrap();
    assert_eq!(all.topic("t").unwrap().partitions.len(), 2);
    let seen = f.state.lock().unwrap().seen.clone();
    assert_eq!(
        seen[0],
        ApiKey::ApiVersions,
        "ApiVersions comes first: {seen:?}"
    );
}

#[tokio::test]
async fn produce_then_fetch_round_trips_with_compression() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let mut po = ProduceOptions::default();
    let ack = client
        .produce("t", 1, &[rec("a"), rec("b")], &po)
        .await
        .unwrap();
    assert_eq!(ack.base_offset, Some(0));
    po.compression = Compression::Zstd;
    let ack = client.produce("t", 1, &[rec("c")], &po).await.unwrap();
    assert_eq!(ack.base_offset, Some(2));

    let got = client
        .fetch("t", 1, 1, &FetchOptions::default())
        .await
        .unwrap();
    let values: Vec<&[u8]> = got
        .records
        .iter()
        .map(|r| r.value.as_deref().unwrap())
        .collect();
    assert_eq!(values, vec![&b"b"[..], b"c"]);
    assert_eq!(got.records[0].offset, 1);
    assert_eq!(got.next_offset, 3);
    assert_eq!(got.high_watermark, 3);

    assert_eq!(
        client
            .list_offset("t", 1, OffsetSpec::Earliest)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        client
            .list_offset("t", 1, OffsetSpec::Latest)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        client
            .list_offset("t", 1, OffsetSpec::Timestamp(i64::MAX))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn not_leader_refreshes_metadata_and_retries() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    f.state.lock().unwrap().fail_next_produce = Some(code::NOT_LEADER_OR_FOLLOWER);
    let before = f.state.lock().unwrap().seen.len();
    let ack = client
        .produce("t", 0, &[rec("x")], &ProduceOptions::default())
        .await
        .unwrap();
    assert_eq!(ack.base_offset, Some(0));
    let seen: Vec<ApiKey> = f.state.lock().unwrap().seen[before..].to_vec();
    let produces = seen.iter().filter(|a| **a == ApiKey::Produce).count();
    assert_eq!(produces, 2, "{seen:?}");
    assert!(seen.contains(&ApiKey::Metadata), "refreshed: {seen:?}");
}

#[tokio::test]
async fn fatal_produce_errors_are_not_retried() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    f.state.lock().unwrap().fail_next_produce = Some(10); // MESSAGE_TOO_LARGE
    let err = client
        .produce("t", 0, &[rec("x")], &ProduceOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kafka_code(), Some(10));
    assert_eq!(err.to_string(), "Produce t-0: MESSAGE_TOO_LARGE (10)");
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_the_connection_stays_in_step() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let po = ProduceOptions {
        acks: Acks::None,
        ..ProduceOptions::default()
    };
    let ack = client.produce("t", 0, &[rec("x")], &po).await.unwrap();
    assert_eq!(ack.base_offset, None);
    // The next request on the same connection gets its own answer.
    let ack = client
        .produce("t", 0, &[rec("y")], &ProduceOptions::default())
        .await
        .unwrap();
    assert_eq!(ack.base_offset, Some(1));
}

#[tokio::test]
async fn unknown_topics_and_partitions_are_named() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let err = client
        .fetch("nope", 0, 0, &FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown topic nope");
    let err = client
        .fetch("t", 7, 0, &FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "topic t has no partition 7 (it has 2)");
}

#[tokio::test]
async fn create_topic_maps_errors() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let new = NewTopic {
        name: "fresh".into(),
        partitions: Some(3),
        ..NewTopic::default()
    };
    client
        .create_topic(&new, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(f.state.lock().unwrap().topics["fresh"], 3);
    let err = client
        .create_topic(&new, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "CreateTopics fresh: TOPIC_ALREADY_EXISTS (36): Topic 'fresh' already exists."
    );
}

#[tokio::test]
async fn api_versions_falls_back_when_the_broker_is_older() {
    let f = fake().await;
    f.state.lock().unwrap().api_versions_max = 2;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    assert!(client.cached_metadata().controller_id.is_some());
    let seen = f.state.lock().unwrap().seen.clone();
    assert_eq!(&seen[..2], &[ApiKey::ApiVersions, ApiKey::ApiVersions]);
}

#[tokio::test]
async fn connection_refused_fails_fast_with_the_address() {
    // Bind and drop to find a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut o = opts(&addr);
    // Bootstrapping makes one pass without retries, so a long backoff must not matter.
    o.backoff = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let err = Client::connect(o).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_connect(), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_broker_times_out() {
    let f = fake().await;
    f.state.lock().unwrap().silent = true;
    let mut o = opts(&f.addr);
    o.request_timeout = Duration::from_millis(200);
    o.retries = 1;
    let err = Client::connect(o).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                api: ApiKey::Metadata,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_frames_are_refused_before_allocation() {
    let f = fake().await;
    f.state.lock().unwrap().huge_metadata_frame = Some(i32::MAX);
    let mut o = opts(&f.addr);
    o.max_frame = 1024 * 1024;
    o.retries = 0;
    let err = Client::connect(o).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                source: ProtocolError::FrameTooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn legacy_alter_configs_keeps_the_other_overrides() {
    let f = fake().await;
    f.state.lock().unwrap().configs.insert(
        "t".into(),
        [
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("retention.ms".to_owned(), "1".to_owned()),
        ]
        .into(),
    );
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    client
        .alter_topic_configs(
            "t",
            &[
                ConfigChange::Set("retention.ms".into(), "5000".into()),
                ConfigChange::Delete("cleanup.policy".into()),
                ConfigChange::Set("max.message.bytes".into(), "10".into()),
            ],
        )
        .await
        .unwrap();
    let configs = client.describe_topic_configs("t").await.unwrap();
    let shown: Vec<(String, Option<String>, ConfigSource)> = configs
        .into_iter()
        .map(|c| (c.name, c.value, c.source))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                "max.message.bytes".into(),
                Some("10".into()),
                ConfigSource::DynamicTopic
            ),
            (
                "retention.ms".into(),
                Some("5000".into()),
                ConfigSource::DynamicTopic
            ),
            (
                "segment.bytes".into(),
                Some("1073741824".into()),
                ConfigSource::Default
            ),
        ]
    );
}

#[tokio::test]
async fn describe_cluster_lists_brokers() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    let d = client.describe_cluster().await.unwrap();
    assert_eq!(d.cluster_id, "fake-cluster");
    assert_eq!(d.controller_id, Some(1));
    assert_eq!(d.brokers.len(), 1);
    assert_eq!(d.brokers[0].addr(), f.addr);
}

#[tokio::test]
async fn an_abandoned_request_retires_its_connection() {
    let f = fake().await;
    let client = Client::connect(opts(&f.addr)).await.unwrap();
    assert_eq!(f.state.lock().unwrap().connections, 1);
    f.state.lock().unwrap().delay = Duration::from_millis(300);
    // The caller gives up while the answer is still on its way.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        client.fetch_metadata(None, false),
    )
    .await;
    assert!(abandoned.is_err());
    f.state.lock().unwrap().delay = Duration::ZERO;
    // Reusing the connection would read the abandoned answer; a new one is opened instead.
    let md = client.fetch_metadata(None, false).await.unwrap();
    assert!(md.topic("t").is_some());
    assert_eq!(f.state.lock().unwrap().connections, 2);
}
