//! The records of `__consumer_offsets`, in Kafka's own binary formats, so the topic reads
//! the same as a Kafka cluster's (`kafka-console-consumer --formatter` included):
//!
//! | key (version)                         | value (version)                                   |
//! |---------------------------------------|---------------------------------------------------|
//! | OffsetCommitKey (1): group, topic, partition | OffsetCommitValue (3): offset, leader epoch, metadata, commit timestamp |
//! | GroupMetadataKey (2): group           | GroupMetadataValue (3): protocol type, generation, protocol, leader, state timestamp, members |
//!
//! A record with a null value (a tombstone) deletes its key: a group that was deleted, or
//! an offset that expired. Keys are encoded deterministically, so compaction keeps the
//! newest record per group and per (group, topic, partition).
//!
//! Layout: a big-endian i16 version, then the fields; strings are an i16 length and UTF-8
//! (-1 for null), bytes an i32 length, arrays an i32 count.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The key of one `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One member in a group's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata after a completed generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record ends early")]
    Truncated,
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("a string is not UTF-8")]
    NotUtf8,
}

/// Writes an INT16-length string. Group ids over that length are refused before they get
/// here (INVALID_GROUP_ID) and generated member ids are short; anything else that long is
/// cut at a character boundary, so the record still decodes.
fn put_str(b: &mut BytesMut, s: &str) {
    let mut len = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize) -> Result<(), RecordError> {
    if b.remaining() < n {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut Bytes) -> Result<i16, RecordError> {
    need(b, 2)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut Bytes) -> Result<i32, RecordError> {
    need(b, 4)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut Bytes) -> Result<i64, RecordError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_opt_str(b: &mut Bytes) -> Result<Option<String>, RecordError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize)?;
    let s = b.split_to(len as usize);
    String::from_utf8(s.to_vec())
        .map(Some)
        .map_err(|_| RecordError::NotUtf8)
}

fn get_str(b: &mut Bytes) -> Result<String, RecordError> {
    Ok(get_opt_str(b)?.unwrap_or_default())
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize)?;
    Ok(b.split_to(len as usize))
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<RecordKey, RecordError> {
        match get_i16(&mut b)? {
            0 | 1 => Ok(RecordKey::Offset {
                group: get_str(&mut b)?,
                topic: get_str(&mut b)?,
                partition: get_i32(&mut b)?,
            }),
            2 => Ok(RecordKey::Group {
                group: get_str(&mut b)?,
            }),
            version => Err(RecordError::UnknownVersion {
                what: "key",
                version,
            }),
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<OffsetValue, RecordError> {
        let version = get_i16(&mut b)?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "offset commit value",
                version,
            });
        }
        let offset = get_i64(&mut b)?;
        let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
        let metadata = get_str(&mut b)?;
        let commit_timestamp = get_i64(&mut b)?;
        if version == 1 {
            get_i64(&mut b)?; // expire timestamp, no longer used
        }
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_opt_str(&mut b, self.protocol.as_deref());
        put_opt_str(&mut b, self.leader.as_deref());
        b.put_i64(self.current_state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_opt_str(&mut b, m.group_instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout_ms);
            b.put_i32(m.session_timeout_ms);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<GroupValue, RecordError> {
        let version = get_i16(&mut b)?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "group metadata value",
                version,
            });
        }
        let protocol_type = get_str(&mut b)?;
        let generation = get_i32(&mut b)?;
        let protocol = get_opt_str(&mut b)?;
        let leader = get_opt_str(&mut b)?;
        let current_state_timestamp = if version >= 2 { get_i64(&mut b)? } else { -1 };
        let count = get_i32(&mut b)?.max(0) as usize;
        let mut members = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let member_id = get_str(&mut b)?;
            let group_instance_id = if version >= 3 {
                get_opt_str(&mut b)?
            } else {
                None
            };
            let client_id = get_str(&mut b)?;
            let client_host = get_str(&mut b)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut b)? } else { -1 };
            let session_timeout_ms = get_i32(&mut b)?;
            let rebalance_timeout_ms = if version >= 1 {
                rebalance_timeout_ms
            } else {
                session_timeout_ms
            };
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: get_bytes(&mut b)?,
                assignment: get_bytes(&mut b)?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

/// Which `__consumer_offsets` partition holds `group`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, with Java's `String.hashCode`, so a group
/// lands on the same partition number as on Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: the absolute value, with i32::MIN mapped to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_string_is_cut_at_a_character_boundary_and_still_decodes() {
        // 'é' is two bytes: 16384 of them are 32768 bytes, one over the INT16 limit.
        let long = "é".repeat(16384);
        let k = RecordKey::Group { group: long };
        match RecordKey::decode(k.encode()).unwrap() {
            RecordKey::Group { group } => assert_eq!(group, "é".repeat(16383)),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn keys_round_trip_and_are_deterministic() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(k.encode(), k.encode());
        assert_eq!(
            &k.encode()[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7][..]
        );
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let g = RecordKey::Group { group: "g".into() };
        assert_eq!(&g.encode()[..], &[0, 2, 0, 1, b'g'][..]);
        assert_eq!(RecordKey::decode(g.encode()).unwrap(), g);
        assert_eq!(
            RecordKey::decode(Bytes::from_static(&[0, 9])),
            Err(RecordError::UnknownVersion {
                what: "key",
                version: 9
            })
        );
        assert_eq!(
            RecordKey::decode(Bytes::from_static(&[0, 2, 0, 5, b'g'])),
            Err(RecordError::Truncated)
        );
    }

    #[test]
    fn values_round_trip() {
        let o = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(OffsetValue::decode(o.encode()).unwrap(), o);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 9,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(g.encode()).unwrap(), g);
        let empty = GroupValue {
            protocol_type: "consumer".into(),
            generation: 6,
            ..GroupValue::default()
        };
        assert_eq!(GroupValue::decode(empty.encode()).unwrap(), empty);
    }

    #[test]
    fn partitions_match_kafkas_string_hash() {
        // Java: "test-group".hashCode() == 627841412; "" hashes to 0.
        assert_eq!(partition_for("test-group", 50), 627_841_412 % 50);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // Java's "zz-top".hashCode() is -688085688: its absolute value is used.
        assert_eq!(partition_for("zz-top", 50), 688_085_688 % 50);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants" hashes to i32::MIN in Java, which Utils.abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["a", "oms-events-wms", "oms-events-billing"] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }
}
