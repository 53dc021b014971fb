//! A team's own data on Apache Kafka (one broker, shared by this binary's tests): the
//! producer reading a file of lines, read back byte for byte by a plain consumer and by a
//! kafkad single consumer of the `text` format; a consumer of two topics by a regular
//! expression with the `json` format, records of three shapes with keys and headers. Each
//! test prints its reconciliation (lost = 0).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use support::kafka::KafkaCluster;
use support::process::Kafkad;
use support::scenario::*;
use support::{produce_raw, read_topic, RawRecord};

fn cluster() -> &'static KafkaCluster {
    KafkaCluster::shared_of(1)
}

/// A record's value and headers as sent, by (topic, key).
type Sent = (serde_json::Value, Vec<(String, String)>);

/// The JSON lines a jsonl sink wrote so far (a line still being written is left out).
fn sink_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits until the consumer's sink holds `count` lines, then stops it gracefully.
fn consume_until(consumer: &mut Kafkad, sink: &std::path::Path, count: usize) {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while count_lines(sink) < count {
        assert!(
            consumer.running(),
            "the consumer stopped: {}",
            consumer.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "{} of {count} lines after {CONSUME_TIMEOUT:?}: {}",
            count_lines(sink),
            consumer.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A moment for duplicates, if any were coming, to show.
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(std::slice::from_mut(consumer));
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Line `n` of the test file: unique, of varied length and content (UTF-8 beyond ASCII,
/// quotes, backslashes, tabs, a `\r` before the line end, a NUL), every tenth one empty but
/// for its number, every thousandth a few kilobytes.
fn line(n: u64) -> String {
    let mut text = format!("{n:06}");
    match n % 10 {
        0 => {}
        1 => text.push_str("\tcafé \"quoted\" \\ back\\slash"),
        2 => text.push_str(" Сообщение 🚀 ✓"),
        3 => text.push_str(" trailing carriage return\r"),
        4 => text.push_str(" nul \u{0} inside"),
        _ => text.push_str(&" word".repeat((n % 37) as usize)),
    }
    if n % 1000 == 999 {
        text.push_str(&"x".repeat(4000));
    }
    text
}

mod real_broker {
    use super::*;

    /// 100,000 lines of a file through a kafkad producer process (the producer-1 service's
    /// environment, `source = { file }`, `format = "text"`) into a topic of 3 partitions; a
    /// plain consumer reads the topic back: every line once, byte for byte, each
    /// partition's lines in file order. The run ends by itself at the end of the file, exit 0.
    #[test]
    fn the_producer_sends_100000_lines_of_a_file_byte_for_byte() {
        const LINES: u64 = 100_000;
        let cluster = cluster();
        let scenario = Scenario::isolated(cluster, "file-producer");
        cluster.create_topic(&scenario.topic, 3, 1, &[]);
        let path = scenario.dir().join("lines.txt");
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
            for n in 1..=LINES {
                file.write_all(line(n).as_bytes()).expect("write");
                file.write_all(b"\n").expect("write");
            }
            file.flush().expect("flush");
        }

        let mut producer = scenario.start(
            "producer-1",
            "file-producer",
            &[
                ("KAFKAD_PRODUCER__SOURCE__FILE", path.display().to_string()),
                ("KAFKAD_PRODUCER__FORMAT", "text".to_owned()),
                ("KAFKAD_PRODUCER__RATE", "0".to_owned()),
                ("KAFKAD_PRODUCER__COUNT", "0".to_owned()),
            ],
        );
        let status = producer.wait(CONSUME_TIMEOUT);
        let log = producer.log_text();
        assert_eq!(status.code(), Some(0), "{}", producer.log_tail());
        assert_eq!(
            producer.logged_field("producer stopped", "lines"),
            Some(LINES),
            "{log}"
        );
        assert_eq!(producer_totals(&producer), (LINES, LINES, 0));

        let records = read_topic(&cluster.bootstrap, &scenario.topic, 3);
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut altered = 0;
        let mut last_per_partition: HashMap<i32, u64> = HashMap::new();
        for record in &records {
            let value = record.payload().expect("a value, never a tombstone");
            let Some(n) = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.get(..6))
                .and_then(|digits| digits.parse::<u64>().ok())
            else {
                altered += 1;
                continue;
            };
            if value != line(n).as_bytes() {
                altered += 1;
            }
            *seen.entry(n).or_default() += 1;
            let last = last_per_partition.entry(record.partition()).or_default();
            assert!(
                n > *last,
                "partition {} holds line {n} after line {last}",
                record.partition()
            );
            *last = n;
        }
        let lost = (1..=LINES).filter(|n| !seen.contains_key(n)).count();
        let duplicated: usize = seen.values().map(|count| count - 1).sum();
        println!("reconciliation: {LINES} lines in the file");
        println!(
            "{:<24}{:>10}{:>8}{:>12}{:>9}",
            "", "read back", "lost", "duplicates", "altered"
        );
        println!(
            "{:<24}{:>10}{:>8}{:>12}{:>9}",
            "plain consumer",
            records.len(),
            lost,
            duplicated,
            altered
        );
        assert_eq!((lost, duplicated, altered), (0, 0, 0));
        assert_eq!(records.len() as u64, LINES);

        // The same lines through a kafkad single consumer of the `text` format: each line is
        // the `value` of its jsonl line, byte for byte.
        let mut consumer = scenario.start(
            "single-1",
            "text-consumer",
            &[("KAFKAD_CONSUMER__FORMAT", "text".to_owned())],
        );
        let sink = scenario.sink("text-consumer");
        consume_until(&mut consumer, &sink, LINES as usize);
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut altered = 0;
        let lines = sink_lines(&sink);
        for written in &lines {
            let value = written["value"].as_str().unwrap_or_default();
            let Some(n) = value.get(..6).and_then(|digits| digits.parse::<u64>().ok()) else {
                altered += 1;
                continue;
            };
            if value != line(n) || written["topic"] != scenario.topic.as_str() {
                altered += 1;
            }
            *seen.entry(n).or_default() += 1;
        }
        let lost = (1..=LINES).filter(|n| !seen.contains_key(n)).count();
        let duplicated: usize = seen.values().map(|count| count - 1).sum();
        println!(
            "{:<24}{:>10}{:>8}{:>12}{:>9}",
            "single consumer (text)",
            lines.len(),
            lost,
            duplicated,
            altered
        );
        assert_eq!((lost, duplicated, altered), (0, 0, 0));
    }

    /// Two topics of 3 partitions, read by one kafkad single consumer through the regular
    /// expression `^<name>\.(orders|refunds)$` with the `json` format and the jsonl sink.
    /// Each record is one of three shapes (an object, an array, a string), with a key and two
    /// headers: every record's line holds its value, its key, its headers and its own topic.
    #[test]
    fn a_consumer_of_two_topics_by_pattern_carries_json_of_three_shapes_with_keys_and_headers() {
        const PER_TOPIC: usize = 600;
        let cluster = cluster();
        let scenario = Scenario::isolated(cluster, "pattern-json");
        let topics = ["pattern-json.orders", "pattern-json.refunds"];
        let mut expected: BTreeMap<(String, String), Sent> = BTreeMap::new();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        for topic in topics {
            cluster.create_topic(topic, 3, 1, &[]);
            let records: Vec<RawRecord> = (0..PER_TOPIC)
                .map(|n| {
                    let value = match n % 3 {
                        0 => serde_json::json!({"order": n, "topic": topic, "items": [{"sku": "a", "qty": n % 7}]}),
                        1 => serde_json::json!([n, "refund", null, true, {"nested": [n]}]),
                        _ => serde_json::json!(format!("note {n}: caf\u{e9} \"quoted\"")),
                    };
                    let key = format!("key-{n}");
                    let headers = vec![
                        ("trace".to_owned(), format!("trace-{topic}-{n}")),
                        ("shape".to_owned(), (n % 3).to_string()),
                    ];
                    expected.insert(
                        (topic.to_owned(), key.clone()),
                        (value.clone(), headers.clone()),
                    );
                    RawRecord {
                        key: Some(key.into_bytes()),
                        value: Some(serde_json::to_vec(&value).expect("json")),
                        headers: headers
                            .into_iter()
                            .map(|(name, value)| (name, value.into_bytes()))
                            .collect(),
                        partition: Some((n % 3) as i32),
                    }
                })
                .collect();
            runtime.block_on(produce_raw(&cluster.bootstrap, topic, &records));
        }
        let mut consumer = scenario.start(
            "single-1",
            "pattern-consumer",
            &[
                (
                    "KAFKAD_TOPIC__NAME",
                    r"^pattern-json\.(orders|refunds)$".to_owned(),
                ),
                ("KAFKAD_CONSUMER__FORMAT", "json".to_owned()),
            ],
        );
        let sink = scenario.sink("pattern-consumer");
        consume_until(&mut consumer, &sink, 2 * PER_TOPIC);

        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let (mut altered, mut missing_headers) = (0, 0);
        let lines = sink_lines(&sink);
        for written in &lines {
            let topic = written["topic"].as_str().unwrap_or_default().to_owned();
            let key = written["key"].as_str().unwrap_or_default().to_owned();
            let Some((value, headers)) = expected.get(&(topic.clone(), key.clone())) else {
                altered += 1;
                continue;
            };
            if &written["value"] != value {
                altered += 1;
            }
            let got: Vec<(String, String)> = written["headers"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|h| {
                            (
                                h["name"].as_str().unwrap_or_default().to_owned(),
                                h["value"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if &got != headers {
                missing_headers += 1;
            }
            *seen.entry((topic, key)).or_default() += 1;
        }
        let lost = expected.keys().filter(|k| !seen.contains_key(*k)).count();
        let duplicated: usize = seen.values().map(|count| count - 1).sum();
        println!(
            "reconciliation: {} records in 2 topics, read by the pattern",
            expected.len()
        );
        println!(
            "{:<24}{:>10}{:>8}{:>12}{:>9}{:>17}",
            "", "processed", "lost", "duplicates", "altered", "missing headers"
        );
        for topic in topics {
            let of_topic = |(t, _): &(String, String)| t == topic;
            let topic_lost = expected
                .keys()
                .filter(|k| of_topic(k) && !seen.contains_key(*k))
                .count();
            let topic_seen: usize = seen
                .iter()
                .filter(|(k, _)| of_topic(k))
                .map(|(_, n)| n)
                .sum();
            println!(
                "{:<24}{:>10}{:>8}{:>12}{:>9}{:>17}",
                topic, topic_seen, topic_lost, "", "", ""
            );
        }
        println!(
            "{:<24}{:>10}{:>8}{:>12}{:>9}{:>17}",
            "single consumer (json)",
            lines.len(),
            lost,
            duplicated,
            altered,
            missing_headers
        );
        assert_eq!((lost, duplicated, altered, missing_headers), (0, 0, 0, 0));
    }
}
