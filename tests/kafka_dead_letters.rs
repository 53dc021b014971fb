//! Dead letters on Apache Kafka (one broker, shared by this binary's tests): a copy the broker
//! refuses for good stops every member that meets the record, with one line naming it; a
//! record that reached the source topic only inside a compressed batch can still be
//! dead-lettered. (A copy refused for now needs a broker down: tests/kafka_broker_faults.rs.)
//! Each test ends by reconciling the good messages (lost = 0).

mod support;

use std::collections::HashSet;

use kafkad::reconcile::MessageKey;
use rdkafka::message::Message;
use support::kafka::KafkaCluster;
use support::offsets::committed;
use support::scenario::*;
use support::{header_text, message, produce_raw, produce_raw_with, read_topic, RawRecord};

fn cluster() -> &'static KafkaCluster {
    KafkaCluster::shared_of(1)
}

/// Good messages `ids` from producer `p`, as raw records.
fn good(p: &str, ids: std::ops::RangeInclusive<i64>) -> Vec<RawRecord> {
    ids.map(|id| RawRecord::value(message(p, id))).collect()
}

/// Bytes that are neither JSON nor compressible.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8 | 0x80
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

mod real_broker {
    use super::*;

    /// Policy: a dead-letter copy refused for good (here: too large for the dead-letter topic)
    /// stops the consumer with exit 1 and one line naming topic, partition, offset and cause,
    /// the record uncommitted. The partition then moves to the other member, which meets the
    /// same record and stops the same way: no member stays frozen behind green probes. Once
    /// the dead-letter topic is fixed, a restarted consumer copies the record and goes on.
    #[test]
    fn a_copy_refused_for_good_stops_every_member_that_meets_the_record() {
        let cluster = cluster();
        let scenario = Scenario::isolated(cluster, "dlq-permanent")
            .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "500");
        let dlq = format!("{}.dlq", scenario.topic);
        cluster.create_topic(&scenario.topic, 1, 1, &[]);
        cluster.create_topic(&dlq, 1, 1, &["max.message.bytes=1000"]);
        let mut records = good("p", 1..=5);
        records.push(RawRecord::value(noise(5000)));
        records.extend(good("p", 6..=10));
        runtime().block_on(produce_raw(&cluster.bootstrap, &scenario.topic, &records));

        let mut members = vec![
            scenario.consumer("single-1", "single-1"),
            scenario.consumer("single-2", "single-2"),
        ];
        for member in &mut members {
            let status = member.wait(CONSUME_TIMEOUT);
            let log = member.log_text();
            assert_eq!(status.code(), Some(1), "{}: {log}", member.name);
            let line = format!(
                "kafkad: cannot dead-letter the record at {}/0@5 to {dlq}:",
                scenario.topic
            );
            let stopped: Vec<&str> = log.lines().filter(|l| l.starts_with(&line)).collect();
            assert_eq!(stopped.len(), 1, "one line naming the record: {log}");
            assert!(stopped[0].contains("too large"), "{}", stopped[0]);
        }
        let committed = committed(
            &cluster.bootstrap,
            &scenario.single_group,
            &scenario.topic,
            1,
        );
        assert_eq!(
            committed,
            vec![Some(5)],
            "the bad record is not committed past"
        );

        // Fixed: the dead-letter topic takes records as large as the source topic.
        cluster.alter_topic(&dlq, "max.message.bytes=1048588");
        let produced: HashSet<MessageKey> = produced_ids("p", 10).collect();
        let mut restarted = scenario.consumer("single-1", "single-1-restarted");
        scenario.wait_for_group(
            &scenario.single_group,
            &["single-1", "single-2", "single-1-restarted"],
            &produced,
        );
        stop_gracefully(std::slice::from_mut(&mut restarted));
        let r = scenario.reconcile(&produced, &["single-1", "single-2", "single-1-restarted"]);
        print_reconciliation(
            "dead-letter copy refused for good, then the topic fixed",
            produced.len(),
            &[(scenario.single_group.clone(), r)].into(),
        );
        assert_eq!((r.lost, r.unexpected), (0, 0));
        let copies = read_topic(&cluster.bootstrap, &dlq, 1);
        assert_eq!(copies.len(), 1);
        assert_eq!(
            header_text(&copies[0], "kafkad.source.offset").as_deref(),
            Some("5")
        );
    }

    /// A 1.5 MB record is in the source topic (limit 1 MiB) only because its batch was
    /// compressed. It is too large for `max_record_bytes`, so it is dead-lettered; the copy is
    /// compressed like the producer's messages and fits. With compression turned off for the
    /// copy it cannot fit, and the consumer stops naming the record.
    #[test]
    fn a_too_large_record_that_fit_only_compressed_is_dead_lettered() {
        let cluster = cluster();
        let scenario = Scenario::isolated(cluster, "dlq-too-large")
            .with("KAFKAD_TOPIC__REPLICATION_FACTOR", "1")
            .with("KAFKAD_TOPIC__PARTITIONS", "1");
        let log = scenario.ensure_topic();
        assert!(log.contains("max.message.bytes=1048588"), "{log}");
        let big = vec![b'x'; 1_500_000];
        let mut records = good("p", 1..=2);
        records.push(RawRecord::value(big.clone()));
        records.extend(good("p", 3..=4));
        runtime().block_on(produce_raw_with(
            &cluster.bootstrap,
            &scenario.topic,
            &records,
            &[("compression.type", "lz4")],
        ));
        let dlq = format!("{}.dlq", scenario.topic);

        // Uncompressed, the copy cannot fit: a refusal for good, named.
        let mut uncompressed = scenario.start(
            "single-1",
            "single-uncompressed",
            &[("KAFKAD_KAFKA__COMPRESSION_TYPE", "none".to_owned())],
        );
        assert_eq!(uncompressed.wait(CONSUME_TIMEOUT).code(), Some(1));
        let log = uncompressed.log_text();
        assert!(
            log.contains(&format!(
                "cannot dead-letter the record at {}/0@2",
                scenario.topic
            )),
            "{log}"
        );

        let mut consumer = scenario.consumer("single-1", "single-1");
        let produced: HashSet<MessageKey> = produced_ids("p", 4).collect();
        scenario.wait_for_group(
            &scenario.single_group,
            &["single-uncompressed", "single-1"],
            &produced,
        );
        stop_gracefully(std::slice::from_mut(&mut consumer));
        let r = scenario.reconcile(&produced, &["single-uncompressed", "single-1"]);
        assert_eq!((r.lost, r.unexpected), (0, 0));
        let copies = read_topic(&cluster.bootstrap, &dlq, 1);
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].payload().map(<[u8]>::len), Some(big.len()));
        assert_eq!(
            header_text(&copies[0], "kafkad.error.kind").as_deref(),
            Some("too_large")
        );
    }
}
