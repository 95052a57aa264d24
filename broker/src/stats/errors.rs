//! The error codes in a response, as Kafka counts them for `ErrorsPerSec`: every
//! partition-, topic-, group- or resource-level code, plus the top-level one where the
//! response has it (0, NONE, included).

use kafka_protocol::messages::ResponseKind;

/// Distinct codes with their counts; responses rarely carry more than a few kinds.
#[derive(Debug, Default)]
pub struct Counts(Vec<(i16, u64)>);

impl Counts {
    fn add(&mut self, code: i16) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.0.push((code, 1)),
        }
    }

    fn extend(&mut self, codes: impl IntoIterator<Item = i16>) {
        for c in codes {
            self.add(c);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (i16, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// The error codes in `response`.
pub fn error_counts(response: &ResponseKind) -> Counts {
    let mut c = Counts::default();
    match response {
        ResponseKind::Produce(r) => c.extend(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        ResponseKind::Fetch(r) => {
            c.add(r.error_code);
            c.extend(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        }
        ResponseKind::ListOffsets(r) => c.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::Metadata(r) => c.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::ApiVersions(r) => c.add(r.error_code),
        ResponseKind::CreateTopics(r) => c.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => c.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::CreatePartitions(r) => c.extend(r.results.iter().map(|t| t.error_code)),
        ResponseKind::DescribeConfigs(r) => c.extend(r.results.iter().map(|t| t.error_code)),
        ResponseKind::AlterConfigs(r) => c.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            c.extend(r.responses.iter().map(|t| t.error_code))
        }
        ResponseKind::DescribeCluster(r) => c.add(r.error_code),
        ResponseKind::DescribeLogDirs(r) => {
            c.add(r.error_code);
            c.extend(r.results.iter().map(|d| d.error_code))
        }
        ResponseKind::DeleteRecords(r) => c.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::InitProducerId(r) => c.add(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            if r.coordinators.is_empty() {
                c.add(r.error_code)
            }
            c.extend(r.coordinators.iter().map(|k| k.error_code))
        }
        ResponseKind::OffsetForLeaderEpoch(r) => c.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::ElectLeaders(r) => {
            c.add(r.error_code);
            c.extend(
                r.replica_election_results
                    .iter()
                    .flat_map(|t| t.partition_result.iter().map(|p| p.error_code)),
            )
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            c.add(r.error_code);
            c.extend(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        }
        ResponseKind::ListPartitionReassignments(r) => c.add(r.error_code),
        ResponseKind::JoinGroup(r) => c.add(r.error_code),
        ResponseKind::SyncGroup(r) => c.add(r.error_code),
        ResponseKind::Heartbeat(r) => c.add(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            c.add(r.error_code);
            c.extend(r.members.iter().map(|m| m.error_code))
        }
        ResponseKind::OffsetCommit(r) => c.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::OffsetFetch(r) => {
            if r.groups.is_empty() {
                c.add(r.error_code);
                c.extend(
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
            }
            for g in &r.groups {
                c.add(g.error_code);
                c.extend(
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
            }
        }
        ResponseKind::ListGroups(r) => c.add(r.error_code),
        ResponseKind::DescribeGroups(r) => c.extend(r.groups.iter().map(|g| g.error_code)),
        ResponseKind::DeleteGroups(r) => c.extend(r.results.iter().map(|g| g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            c.add(r.error_code);
            c.extend(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        }
        ResponseKind::SaslHandshake(r) => c.add(r.error_code),
        ResponseKind::SaslAuthenticate(r) => c.add(r.error_code),
        ResponseKind::DescribeAcls(r) => c.add(r.error_code),
        ResponseKind::CreateAcls(r) => c.extend(r.results.iter().map(|x| x.error_code)),
        ResponseKind::DeleteAcls(r) => c.extend(r.filter_results.iter().map(|x| x.error_code)),
        ResponseKind::DescribeUserScramCredentials(r) => {
            c.add(r.error_code);
            c.extend(r.results.iter().map(|x| x.error_code))
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            c.extend(r.results.iter().map(|x| x.error_code))
        }
        _ => {}
    }
    c
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as the `error` label
/// shows it.
pub fn error_name(code: i16) -> String {
    if code == 0 {
        return "NONE".to_owned();
    }
    // Kafka shows a code it does not know as UNKNOWN_SERVER_ERROR.
    let camel = match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => return "UNKNOWN_SERVER_ERROR".to_owned(),
    };
    if camel.contains('(') {
        return "UNKNOWN_SERVER_ERROR".to_owned();
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    #[test]
    fn produce_partitions_are_counted() {
        let r = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_partition_responses(vec![
                PartitionProduceResponse::default(),
                PartitionProduceResponse::default().with_error_code(3),
                PartitionProduceResponse::default(),
            ])]);
        let counts: Vec<_> = error_counts(&ResponseKind::Produce(r)).iter().collect();
        assert_eq!(counts, vec![(0, 2), (3, 1)]);
    }

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(error_name(9999), "UNKNOWN_SERVER_ERROR");
    }
}
