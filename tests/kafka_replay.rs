//! `kafkad dlq replay` on Apache Kafka (one broker, shared by this binary's tests).
//!
//! Two groups, the single and the batch consumer, each dead-letter the records their downstream
//! refused, into one dead-letter topic. Once the downstream takes them, each group's replay
//! sends that group's dead letters, and only those, through that group's sink; a replay that
//! stopped resumes where it stopped. Each test reconciles every group's downstream with what
//! was produced: nothing lost, no record twice.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::kafka::KafkaCluster;
use support::offsets::{committed, OffsetReader};
use support::process::{read_jsonl, Kafkad};
use support::scenario::*;
use support::{message, produce_raw, read_topic, sent_keys, RawRecord};

fn cluster() -> &'static KafkaCluster {
    KafkaCluster::shared_of(1)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// A downstream behind the command sink: it appends the messages it is given to `out`, one
/// JSON line each, and refuses for good (exit 65) any call holding a message whose id is
/// listed in `out`.refuse.
struct Downstream {
    out: PathBuf,
    config: PathBuf,
}

const DOWNSTREAM: &str = r#"input=$(cat)
if [ -f "$1.refuse" ]; then
  while read -r id; do
    if printf '%s\n' "$input" | grep -q "\"message_id\":$id,"; then
      echo "message $id refused" >&2
      exit 65
    fi
  done < "$1.refuse"
fi
printf '%s\n' "$input" >> "$1"
"#;

impl Downstream {
    /// A downstream named `name` in `dir`, and a kafkad configuration file whose sink is it.
    fn new(dir: &Path, name: &str) -> Self {
        let script = dir.join("downstream.sh");
        std::fs::write(&script, DOWNSTREAM).expect("downstream script");
        let out = dir.join(format!("{name}-downstream.jsonl"));
        let config = dir.join(format!("{name}-sink.toml"));
        let command = toml::Value::Array(
            [
                "sh",
                &script.display().to_string(),
                &out.display().to_string(),
            ]
            .map(|arg| toml::Value::String(arg.to_owned()))
            .to_vec(),
        );
        std::fs::write(
            &config,
            format!(
                "[sink]\nkind = \"command\"\ncommand = {command}\ntimeout = \"10s\"\n\n\
                 [retry]\ninitial = \"100ms\"\nmax = \"500ms\"\nmax_attempts = 2\n"
            ),
        )
        .expect("sink config");
        Downstream { out, config }
    }

    fn refuse(&self, ids: &[i64]) {
        let list: String = ids.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(self.out.with_extension("jsonl.refuse"), list).expect("refuse list");
    }

    fn accept_all(&self) {
        let _ = std::fs::remove_file(self.out.with_extension("jsonl.refuse"));
    }

    fn received(&self) -> Vec<MessageKey> {
        let text = std::fs::read(&self.out).unwrap_or_default();
        let lines: Vec<Vec<u8>> = text
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        sent_keys(&lines)
    }

    /// The settings every kafkad process of this downstream's group gets.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKAD_CONFIG", self.config.display().to_string()),
            ("KAFKAD_SINK__KIND", "command".to_owned()),
        ]
    }
}

/// How many records `topic` holds (the sum of its partitions' high watermarks).
fn records_in(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let reader = OffsetReader::watermarks_only(bootstrap);
    (0..partitions)
        .map(|p| {
            reader
                .try_watermarks(topic, p)
                .map_or(0, |(low, high)| high - low)
        })
        .sum()
}

fn headers_of(record: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    record.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
            .collect()
    })
}

fn header(record: &OwnedMessage, key: &str) -> Option<String> {
    headers_of(record)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
}

/// Runs `kafkad dlq replay <args>` as `service`'s group and waits for it to exit; its exit code
/// and log.
fn replay(
    scenario: &Scenario<'_>,
    service: &str,
    name: &str,
    args: &[&str],
    extra: &[(&str, String)],
) -> (Option<i32>, String) {
    let all: Vec<&str> = ["dlq", "replay"].iter().chain(args).copied().collect();
    let mut process: Kafkad = scenario.start_with_args(service, name, &all, extra);
    let status = process.wait(CONSUME_TIMEOUT);
    (status.code(), process.log_text())
}

/// `replayed N dead-lettered record(s) ...` from a replay's log.
fn replayed(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix("replayed "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{log}"))
}

mod real_broker {
    use super::*;

    /// The old recipe piped the dead-letter topic back into the source topic: every group
    /// then got every group's copy of every record. Here the single and the batch group each
    /// dead-letter the 10 records their downstream refuses (and one that is not JSON); the
    /// single group's replay stops at the undecodable copy, uncommitted, and with
    /// `--reason processing_failed` completes; the batch group's replay stops on a record its
    /// downstream refuses again and resumes after. Each downstream ends with all 40 messages,
    /// each once; the dead-letter copies are byte for byte the records, keys (none included)
    /// and headers.
    #[test]
    fn each_group_replays_its_own_dead_letters_once_and_resumes_after_a_stop() {
        let cluster = cluster();
        let scenario =
            Scenario::isolated(cluster, "replay").with("KAFKAD_TOPIC__REPLICATION_FACTOR", "1");
        scenario.ensure_topic();
        let dlq = format!("{}.dlq", scenario.topic);
        let single = Downstream::new(scenario.dir(), "single");
        let batch = Downstream::new(scenario.dir(), "batch");
        let refused: Vec<i64> = (1..=40).filter(|id| id % 4 == 0).collect();
        single.refuse(&refused);
        batch.refuse(&refused);

        // Keys on most records, none on ids 4, 12, 20, ...; binary headers on every third.
        let mut records: Vec<RawRecord> = (1..=40)
            .map(|id| RawRecord {
                key: (id % 8 != 4).then(|| format!("key-{id}").into_bytes()),
                headers: if id % 3 == 0 {
                    vec![("trace".to_owned(), vec![0, 0xff, b'\t', b'\n', id as u8])]
                } else {
                    Vec::new()
                },
                ..RawRecord::value(message("p", id))
            })
            .collect();
        let not_json = RawRecord {
            key: Some(b"bad\tkey".to_vec()),
            value: Some(b"not json\n\tat all".to_vec()),
            headers: vec![("origin".to_owned(), b"legacy".to_vec())],
            partition: None,
        };
        records.insert(20, not_json);
        runtime().block_on(produce_raw(&cluster.bootstrap, &scenario.topic, &records));
        let produced: HashSet<MessageKey> = produced_ids("p", 40).collect();

        let mut consumers = vec![
            scenario.start("single-1", "single-1", &single.env()),
            scenario.start("batch-1", "batch-1", &batch.env()),
        ];
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while single.received().len() < 30
            || batch.received().len() < 30
            || records_in(&cluster.bootstrap, &dlq, 3) < 22
        {
            assert!(
                Instant::now() < deadline,
                "not every record processed or dead-lettered:\n{}",
                scenario.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // The brokers tell the members apart by client.id.
        for (group, role) in [
            (&scenario.single_group, "single"),
            (&scenario.batch_group, "batch"),
        ] {
            let members = cluster.tool(
                "kafka-consumer-groups",
                &["--describe", "--members", "--group", group],
            );
            assert!(
                members.contains(&format!(" kafkad-{role}-")),
                "{group}:\n{members}"
            );
        }
        stop_gracefully(&mut consumers);

        // The copies: one per group that rejected a record, each the record's own bytes.
        let copies = read_topic(&cluster.bootstrap, &dlq, 3);
        let originals: HashMap<Vec<u8>, &RawRecord> = records
            .iter()
            .map(|r| (r.value.clone().unwrap_or_default(), r))
            .collect();
        let mut per_group: BTreeMap<String, usize> = BTreeMap::new();
        for copy in &copies {
            let group = header(copy, "kafkad.consumer.group").expect("group header");
            *per_group.entry(group).or_default() += 1;
            let value = copy.payload().expect("a value").to_vec();
            let original = originals.get(&value).unwrap_or_else(|| {
                panic!("a copy of no record: {:?}", String::from_utf8_lossy(&value))
            });
            assert_eq!(copy.key().map(<[u8]>::to_vec), original.key, "key");
            let headers = headers_of(copy);
            assert_eq!(
                headers[..original.headers.len()],
                original.headers[..],
                "the record's own headers first"
            );
            assert!(headers[original.headers.len()..]
                .iter()
                .all(|(k, _)| k.starts_with("kafkad.")));
        }
        assert_eq!(
            per_group,
            BTreeMap::from([
                (scenario.batch_group.clone(), 11),
                (scenario.single_group.clone(), 11)
            ])
        );

        // The single group: every kind at first, which stops at the copy that never decodes,
        // then only what the downstream failed on.
        single.accept_all();
        let (code, log) = replay(&scenario, "single-1", "replay-single-1", &[], &single.env());
        assert_eq!(code, Some(1), "{log}");
        let stop = log
            .lines()
            .find(|l| l.starts_with("kafkad: the dead-letter copy at "))
            .unwrap_or_else(|| panic!("no line naming the copy:\n{log}"));
        assert!(
            stop.contains(&format!("(the record {}/", scenario.topic))
                && stop.contains("still does not decode")
                && stop.contains("--reason processing_failed"),
            "{stop}"
        );
        let (code, log) = replay(
            &scenario,
            "single-1",
            "replay-single-2",
            &["--reason", "processing_failed"],
            &single.env(),
        );
        assert_eq!(code, Some(0), "{log}");
        // The first run stopped at the copy that is not JSON, so this one reads it again and
        // passes it over (how many of the batch group's copies each run passed over depends
        // on where the first one stopped).
        assert!(log.contains(" of other groups, 1 of other kinds"), "{log}");

        // The batch group: its downstream refuses message 20 once more, and the replay stops
        // on it; run again once it takes it, the replay goes on from there.
        batch.refuse(&[20]);
        let reason = ["--reason", "processing_failed"];
        let (code, log) = replay(
            &scenario,
            "batch-1",
            "replay-batch-1",
            &reason,
            &batch.env(),
        );
        assert_eq!(code, Some(1), "{log}");
        assert!(
            log.lines().any(|l| l
                .starts_with("kafkad: the sink failed on the dead-letter copy at ")
                && l.contains("message 20 refused")),
            "{log}"
        );
        batch.accept_all();
        let (code, log) = replay(
            &scenario,
            "batch-1",
            "replay-batch-2",
            &reason,
            &batch.env(),
        );
        assert_eq!(code, Some(0), "{log}");
        let (code, log) = replay(
            &scenario,
            "batch-1",
            "replay-batch-3",
            &reason,
            &batch.env(),
        );
        assert_eq!((code, replayed(&log)), (Some(0), 0), "nothing left: {log}");

        let mut table = BTreeMap::new();
        for (group, downstream) in [
            (&scenario.single_group, &single),
            (&scenario.batch_group, &batch),
        ] {
            let r = reconcile(&produced, downstream.received());
            table.insert(group.clone(), r);
        }
        print_reconciliation(
            "each group's downstream after its own replay",
            produced.len(),
            &table,
        );
        for (group, r) in &table {
            assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{group}");
        }
        assert_eq!(
            records_in(&cluster.bootstrap, &dlq, 3),
            22,
            "a replay writes nothing"
        );
        let position = committed(
            &cluster.bootstrap,
            &format!("{}.replay", scenario.batch_group),
            &dlq,
            3,
        );
        let ends: Vec<Option<i64>> = {
            let reader = OffsetReader::watermarks_only(&cluster.bootstrap);
            (0..3)
                .map(|p| reader.try_watermarks(&dlq, p).ok().map(|(_, high)| high))
                .collect()
        };
        assert_eq!(
            position, ends,
            "the batch group's replay is at the end of every partition"
        );
    }

    /// `--since`: copies of the group dead-lettered before it are passed over (and stay
    /// behind the replay's position); the sink gets each replayed record with the partition
    /// and offset of the original.
    #[test]
    fn since_passes_older_copies_over() {
        let cluster = cluster();
        let scenario = Scenario::isolated(cluster, "replay-since");
        let dlq = format!("{}.dlq", scenario.topic);
        cluster.create_topic(&scenario.topic, 1, 1, &[]);
        cluster.create_topic(&dlq, 1, 1, &[]);
        let now = chrono::Utc::now().timestamp_millis();
        let hour = 3_600_000;
        // (message id, group, dead-lettered at)
        let copies = [
            (1, scenario.single_group.as_str(), now - 3 * hour),
            (2, "another-group", now - hour / 6),
            (3, scenario.single_group.as_str(), now - hour / 6),
        ];
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cluster.bootstrap)
            .create()
            .expect("producer");
        runtime().block_on(async {
            for (id, group, at) in copies {
                let value = message("p", id);
                let offset = (100 + id).to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "kafkad.error.kind",
                        value: Some("processing_failed"),
                    })
                    .insert(Header {
                        key: "kafkad.source.topic",
                        value: Some(scenario.topic.as_str()),
                    })
                    .insert(Header {
                        key: "kafkad.source.partition",
                        value: Some("0"),
                    })
                    .insert(Header {
                        key: "kafkad.source.offset",
                        value: Some(offset.as_str()),
                    })
                    .insert(Header {
                        key: "kafkad.consumer.group",
                        value: Some(group),
                    });
                producer
                    .send(
                        FutureRecord::<(), _>::to(&dlq)
                            .payload(&value)
                            .timestamp(at)
                            .headers(headers),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
            }
        });

        let jsonl = [("KAFKAD_SINK__KIND", "jsonl".to_owned())];
        let (code, log) = replay(
            &scenario,
            "single-1",
            "since-1h",
            &["--since", "1h"],
            &jsonl,
        );
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("replayed 1 dead-lettered record(s)")
                && log.contains("passed over: 1 of other groups, 0 of other kinds, 1 dead-lettered before --since"),
            "{log}"
        );
        let lines = read_jsonl(&scenario.sink("since-1h"));
        let got: Vec<(i64, i32, i64)> = lines
            .iter()
            .map(|l| (l.message_id, l.partition, l.offset))
            .collect();
        assert_eq!(got, [(3, 0, 103)], "the record at its source position");

        // The older copy is behind the position now: a replay without --since has nothing.
        let (code, log) = replay(&scenario, "single-1", "since-none", &[], &jsonl);
        assert_eq!((code, replayed(&log)), (Some(0), 0), "{log}");
        let r = reconcile(&HashSet::from([("p".to_owned(), 3)]), keys(&lines));
        print_reconciliation(
            "replay --since 1h",
            1,
            &BTreeMap::from([(scenario.single_group.clone(), r)]),
        );
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0));
    }
}
