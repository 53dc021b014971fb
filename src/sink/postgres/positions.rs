//! The postgres sink's [`PositionStore`]: claiming partitions in the offsets table, on the
//! consumer's polling thread (see the parent module for what a claim fences).

use std::sync::Arc;

use super::schema::{connection_lost, database};
use super::{open, Connection, Shared};
use crate::sink::claims::Claim;
use crate::sink::{PositionStore, SinkError};

/// The offsets table, read and claimed on the consumer's polling thread.
pub(super) struct PostgresPositions {
    shared: Arc<Shared>,
    connection: Option<Connection>,
}

impl PostgresPositions {
    /// The store, on `connection` if there is one at hand.
    pub fn new(shared: Arc<Shared>, connection: Option<Connection>) -> Self {
        PostgresPositions { shared, connection }
    }

    /// Claims `partitions` (sorted) in one transaction: (partition, claim, next offset).
    fn try_claim(
        &mut self,
        topic: &str,
        partitions: &[(i32, u64)],
    ) -> Result<Vec<(i32, i64, Option<i64>)>, SinkError> {
        if self.connection.is_none() {
            self.connection = Some(open(&self.shared)?);
        }
        let Some(Connection { client, statements }) = &mut self.connection else {
            unreachable!("connected above");
        };
        let shared = &self.shared;
        let claim = statements
            .claim
            .as_ref()
            .expect("prepared for exactly_once");
        let claimed = (|| {
            let mut tx = client.transaction()?;
            let mut claimed = Vec::with_capacity(partitions.len());
            for &(partition, _) in partitions {
                let row =
                    tx.query_one(claim, &[&shared.group, &topic, &partition, &shared.member])?;
                claimed.push((partition, row.get(0), row.get(1)));
            }
            tx.commit()?;
            Ok(claimed)
        })();
        claimed.map_err(|e: postgres::Error| {
            if connection_lost(&e) {
                self.connection = None;
            }
            database(&format!("claiming partitions of {topic}"), &e)
        })
    }
}

impl PositionStore for PostgresPositions {
    fn claim(
        &mut self,
        topic: &str,
        partitions: &[(i32, u64)],
    ) -> Result<Vec<(i32, i64)>, SinkError> {
        let mut partitions = partitions.to_vec();
        partitions.sort_unstable();
        // One more try on a fresh connection: the spare one may have sat idle for long.
        let claimed = match self.try_claim(topic, &partitions) {
            Err(error) if self.connection.is_none() => {
                tracing::warn!(%error, "claiming failed; trying once more on a new connection");
                self.try_claim(topic, &partitions)?
            }
            other => other?,
        };
        let mut starts = Vec::with_capacity(claimed.len());
        for ((partition, token, next), (_, assignment)) in claimed.into_iter().zip(&partitions) {
            tracing::debug!(partition, assignment, claim = token, ?next, "claimed");
            self.shared.claims.set(
                partition,
                Claim {
                    assignment: *assignment,
                    token,
                    written: next,
                },
            );
            starts.extend(next.map(|next| (partition, next)));
        }
        Ok(starts)
    }
}
