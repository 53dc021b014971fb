//! Reconciling what was produced against what a consumer group processed: the proof, in every
//! demo run and every test that moves messages, that nothing was lost.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// A message's identity across the system.
pub type MessageKey = (String, i64);

/// One consumer group's account of the produced messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Produced messages the group processed at least once.
    pub consumed: u64,
    /// Produced messages the group never processed. Must be 0.
    pub lost: u64,
    /// Extra processings beyond the first (at-least-once redeliveries).
    pub duplicates: u64,
    /// Processed messages nobody produced in this run (leftovers from an earlier run).
    pub unexpected: u64,
}

/// Compares `processed` (every processing, duplicates included) against `produced`.
pub fn reconcile(
    produced: &HashSet<MessageKey>,
    processed: impl IntoIterator<Item = MessageKey>,
) -> Reconciliation {
    let mut times: HashMap<MessageKey, u64> = HashMap::with_capacity(produced.len());
    for key in processed {
        *times.entry(key).or_default() += 1;
    }
    let mut result = Reconciliation::default();
    for (key, count) in &times {
        if produced.contains(key) {
            result.consumed += 1;
            result.duplicates += count - 1;
        } else {
            result.unexpected += count;
        }
    }
    result.lost = produced.len() as u64 - result.consumed;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, id: i64) -> MessageKey {
        (p.to_owned(), id)
    }

    #[test]
    fn counts_lost_duplicates_and_strays() {
        let produced: HashSet<MessageKey> = [key("a", 1), key("a", 2), key("b", 1)].into();
        let processed = vec![
            key("a", 1),
            key("a", 1),
            key("a", 1),
            key("b", 1),
            key("c", 9),
        ];
        assert_eq!(
            reconcile(&produced, processed),
            Reconciliation {
                consumed: 2,
                lost: 1,
                duplicates: 2,
                unexpected: 1
            }
        );
    }
}
