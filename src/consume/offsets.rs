//! Offsets follow acknowledgements: the one offset mechanism of both consumer roles.
//!
//! Committing offset N tells Kafka that every record of the partition below N is done. With
//! work running side by side (several workers, retries, dead letters) records finish out of
//! order, so what may be committed is the first offset that is not finished yet: everything
//! below it is. This is Vector's ordered finalizer, per partition: records are noted as they
//! arrive (always in offset order), marked when finished (in any order), and the commit point
//! moves over the finished prefix only. A record in flight, waiting for a retry or for its
//! dead-letter copy holds the commit point below it, however much after it is finished.

use std::collections::VecDeque;

/// The records of one partition between the commit point and the last one received.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Offsets received and not yet passed by the commit point, ascending, with whether each
    /// is finished. Offsets need not be contiguous (compaction, transaction markers).
    pending: VecDeque<(i64, bool)>,
    /// Everything below this offset is finished: the offset to store and commit.
    commit_point: Option<i64>,
    /// The offset after the last one received.
    received_to: Option<i64>,
}

impl OffsetTracker {
    /// A record arrived. Records of a partition arrive in offset order; one at or below what
    /// was received (librdkafka re-reading after a seek) is ignored.
    pub fn receive(&mut self, offset: i64) -> bool {
        if self.received_to.is_some_and(|next| offset < next) {
            return false;
        }
        self.pending.push_back((offset, false));
        self.received_to = Some(offset + 1);
        true
    }

    /// The record at `offset` is finished: processed, or its dead-letter copy acknowledged.
    /// Returns whether the commit point moved.
    pub fn finish(&mut self, offset: i64) -> bool {
        // Records mostly finish in the order they came: the first one waiting is the one.
        let index = match self.pending.front() {
            Some(&(first, _)) if first == offset => 0,
            _ => match self.pending.binary_search_by_key(&offset, |&(o, _)| o) {
                Ok(index) => index,
                Err(_) => return false,
            },
        };
        self.pending[index].1 = true;
        let mut moved = false;
        while let Some(&(offset, true)) = self.pending.front() {
            self.pending.pop_front();
            self.commit_point = Some(offset + 1);
            moved = true;
        }
        moved
    }

    /// The offset to commit: every record below it is finished. `None` before any was.
    pub fn commit_point(&self) -> Option<i64> {
        self.commit_point
    }

    /// The offset after the last record received, if any was.
    pub fn received_to(&self) -> Option<i64> {
        self.received_to
    }

    /// Records received and not yet past the commit point: in hand, in flight, waiting, or
    /// finished behind one that is not.
    pub fn in_hand(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_commit_point_stops_below_the_first_unfinished_record() {
        let mut offsets = OffsetTracker::default();
        for offset in [10, 11, 13, 14] {
            assert!(offsets.receive(offset));
        }
        assert!(!offsets.receive(11), "read again: ignored");
        assert!(!offsets.finish(11));
        assert!(!offsets.finish(14));
        assert_eq!(offsets.commit_point(), None);
        assert!(offsets.finish(10));
        assert_eq!(offsets.commit_point(), Some(12));
        assert!(offsets.finish(13));
        assert_eq!(
            offsets.commit_point(),
            Some(15),
            "the gap at 12 is not a record"
        );
        assert_eq!(offsets.in_hand(), 0);
        assert_eq!(offsets.received_to(), Some(15));
    }

    proptest! {
        /// Whatever order records finish in, the commit point is the first unfinished offset
        /// (or after the last one when all are finished), and never moves back.
        #[test]
        fn finishing_in_any_order_commits_only_a_finished_prefix(
            order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(),
            stop in 0usize..40,
        ) {
            let mut offsets = OffsetTracker::default();
            (0..40).for_each(|o| { offsets.receive(o * 2); });
            let mut last = None;
            for &finished in &order[..stop] {
                offsets.finish(finished * 2);
                prop_assert!(offsets.commit_point() >= last);
                last = offsets.commit_point();
            }
            let first_unfinished = (0..40).find(|o| !order[..stop].contains(o));
            let expected = match first_unfinished {
                Some(0) => None,
                Some(o) => Some((o - 1) * 2 + 1),
                None => Some(79),
            };
            prop_assert_eq!(offsets.commit_point(), expected);
        }
    }
}
