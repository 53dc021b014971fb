//! What a sink keeping positions shares between its position store (on the consumer's
//! polling thread) and the sinks of its workers: the claim taken for each partition at its
//! latest assignment.
//!
//! A claim is fenced in two places. Here, cheaply: a sink call for an assignment other than
//! the partition's latest one of this member (the partition was revoked and assigned again
//! while the call's records waited or ran) is refused without touching the destination. At
//! the destination, for everything else: another member's claim, made in its own process,
//! can only be seen there (the postgres sink's offsets row; the kafka sink's group
//! generation, checked by the broker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{SinkError, Span};

/// One partition's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The assignment of this member the claim was taken for.
    pub assignment: u64,
    /// The destination's token for the claim (the postgres offsets row's claim number).
    pub token: i64,
    /// The next offset the destination holds for the partition as far as this member knows:
    /// read when claiming, then what each of its own writes left there.
    pub written: Option<i64>,
}

/// The claims of one consumer, by partition.
#[derive(Debug, Clone, Default)]
pub struct Claims(Arc<Mutex<HashMap<i32, Claim>>>);

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Claim>> {
        // A panic while holding this lock leaves the map as consistent as a single insert
        // is; the claims in it are still this member's latest.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `partition` was claimed for `claim.assignment`.
    pub fn set(&self, partition: i32, claim: Claim) {
        self.lock().insert(partition, claim);
    }

    /// The claim `span` was made under, or [`SinkError::Fenced`] when the partition's latest
    /// assignment is another one (or it was never claimed).
    pub fn of(&self, topic: &str, span: &Span) -> Result<Claim, SinkError> {
        match self.lock().get(&span.partition) {
            Some(claim) if claim.assignment == span.assignment => Ok(*claim),
            Some(claim) => Err(SinkError::Fenced(format!(
                "{topic}/{}: the records are of assignment {} of this member, and the \
                 partition was assigned again since (assignment {})",
                span.partition, span.assignment, claim.assignment
            ))),
            None => Err(SinkError::Fenced(format!(
                "{topic}/{}: this member holds no claim on the partition",
                span.partition
            ))),
        }
    }

    /// The write of `span` was committed: the destination now holds `span.next`, if the
    /// claim it was made under is still the latest.
    pub fn written(&self, span: &Span) {
        if let Some(claim) = self.lock().get_mut(&span.partition) {
            if claim.assignment == span.assignment {
                claim.written = Some(span.next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_of_an_earlier_assignment_is_fenced() {
        let claims = Claims::default();
        let claim = |assignment| Claim {
            assignment,
            token: 7,
            written: None,
        };
        let span = |assignment, next| Span {
            partition: 1,
            assignment,
            next,
        };
        assert!(matches!(
            claims.of("t", &span(3, 10)),
            Err(SinkError::Fenced(_))
        ));
        claims.set(1, claim(3));
        assert_eq!(claims.of("t", &span(3, 10)).map(|c| c.token).ok(), Some(7));
        claims.written(&span(3, 10));
        assert_eq!(
            claims.of("t", &span(3, 11)).ok().and_then(|c| c.written),
            Some(10)
        );
        // Revoked and assigned again: the old assignment's calls are refused, and what they
        // report written is ignored.
        claims.set(1, claim(4));
        assert!(matches!(
            claims.of("t", &span(3, 12)),
            Err(SinkError::Fenced(_))
        ));
        claims.written(&span(3, 12));
        assert_eq!(
            claims.of("t", &span(4, 12)).ok().and_then(|c| c.written),
            None
        );
    }
}
