//! `fjord cluster log-dirs` and `fjord cluster api-versions`: what each broker says of
//! itself: its log directory with the size of every replica and the space left on its file
//! system (DescribeLogDirs, as `kafka-log-dirs --describe` shows it), and the API versions
//! it serves (as
//! `kafka-broker-api-versions` prints them, with the version this client would use).

use std::io::Write;

use kafka_protocol::messages::ApiKey;

use super::error::CliError;
use super::table::{self, Table};
use crate::client::Client;

/// Every replica of every broker: size and offset lag; then each broker's total.
pub async fn log_dirs(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let dirs = client.describe_log_dirs().await?;
    let mut table = Table::new(&[
        "BROKER",
        "LOG-DIR",
        "TOPIC",
        "PARTITION",
        "SIZE",
        "OFFSET-LAG",
    ]);
    let mut totals = Table::new(&[
        "BROKER",
        "LOG-DIR",
        "REPLICAS",
        "TOTAL-SIZE",
        "VOLUME-SIZE",
        "VOLUME-FREE",
    ]);
    let known = |v: i64| if v < 0 { "-".to_owned() } else { v.to_string() };
    for d in &dirs {
        for ((topic, partition), (size, lag)) in &d.replicas {
            table.row(vec![
                d.broker.to_string(),
                d.path.clone(),
                topic.clone(),
                partition.to_string(),
                size.to_string(),
                lag.to_string(),
            ]);
        }
        totals.row(vec![
            d.broker.to_string(),
            d.path.clone(),
            d.replicas.len().to_string(),
            d.replicas.values().map(|(s, _)| s).sum::<i64>().to_string(),
            known(d.volume.0),
            known(d.volume.1),
        ]);
    }
    table.write(out, "")?;
    table::gap(out)?;
    totals.write(out, "")?;
    Ok(())
}

/// Every broker's API versions, in `kafka-broker-api-versions`' format.
pub async fn api_versions(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let md = client.fetch_metadata(Some(&[]), false).await?;
    for b in md.brokers.values() {
        let addr = b.addr();
        let versions = client.conn(&addr).await?.versions().clone();
        if table::json() {
            let apis: Vec<serde_json::Value> = versions
                .advertised()
                .iter()
                .map(|(key, (min, max))| {
                    let api = ApiKey::try_from(*key).ok();
                    serde_json::json!({
                        "api": api.map_or_else(|| format!("Unknown({key})"), |a| format!("{a:?}")),
                        "key": key,
                        "min": min,
                        "max": max,
                        "usable": api.and_then(|a| versions.version(a).ok()),
                    })
                })
                .collect();
            let line =
                serde_json::json!({"broker": b.id, "address": addr, "rack": b.rack, "apis": apis});
            writeln!(out, "{line}")?;
            continue;
        }
        writeln!(
            out,
            "{addr} (id: {} rack: {}) -> (",
            b.id,
            b.rack.as_deref().unwrap_or("null")
        )?;
        let advertised = versions.advertised();
        for (i, (key, (min, max))) in advertised.iter().enumerate() {
            let name = ApiKey::try_from(*key)
                .map_or_else(|_| format!("Unknown({key})"), |a| format!("{a:?}"));
            let usable = ApiKey::try_from(*key)
                .ok()
                .and_then(|a| versions.version(a).ok())
                .map_or_else(|| "[usable: NONE]".to_owned(), |v| format!("[usable: {v}]"));
            let sep = if i + 1 == advertised.len() { "" } else { "," };
            writeln!(out, "\t{name}({key}): {min} to {max} {usable}{sep}")?;
        }
        writeln!(out, ")")?;
    }
    Ok(())
}
