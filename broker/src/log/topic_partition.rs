//! A topic partition and its directory name, `<topic>-<partition>` (Kafka's).
//!
//! Topic names follow Kafka's rules (`[a-zA-Z0-9._-]`, 1 to 249 characters, not `.` or
//! `..`), which is also what makes them safe as directory names. A topic may itself
//! contain `-`, so the partition is whatever follows the last `-`.

use super::error::LogError;
use std::fmt;

/// Kafka's limit on topic name length (it leaves room for the partition suffix).
const MAX_TOPIC_LEN: usize = 249;

/// A topic and a partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition (not validated; see [`TopicPartition::validate`]).
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; `None` if it is not a valid `<topic>-<partition>`.
    pub fn parse_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, partition) = name.rsplit_once('-')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let tp = TopicPartition::new(topic, partition.parse().ok()?);
        tp.validate().ok()?;
        Some(tp)
    }

    /// Checks the topic name against Kafka's rules and that the partition is not negative.
    pub fn validate(&self) -> Result<(), LogError> {
        let reason = if self.topic.is_empty() {
            Some("empty topic name")
        } else if self.topic.len() > MAX_TOPIC_LEN {
            Some("topic name longer than 249 characters")
        } else if self.topic == "." || self.topic == ".." {
            Some("topic name cannot be . or ..")
        } else if !self
            .topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            Some("topic name has characters other than [a-zA-Z0-9._-]")
        } else if self.partition < 0 {
            Some("negative partition")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(LogError::InvalidTopicPartition {
                name: self.dir_name(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        let tp = TopicPartition::new("my-topic.v2", 12);
        assert_eq!(tp.dir_name(), "my-topic.v2-12");
        assert_eq!(TopicPartition::parse_dir_name("my-topic.v2-12"), Some(tp));
        for bad in [
            "noparttion",
            "t-",
            "t-x",
            "-1",
            "t-0.delete",
            "a/b-0",
            "..-0",
        ] {
            assert_eq!(TopicPartition::parse_dir_name(bad), None, "{bad}");
        }
        assert_eq!(
            TopicPartition::parse_dir_name("t--1"),
            Some(TopicPartition::new("t-", 1))
        );
        assert!(TopicPartition::new("a b", 0).validate().is_err());
        assert!(TopicPartition::new("x".repeat(250), 0).validate().is_err());
    }
}
