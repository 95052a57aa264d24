//! `fjord topics offsets` and `fjord topics delete-records`: a topic's offsets per
//! partition (earliest, latest, or at a time, as `kafka-get-offsets` prints them), and
//! deleting the records before an offset (as `kafka-delete-records` does).

use std::io::Write;

use super::error::CliError;
use super::table::Table;
use crate::client::{Client, Error, OffsetSpec};

/// `--time`: `earliest`, `latest` or milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<OffsetSpec, String> {
    match text {
        "earliest" | "-2" => Ok(OffsetSpec::Earliest),
        "latest" | "-1" => Ok(OffsetSpec::Latest),
        ms => ms
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(OffsetSpec::Timestamp)
            .ok_or_else(|| {
                format!("{text:?} is not earliest, latest or milliseconds since the epoch")
            }),
    }
}

/// `TOPIC:PARTITION`.
pub fn parse_topic_partition(text: &str) -> Result<(String, i32), String> {
    let (t, p) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not TOPIC:PARTITION"))?;
    let p = p
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| format!("{text:?}: the partition is not a number"))?;
    if t.is_empty() {
        return Err(format!("{text:?}: no topic"));
    }
    Ok((t.to_owned(), p))
}

/// Prints every partition's offset for `spec`.
pub async fn offsets(
    client: &Client,
    topic: &str,
    spec: OffsetSpec,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let md = client
        .fetch_metadata(Some(&[topic.to_owned()]), false)
        .await?;
    let Some(t) = md.topic(topic) else {
        return Err(Error::UnknownTopic {
            topic: topic.to_owned(),
        }
        .into());
    };
    let partitions: Vec<i32> = t.partitions.keys().copied().collect();
    let found = client.list_offsets(topic, &partitions, spec).await?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "OFFSET"]);
    for (p, o) in found {
        table.row(vec![
            topic.to_owned(),
            p.to_string(),
            // No record at or after the time asked for.
            o.map_or_else(|| "-".into(), |o| o.to_string()),
        ]);
    }
    table.write(out, "")?;
    Ok(())
}

/// Deletes the records of `topic`-`partition` before `before`.
pub async fn delete_records(
    client: &Client,
    (topic, partition): (String, i32),
    before: i64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let start = client.delete_records(&topic, partition, before).await?;
    writeln!(
        out,
        "{topic}-{partition}: records before {before} deleted; the log now starts at {start}"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(parse_time("earliest"), Ok(OffsetSpec::Earliest));
        assert_eq!(parse_time("latest"), Ok(OffsetSpec::Latest));
        assert_eq!(
            parse_time("1700000000000"),
            Ok(OffsetSpec::Timestamp(1_700_000_000_000))
        );
        assert!(parse_time("soon").is_err());
        assert_eq!(parse_topic_partition("a:b:3"), Ok(("a:b".into(), 3)));
        assert!(parse_topic_partition("orders").is_err());
        assert!(parse_topic_partition("orders:x").is_err());
        assert!(parse_topic_partition(":1").is_err());
    }
}
