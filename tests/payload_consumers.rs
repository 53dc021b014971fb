//! The consumers with a team's own data, on the mock cluster: every format decoded, a bad
//! value of each dead-lettered to its own topic's `<topic>.dlq` with its kind, and two topics
//! read at once, their partitions of the same numbers kept apart to the committed offsets.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafkad::config::Role;
use kafkad::sink::MemorySink;
use kafkad::telemetry::metrics::ReasonLabel;
use rdkafka::Message;
use serde_json::Value;
use support::offsets::OffsetReader;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One format's good value, its bad value and the kind the bad one is dead-lettered with.
struct Case {
    format: &'static str,
    good: Vec<u8>,
    bad: Vec<u8>,
    kind: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            format: "kafka_message",
            good: message("p", 1),
            bad: br#"{"message_id": 1, "content": "x"}"#.to_vec(),
            kind: "missing_field",
        },
        Case {
            format: "json",
            good: br#"{"order": 1, "items": [1, 2]}"#.to_vec(),
            bad: b"{not json".to_vec(),
            kind: "not_json",
        },
        Case {
            format: "text",
            good: "caf\u{e9} \t line".as_bytes().to_vec(),
            bad: vec![b'a', 0xff, b'b'],
            kind: "not_utf8",
        },
        // Not framed (no byte 0 and schema id): bad before any registry is asked.
        Case {
            format: "avro",
            good: Vec::new(),
            bad: b"plain".to_vec(),
            kind: "no_schema_id",
        },
    ]
}

/// Per format, two topics read as one list: each topic's good record reaches the sink with
/// its topic, and each bad one is copied to that topic's own dead-letter topic with its kind,
/// counted under its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_of_each_format_is_dead_lettered_to_its_own_topics_dlq() {
    let mock = MockTopology::start(1);
    for case in cases() {
        let topics = [format!("{}.a", case.format), format!("{}.b", case.format)];
        for topic in &topics {
            mock.cluster.create_topic(topic, 2, 2).expect("topic");
            mock.cluster
                .create_topic(&format!("{topic}.dlq"), 1, 2)
                .expect("dlq");
        }
        let mut good = 0;
        for topic in &topics {
            let mut records = vec![RawRecord {
                key: Some(format!("bad-{topic}").into_bytes()),
                headers: vec![("trace".to_owned(), topic.clone().into_bytes())],
                partition: Some(1),
                ..RawRecord::value(case.bad.clone())
            }];
            if !case.good.is_empty() {
                good += 1;
                records.push(RawRecord {
                    key: Some(format!("good-{topic}").into_bytes()),
                    partition: Some(1),
                    ..RawRecord::value(case.good.clone())
                });
            }
            produce_raw(&mock.bootstrap, topic, &records).await;
        }
        let list = topics.join(",");
        let group = format!("payload-{}", case.format);
        let mut extra = vec![
            ("topic", list.as_str()),
            ("consumer.format", case.format),
            ("kafka.group.id", group.as_str()),
        ];
        if case.format == "avro" {
            // Never asked: the bad value has no schema id to ask about.
            extra.push(("schema_registry.url", "http://127.0.0.1:9"));
        }
        let sink = MemorySink::default();
        let run = mock.single(sink.clone(), &extra);
        wait_until(&format!("{}: the dead letters", case.format), || {
            run.metrics.dead_lettered.get() == 2 && run.metrics.processed.get() == good
        });
        let decode_errors = run
            .metrics
            .decode_errors
            .get_or_create(&ReasonLabel { reason: case.kind })
            .get();
        run.stop().await.expect("the consumer stops cleanly");
        assert_eq!(decode_errors, 2, "{}: counted by reason", case.format);

        for topic in &topics {
            let copies = read_topic(&mock.bootstrap, &format!("{topic}.dlq"), 1);
            assert_eq!(
                copies.len(),
                1,
                "{topic}: one copy in its own dead-letter topic"
            );
            let copy = &copies[0];
            assert_eq!(copy.payload(), Some(case.bad.as_slice()), "{topic}");
            assert_eq!(
                copy.key(),
                Some(format!("bad-{topic}").as_bytes()),
                "{topic}"
            );
            assert_eq!(header_text(copy, "trace").as_deref(), Some(topic.as_str()));
            assert_eq!(
                header_text(copy, "kafkad.error.kind").as_deref(),
                Some(case.kind),
                "{topic}"
            );
            assert_eq!(
                header_text(copy, "kafkad.source.topic").as_deref(),
                Some(topic.as_str())
            );
            assert_eq!(
                header_text(copy, "kafkad.source.partition").as_deref(),
                Some("1")
            );
        }
        match case.format {
            "kafka_message" => assert_eq!(sink.lines().len(), 2),
            _ => {
                let seen: BTreeSet<String> = sink
                    .others()
                    .iter()
                    .map(|line| {
                        let line: Value = serde_json::from_str(line).expect("a JSON line");
                        assert_eq!(line["partition"], 1, "{line}");
                        line["topic"].as_str().expect("topic").to_owned()
                    })
                    .collect();
                let expected: BTreeSet<String> = match case.good.is_empty() {
                    true => BTreeSet::new(),
                    false => topics.iter().cloned().collect(),
                };
                assert_eq!(seen, expected, "{}", case.format);
            }
        }
    }
}

/// Two topics of two partitions each, read by one pattern, for both roles: partitions 0 and
/// 1 of one topic are not those of the other. Every record reaches the sink once with its
/// own topic, partition and offset, and each topic's offsets are committed to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topics_with_the_same_partition_numbers_are_kept_apart() {
    let mock = MockTopology::start(1);
    let topics = ["keep.left", "keep.right"];
    // Different counts per topic and partition: offsets of one mistaken for the other's
    // would commit the wrong figures.
    let counts: [[i64; 2]; 2] = [[30, 7], [11, 52]];
    let mut produced = BTreeSet::new();
    for (t, topic) in topics.iter().enumerate() {
        mock.cluster.create_topic(topic, 2, 2).expect("topic");
        for (partition, &count) in counts[t].iter().enumerate() {
            let records: Vec<RawRecord> = (0..count)
                .map(|n| RawRecord {
                    partition: Some(partition as i32),
                    key: Some(format!("{topic}-{partition}-{n}").into_bytes()),
                    ..RawRecord::value(format!("{{\"n\": {n}}}"))
                })
                .collect();
            produce_raw(&mock.bootstrap, topic, &records).await;
            for offset in 0..count {
                produced.insert((topic.to_string(), partition as i64, offset));
            }
        }
    }
    for role in [Role::Single, Role::Batch] {
        let group = format!("keep-{role}");
        let sink = MemorySink::default();
        let run = mock.consumer(
            role,
            sink.clone(),
            &[
                ("topic", r"^keep\.(left|right)$"),
                ("consumer.format", "json"),
                ("kafka.group.id", group.as_str()),
                ("batch.min_size", "5"),
                ("batch.max_wait", "100ms"),
            ],
        );
        wait_until(&format!("{role}: every record"), || {
            sink.others().len() >= produced.len()
        });
        // Let the last commit go out.
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.stop().await.expect("the consumer stops cleanly");

        let mut seen = BTreeMap::new();
        for line in sink.others() {
            let line: Value = serde_json::from_str(&line).expect("a JSON line");
            let at = (
                line["topic"].as_str().expect("topic").to_owned(),
                line["partition"].as_i64().expect("partition"),
                line["offset"].as_i64().expect("offset"),
            );
            let key = line["key"].as_str().expect("key");
            assert_eq!(key, format!("{}-{}-{}", at.0, at.1, line["value"]["n"]));
            *seen.entry(at).or_insert(0) += 1;
        }
        let seen_once: BTreeSet<_> = seen.keys().cloned().collect();
        assert_eq!(seen_once, produced, "{role}: lost or misplaced records");
        assert!(
            seen.values().all(|&n| n == 1),
            "{role}: duplicates {seen:?}"
        );

        let reader = OffsetReader::new(&mock.bootstrap, &group);
        for (t, topic) in topics.iter().enumerate() {
            let committed = reader.committed(topic, 2);
            let expected: Vec<Option<i64>> = counts[t].iter().map(|&c| Some(c)).collect();
            assert_eq!(committed, expected, "{role}: {topic} committed to its end");
        }
    }
}
