//! `kafkad-bench concurrency`: what `[consumer] concurrency` buys against a slow downstream.
//!
//! A topic is filled with `--messages` records over `--keys` keys; the single consumer role
//! (kafkad's own code, `ordering = "key"`, the http sink) reads it into a downstream that
//! answers every request after `--delay`, once with concurrency 1 and once with
//! `--concurrency`, each under a group of its own. Throughput is records over the time from
//! the first answer to the last; the downstream's arrival order is checked per key (no
//! record of a key before the one before it), and a broken order fails the run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafkad::cluster::{self, EmbeddedCluster};
use kafkad::config::{LoadRequest, Role};
use kafkad::message::KafkaMessage;
use kafkad::roles::{self, ConsumerConfig, ConsumerRole};
use kafkad::shutdown;
use kafkad::sink;
use kafkad::telemetry::metrics::ConsumerMetrics;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::cli::ConcurrencyArgs;
use crate::downstream::SlowDownstream;
use crate::BenchError;

const TOPIC: &str = "kafkad-bench-concurrency";

/// One consumer run's figures.
#[derive(Debug, Serialize)]
struct Run {
    concurrency: usize,
    messages: u64,
    msgs_per_s: f64,
    /// Records a key received before the record before it: must be 0.
    order_violations: usize,
}

pub async fn run(args: &ConcurrencyArgs, request: &LoadRequest) -> Result<(), BenchError> {
    kafkad::telemetry::logging::init_text("error");
    let cluster = EmbeddedCluster::start(3).map_err(BenchError::Cluster)?;
    cluster
        .create_topic(TOPIC, 3, 2)
        .map_err(BenchError::Cluster)?;
    let bootstrap = cluster.bootstrap_servers().to_owned();
    fill(&bootstrap, args.messages, args.keys).await?;
    let delay = Duration::from_millis(args.delay_ms);
    let downstream = SlowDownstream::start(delay)
        .await
        .map_err(|e| BenchError::Reference(format!("cannot start the downstream: {e}")))?;
    let mut runs = Vec::new();
    for concurrency in [1, args.concurrency] {
        eprintln!("bench: concurrency {concurrency} ...");
        downstream.forget();
        runs.push(consume(&bootstrap, request, &downstream, concurrency, args).await?);
    }
    let ratio = runs[1].msgs_per_s / runs[0].msgs_per_s;
    println!(
        "kafkad-bench concurrency: {} messages over {} keys, single role, ordering = \"key\", http sink answering after {:?}, mock cluster (3 brokers), topic 3 partitions",
        args.messages, args.keys, delay
    );
    println!(
        "{:<14}{:>12}{:>22}",
        "concurrency", "msgs/s", "per-key order broken"
    );
    for run in &runs {
        println!(
            "{:<14}{:>12.1}{:>22}",
            run.concurrency, run.msgs_per_s, run.order_violations
        );
    }
    println!(
        "concurrency {} / concurrency 1: {ratio:.2}x",
        args.concurrency
    );
    if args.json {
        let json = serde_json::json!({"workload": "concurrency", "delay_ms": args.delay_ms,
            "keys": args.keys, "runs": runs, "ratio": ratio});
        println!("{json}");
    }
    let broken: usize = runs.iter().map(|r| r.order_violations).sum();
    if broken > 0 {
        return Err(BenchError::Reference(format!(
            "{broken} records reached the downstream before the record before them of their key"
        )));
    }
    Ok(())
}

/// `messages` records, record `id` with key `k<id % keys>` and the key in its content.
async fn fill(bootstrap: &str, messages: u64, keys: u64) -> Result<(), BenchError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .map_err(BenchError::Cluster)?;
    let mut sends = Vec::with_capacity(messages as usize);
    for id in 1..=messages as i64 {
        let key = format!("k{}", id as u64 % keys);
        let value = KafkaMessage::new(id, key.clone(), "bench".to_owned()).encode();
        let record = FutureRecord::to(TOPIC).key(&key).payload(&value);
        let send = producer
            .send_result(record)
            .map_err(|(e, _)| BenchError::Reference(format!("cannot fill the topic: {e}")))?;
        sends.push(send);
    }
    for send in sends {
        match send.await {
            Ok(Ok(_)) => {}
            other => {
                return Err(BenchError::Reference(format!(
                    "cannot fill the topic: {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// Reads the whole topic into the downstream with `concurrency` sink calls at once.
async fn consume(
    bootstrap: &str,
    request: &LoadRequest,
    downstream: &SlowDownstream,
    concurrency: usize,
    args: &ConcurrencyArgs,
) -> Result<Run, BenchError> {
    let url = downstream.url();
    let group = format!(
        "kafkad-bench-concurrency-{concurrency}-{}",
        std::process::id()
    );
    let overrides = [
        ("topic.name", TOPIC.to_owned()),
        ("kafka.group.id", group),
        ("sink.kind", "http".to_owned()),
        ("sink.url", url),
        ("consumer.concurrency", concurrency.to_string()),
        ("consumer.ordering", "key".to_owned()),
    ];
    let settings = cluster::mock_settings(bootstrap, Role::Single, request, overrides)?;
    let sink = sink::SinkConfig::new(&settings, Role::Single)
        .open()
        .map_err(|e| BenchError::Reference(e.to_string()))?;
    let (stop, shutdown) = shutdown::channel();
    let consumer = tokio::spawn(roles::run_consumer(
        ConsumerConfig::new(&settings, ConsumerRole::Single),
        sink,
        ConsumerMetrics::default(),
        shutdown,
    ));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let received = loop {
        let received = downstream.received();
        let distinct: std::collections::HashSet<i64> = received.iter().map(|r| r.2).collect();
        if distinct.len() as u64 >= args.messages {
            break received;
        }
        if Instant::now() > deadline {
            stop.fire();
            return Err(BenchError::Reference(format!(
                "concurrency {concurrency}: {} of {} records after {}s",
                distinct.len(),
                args.messages,
                args.timeout_s
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.fire();
    consumer
        .await
        .map_err(|e| BenchError::Reference(e.to_string()))?
        .map_err(|source| BenchError::Role {
            phase: "concurrency",
            source,
        })?;
    let (first, last) = (received[0].0, received[received.len() - 1].0);
    let window = last.duration_since(first).as_secs_f64().max(1e-6);
    Ok(Run {
        concurrency,
        messages: args.messages,
        msgs_per_s: (received.len() - 1) as f64 / window,
        order_violations: order_violations(&received),
    })
}

/// Records that arrived before a lower id of their key had arrived.
fn order_violations(received: &[(Instant, String, i64)]) -> usize {
    let mut highest: HashMap<&str, i64> = HashMap::new();
    let mut broken = 0;
    for (_, key, id) in received {
        let seen = highest.entry(key.as_str()).or_insert(i64::MIN);
        if *id < *seen {
            broken += 1;
        }
        *seen = (*seen).max(*id);
    }
    broken
}
