//! What a topic's live durability settings mean beside the producer's `acks`: the warnings
//! where together they cannot keep the promise of an acknowledged write, and the notes where
//! they trade availability for it, each naming the setting that changes it. Pure functions of
//! the settings, apart from how they are read from the cluster.

use std::collections::HashMap;

use super::Shape;
use crate::config::MIN_INSYNC_REPLICAS;

/// The live topic's durability settings beside the producer's `acks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// The producer's `acks` as configured (librdkafka's default is `all`).
    pub acks: String,
    pub replication_factor: Option<i32>,
    pub min_insync_replicas: Option<i32>,
    pub unclean_leader_election: Option<bool>,
    pub max_message_bytes: Option<i64>,
}

/// How to give topic config `name` the value `value`: in the configuration for the topics
/// kafkad creates, by hand on an existing one.
fn how_to_set(topic: &str, name: &str, value: &str) -> String {
    let variable = name.to_ascii_uppercase().replace('.', "_");
    format!(
        "set \"{name}\" = {value} in [topic.config], or KAFKAD_TOPIC__CONFIG__{variable}={value}, for the topics kafkad creates; kafkad does not alter an existing topic: kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config {name}={value}"
    )
}

impl Durability {
    /// The durability settings of a topic of `shape` with `configs` (as the broker reports
    /// them), beside the producer's `acks`.
    pub(super) fn of(acks: &str, shape: Option<Shape>, configs: &HashMap<String, String>) -> Self {
        let get = |key: &str| configs.get(key).map(String::as_str);
        Durability {
            acks: acks.to_owned(),
            replication_factor: shape.and_then(|s| s.replication_factor),
            min_insync_replicas: get(MIN_INSYNC_REPLICAS).and_then(|v| v.parse().ok()),
            unclean_leader_election: get("unclean.leader.election.enable")
                .and_then(|v| v.parse().ok()),
            max_message_bytes: get("max.message.bytes").and_then(|v| v.parse().ok()),
        }
    }

    /// Where these settings cannot keep the promise of an acknowledged write.
    pub fn warnings(&self, topic: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        let acks_all = matches!(self.acks.as_str(), "all" | "-1");
        if !acks_all {
            warnings.push(format!(
                "producer acks={}: a message counts as delivered {}; it is lost if that leader fails before a follower copies it (set acks=all)",
                self.acks,
                if self.acks == "0" { "before any broker has it" } else { "once the partition leader alone has it" }
            ));
        }
        let rf = self.replication_factor.unwrap_or(0);
        if rf == 1 {
            warnings.push(format!(
                "topic {topic} keeps one replica per partition: a broker whose disk is lost takes every acknowledged message of its partitions with it (set replication_factor = 3 in [topic] for a topic kafkad creates; kafka-reassign-partitions.sh adds replicas to an existing one)"
            ));
        }
        if let Some(min_isr) = self.min_insync_replicas {
            if acks_all && rf > 1 && min_isr < 2 {
                warnings.push(format!(
                    "topic {topic} has min.insync.replicas={min_isr}: acks=all is then met by the leader alone whenever its followers have fallen out of sync, and a message acknowledged then is lost if that leader fails before a follower catches up ({})",
                    how_to_set(topic, MIN_INSYNC_REPLICAS, "2")
                ));
            }
            // Dead-letter copies are written with acks=all whatever the producer's acks.
            if rf > 0 && min_isr > rf {
                warnings.push(format!(
                    "topic {topic} has min.insync.replicas={min_isr} with {rf} replicas: every write with acks=all, dead-letter copies included, is refused (NOT_ENOUGH_REPLICAS) even with every broker up ({})",
                    how_to_set(topic, MIN_INSYNC_REPLICAS, &rf.min(2).to_string())
                ));
            }
        }
        if self.unclean_leader_election == Some(true) {
            warnings.push(format!(
                "topic {topic} has unclean.leader.election.enable=true: after a failure an out-of-sync replica may become leader and the acknowledged messages it lacks are discarded ({})",
                how_to_set(topic, "unclean.leader.election.enable", "false")
            ));
        }
        warnings
    }

    /// What these settings give up for their safety: nothing acknowledged is lost, but writes
    /// wait.
    pub fn notes(&self, topic: &str) -> Vec<String> {
        match (self.replication_factor, self.min_insync_replicas) {
            (Some(rf), Some(min_isr)) if rf > 1 && min_isr == rf => vec![format!(
                "topic {topic} has min.insync.replicas={min_isr} with {rf} replicas: every acknowledged write is on all of them, and while any one replica of a partition is down, writes to it are refused (NOT_ENOUGH_REPLICAS) and wait: the producer retries them until delivery.timeout.ms, a dead-letter copy until the replica is back (replication_factor = {} in [topic] with min.insync.replicas={min_isr} keeps writing through one broker's loss)",
                rf + 1
            )],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
        write!(
            f,
            "replication factor {}, min.insync.replicas={}, unclean.leader.election.enable={}, max.message.bytes={}; producer acks={}",
            show(self.replication_factor.map(|v| v.to_string())),
            show(self.min_insync_replicas.map(|v| v.to_string())),
            show(self.unclean_leader_election.map(|v| v.to_string())),
            show(self.max_message_bytes.map(|v| v.to_string())),
            self.acks
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn durability(acks: &str, rf: i32, min_isr: i32, unclean: bool) -> Durability {
        Durability {
            acks: acks.to_owned(),
            replication_factor: Some(rf),
            min_insync_replicas: Some(min_isr),
            unclean_leader_election: Some(unclean),
            max_message_bytes: Some(1_048_588),
        }
    }

    #[test]
    fn acks_all_with_two_in_sync_replicas_of_three_keeps_its_promise() {
        assert_eq!(
            durability("all", 3, 2, false).warnings("t"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn one_in_sync_replica_is_named_with_what_can_be_lost_and_the_key_to_set() {
        let warnings = durability("all", 2, 1, false).warnings("andrew-topic");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("min.insync.replicas=1")
                && warnings[0].contains("is lost if that leader fails"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("set \"min.insync.replicas\" = 2 in [topic.config]")
                && warnings[0].contains("KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS=2")
                && warnings[0]
                    .contains("--entity-name andrew-topic --add-config min.insync.replicas=2"),
            "{warnings:?}"
        );
    }

    #[test]
    fn weak_acks_unclean_election_and_unwritable_minimums_are_each_named() {
        let warnings = durability("1", 2, 3, true).warnings("t");
        let all = warnings.join("\n");
        assert_eq!(warnings.len(), 3, "{all}");
        assert!(all.contains("acks=1"), "{all}");
        assert!(all.contains("unclean.leader.election.enable=true"), "{all}");
        assert!(
            all.contains("NOT_ENOUGH_REPLICAS) even with every broker up"),
            "{all}"
        );
        let all = durability("-1", 1, 1, false).warnings("t").join("\n");
        assert!(all.contains("one replica"), "{all}");
    }

    #[test]
    fn the_min_insync_replicas_topic_ensure_chooses_draws_no_warning() {
        for replication_factor in 2..=5 {
            let topic = crate::config::TopicSettings {
                selection: crate::config::TopicSelection::One("t".to_owned()),
                name: "t".to_owned(),
                partitions: 3,
                replication_factor,
                config: BTreeMap::new(),
            };
            let min_isr = topic.default_min_insync_replicas();
            let chosen = durability("all", replication_factor, min_isr, false);
            assert_eq!(
                chosen.warnings("t"),
                Vec::<String>::new(),
                "{replication_factor} replicas, min.insync.replicas={min_isr}"
            );
        }
    }

    #[test]
    fn all_replicas_in_sync_is_a_trade_noted_not_a_warning() {
        let two_of_two = durability("all", 2, 2, false);
        assert!(two_of_two.warnings("t").is_empty());
        let notes = two_of_two.notes("t");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("writes to it are refused (NOT_ENOUGH_REPLICAS) and wait")
                && notes[0].contains("replication_factor = 3"),
            "{notes:?}"
        );
        assert!(durability("all", 3, 2, false).notes("t").is_empty());
    }
}
