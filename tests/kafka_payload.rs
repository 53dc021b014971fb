//! A team's own data on Apache Kafka (one broker, shared by this binary's tests): the
//! producer reading a file of lines, read back byte for byte. Each test prints its
//! reconciliation (lost = 0).

mod support;

use std::collections::HashMap;
use std::io::Write;

use rdkafka::message::Message;
use support::kafka::KafkaCluster;
use support::read_topic;
use support::scenario::*;

fn cluster() -> &'static KafkaCluster {
    KafkaCluster::shared_of(1)
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
    }
}
