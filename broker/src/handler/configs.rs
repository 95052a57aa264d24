//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic configs (stored in
//! `/config/topics/<t>`) and for the dynamic broker configs (the replication throttle
//! rates, stored in `/config/brokers/<id>` or, for every broker, `/config/brokers/<default>`,
//! which Kafka's tools address with an empty name); the other broker configs are
//! described, read-only.

use super::Ctx;
use crate::cluster::admin;
use crate::replica::throttle;
use crate::security::acl::Operation;
use fjord_shared::cluster::DEFAULT_ENTITY;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (`DescribeConfigsResponse.ConfigSource`).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn config_type(key: &str) -> i8 {
    // BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7
    match key {
        "unclean.leader.election.enable" => 1,
        "segment.bytes" | "max.message.bytes" | "min.insync.replicas" => 3,
        "retention.ms" | "retention.bytes" | "segment.ms" => 5,
        throttle::LEADER_RATE | throttle::FOLLOWER_RATE => 5,
        "cleanup.policy" | throttle::LEADER_REPLICAS | throttle::FOLLOWER_REPLICAS => 7,
        _ => 2,
    }
}

/// The broker setting a topic config falls back to (Kafka's `ServerTopicConfigSynonyms`).
fn broker_synonym(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "cleanup.policy" => "log.cleanup.policy",
        "compression.type" => "compression.type",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.insync.replicas" => "min.insync.replicas",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(s(name))
        .with_value(Some(s(value)))
        .with_source(source)
}

/// DescribeConfigs synonyms (v1+, when asked): where a value comes from, most specific
/// first, as Kafka lists them (`kafka-configs --describe` prints them). A topic's own
/// setting, then the broker setting behind it with the broker's value.
fn synonyms(
    resource_type: i8,
    key: &str,
    value: &str,
    source: i8,
    defaults: &std::collections::BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if resource_type == TOPIC {
        if source == DYNAMIC_TOPIC_CONFIG {
            out.push(synonym(key, value, DYNAMIC_TOPIC_CONFIG));
        }
        if let (Some(broker_key), Some(default)) = (broker_synonym(key), defaults.get(key)) {
            out.push(synonym(broker_key, default, DEFAULT_CONFIG));
        }
    } else {
        out.push(synonym(key, value, source));
    }
    out
}

/// With an authorizer: `op` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on the topic, or on the
/// cluster for broker configs. The refusal, if any.
fn refused(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    op: Operation,
) -> Option<admin::AdminError> {
    let (allowed, code, what) = if resource_type == TOPIC {
        (
            ctx.topic_allowed(op, name),
            ResponseError::TopicAuthorizationFailed,
            format!("topic {name}"),
        )
    } else {
        (
            ctx.cluster_allowed(op),
            ResponseError::ClusterAuthorizationFailed,
            "the cluster".to_owned(),
        )
    };
    (!allowed).then(|| {
        admin::AdminError::new(
            code,
            format!("{} may not {} of {what}", ctx.principal, op.znode_name()),
        )
    })
}

pub async fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let view = broker.cluster.view();
    let defaults = broker.default_topic_configs();
    let mut results = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_owned();
        let wanted = |k: &str| {
            r.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if let Some(e) = refused(ctx, r.resource_type, &name, Operation::DescribeConfigs) {
            results.push(
                result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(s(e.message))),
            );
            continue;
        }
        let entries: Vec<(String, String, i8, bool)> = match r.resource_type {
            TOPIC => match view.topics.get(&name).map(|_| ()) {
                // The coordinator, not the view, so a change just acknowledged is seen.
                Some(()) => {
                    let overrides = admin::read_topic_config(&broker.cluster, &name)
                        .await
                        .map(|(c, _)| c)
                        .unwrap_or_default();
                    defaults
                        .iter()
                        .map(|(k, v)| match overrides.get(k) {
                            Some(o) => (k.clone(), o.clone(), DYNAMIC_TOPIC_CONFIG, false),
                            None => (k.clone(), v.clone(), DEFAULT_CONFIG, false),
                        })
                        .collect()
                }
                None => {
                    results.push(
                        result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("no topic {name}")))),
                    );
                    continue;
                }
            },
            // The `<default>` entity: the dynamic defaults set for every broker.
            BROKER if name.is_empty() => admin::read_broker_config(&broker.cluster, DEFAULT_ENTITY)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v, DYNAMIC_DEFAULT_BROKER_CONFIG, false))
                .collect(),
            BROKER if name == broker.id.to_string() => {
                let mut entries: Vec<(String, String, i8, bool)> = broker
                    .broker_configs()
                    .into_iter()
                    .map(|(k, v)| (k, v, STATIC_BROKER_CONFIG, true))
                    .collect();
                let own = admin::read_broker_config(&broker.cluster, &name)
                    .await
                    .unwrap_or_default();
                let all = admin::read_broker_config(&broker.cluster, DEFAULT_ENTITY)
                    .await
                    .unwrap_or_default();
                for key in admin::DYNAMIC_BROKER_CONFIGS {
                    entries.push(match (own.get(*key), all.get(*key)) {
                        (Some(v), _) => (key.to_string(), v.clone(), DYNAMIC_BROKER_CONFIG, false),
                        (None, Some(v)) => (
                            key.to_string(),
                            v.clone(),
                            DYNAMIC_DEFAULT_BROKER_CONFIG,
                            false,
                        ),
                        (None, None) => {
                            (key.to_string(), i64::MAX.to_string(), DEFAULT_CONFIG, false)
                        }
                    });
                }
                entries
            }
            _ => {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(format!(
                            "unsupported resource {}:{name}",
                            r.resource_type
                        )))),
                );
                continue;
            }
        };
        let resource_type = result.resource_type;
        let configs = entries
            .into_iter()
            .filter(|(k, ..)| wanted(k))
            .map(|(k, v, source, read_only)| {
                let mut c = DescribeConfigsResourceResult::default();
                if ctx.version >= 1 && req.include_synonyms {
                    c = c.with_synonyms(synonyms(resource_type, &k, &v, source, &defaults));
                }
                let mut c = c
                    .with_name(s(k.clone()))
                    .with_value(Some(s(v)))
                    .with_read_only(read_only)
                    .with_config_source(source);
                if ctx.version >= 3 {
                    c = c.with_config_type(config_type(&k));
                }
                c
            })
            .collect();
        result = result.with_configs(configs);
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// The config znode a request's resource names: a topic, a broker id, or every broker
/// (an empty broker name).
enum Target {
    Topic(String),
    Broker(String),
}

fn target(resource_type: i8, name: &str) -> Result<Target, admin::AdminError> {
    match resource_type {
        TOPIC => Ok(Target::Topic(name.to_owned())),
        BROKER if name.is_empty() => Ok(Target::Broker(DEFAULT_ENTITY.to_owned())),
        BROKER => match name.parse::<i32>() {
            Ok(id) if id >= 0 => Ok(Target::Broker(id.to_string())),
            _ => Err(admin::AdminError::new(
                ResponseError::InvalidRequest,
                format!("{name:?} is not a broker id"),
            )),
        },
        other => Err(admin::AdminError::new(
            ResponseError::InvalidRequest,
            format!("configs of resource type {other} cannot be changed"),
        )),
    }
}

/// Applies `changes` (value `None` deletes a key) to a topic's or broker's config;
/// `replace` starts from an empty set (legacy AlterConfigs) instead of the current one.
async fn change(
    ctx: &Ctx<'_>,
    target: Target,
    changes: Vec<(String, Option<String>, i8)>,
    replace: bool,
    validate_only: bool,
) -> Result<(), admin::AdminError> {
    let apply = |config: &mut std::collections::BTreeMap<String, String>| {
        if replace {
            config.clear();
        }
        for (k, v, op) in &changes {
            match (op, v) {
                // SET (and legacy AlterConfigs entries)
                (0, Some(v)) => {
                    config.insert(k.clone(), v.clone());
                }
                (0, None) | (1, _) => {
                    config.remove(k);
                }
                (2 | 3, Some(v)) if k == "cleanup.policy" => {
                    // Kafka starts from the key's default when the topic does not set
                    // it, and takes a comma-separated list of values to add or remove.
                    let mut items: Vec<String> = config
                        .get(k)
                        .map_or("delete", String::as_str)
                        .split(',')
                        .filter(|i| !i.is_empty())
                        .map(str::to_owned)
                        .collect();
                    for value in v.split(',').filter(|i| !i.is_empty()) {
                        if *op == 2 {
                            if !items.iter().any(|i| i == value) {
                                items.push(value.to_owned());
                            }
                        } else {
                            items.retain(|i| i != value);
                        }
                    }
                    config.insert(k.clone(), items.join(","));
                }
                _ => {
                    return Err(admin::AdminError::new(
                        ResponseError::InvalidConfig,
                        format!("unsupported operation {op} on {k}"),
                    ));
                }
            }
        }
        Ok(())
    };
    let cluster = &ctx.broker.cluster;
    match target {
        Target::Topic(name) => {
            admin::update_topic_config(cluster, &name, validate_only, apply).await
        }
        Target::Broker(entity) => {
            admin::update_broker_config(cluster, &entity, validate_only, apply).await
        }
    }
}

pub async fn alter(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_owned();
        let outcome = if let Some(e) = refused(ctx, r.resource_type, &name, Operation::AlterConfigs)
        {
            Err(e)
        } else {
            let changes = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_owned(),
                        c.value.as_ref().map(|v| v.as_str().to_owned()),
                        0,
                    )
                })
                .collect();
            match target(r.resource_type, &name) {
                Ok(t) => change(ctx, t, changes, true, req.validate_only).await,
                Err(e) => Err(e),
            }
        };
        let mut resp = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err(e) = outcome {
            resp = resp
                .with_error_code(e.code.code())
                .with_error_message(Some(s(e.message)));
        }
        responses.push(resp);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_owned();
        let outcome = if let Some(e) = refused(ctx, r.resource_type, &name, Operation::AlterConfigs)
        {
            Err(e)
        } else {
            let changes = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_owned(),
                        c.value.as_ref().map(|v| v.as_str().to_owned()),
                        c.config_operation,
                    )
                })
                .collect();
            match target(r.resource_type, &name) {
                Ok(t) => change(ctx, t, changes, false, req.validate_only).await,
                Err(e) => Err(e),
            }
        };
        let mut resp = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err(e) = outcome {
            resp = resp
                .with_error_code(e.code.code())
                .with_error_message(Some(s(e.message)));
        }
        responses.push(resp);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(s: &[DescribeConfigsSynonym]) -> Vec<(String, String, i8)> {
        s.iter()
            .map(|x| {
                let value = x.value.as_ref().map_or("", |v| v.as_str()).to_owned();
                (x.name.as_str().to_owned(), value, x.source)
            })
            .collect()
    }

    #[test]
    fn topic_synonyms_list_the_topic_value_then_the_broker_setting_behind_it() {
        let defaults: std::collections::BTreeMap<String, String> =
            [("retention.ms".to_owned(), "604800000".to_owned())].into();
        let own = synonyms(
            TOPIC,
            "retention.ms",
            "5000",
            DYNAMIC_TOPIC_CONFIG,
            &defaults,
        );
        assert_eq!(
            named(&own),
            [
                ("retention.ms".into(), "5000".into(), DYNAMIC_TOPIC_CONFIG),
                (
                    "log.retention.ms".into(),
                    "604800000".into(),
                    DEFAULT_CONFIG
                ),
            ]
        );
        let inherited = synonyms(
            TOPIC,
            "retention.ms",
            "604800000",
            DEFAULT_CONFIG,
            &defaults,
        );
        assert_eq!(
            named(&inherited),
            [(
                "log.retention.ms".into(),
                "604800000".into(),
                DEFAULT_CONFIG
            )]
        );
        // A key without a broker setting behind it has only its own entry, if any.
        assert!(synonyms(TOPIC, "x.unknown", "1", DEFAULT_CONFIG, &defaults).is_empty());
        let broker = synonyms(BROKER, "log.dirs", "/d", STATIC_BROKER_CONFIG, &defaults);
        assert_eq!(
            named(&broker),
            [("log.dirs".into(), "/d".into(), STATIC_BROKER_CONFIG)]
        );
    }
}
