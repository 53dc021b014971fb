//! The `KafkaMessage` codec on the seed's message, the one every record goes through.
//!
//! Target: at least 1,000,000 messages/s per core for each of encode and decode.
//! Criterion reports time per message and, through `Throughput::Elements(1)`, messages/s.
//! `make bench` runs these and copies the figures into BENCHMARKS.md.
//!
//! The seed's producers are Python: `datetime.now().isoformat()` writes a timestamp without
//! an offset (`2026-11-25T18:08:06.906824`), so that is the form measured here. kafkad's own
//! producer writes `...Z`; both are measured for decode.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafkad::message::{KafkaMessage, Timestamp};

/// The seed's message, as its Python producer writes it (json.dumps: ", " and ": ").
const SEED_PYTHON: &str = r#"{"message_id": 42, "content": "Message 42 from producer-1", "producer_id": "producer-1", "timestamp": "2026-11-25T18:08:06.906824", "metadata": {"source": "python"}}"#;

fn seed_message() -> KafkaMessage<'static> {
    KafkaMessage::decode(SEED_PYTHON.as_bytes())
        .expect("the seed message decodes")
        .into_owned()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    let message = seed_message();
    let mut buf = Vec::with_capacity(256);
    group.bench_function("encode_seed_python_timestamp", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&message).encode_into(&mut buf);
            black_box(buf.len())
        })
    });

    let mut zoned = seed_message();
    zoned.timestamp = Timestamp::parse("2026-11-25T18:08:06.906824Z").expect("valid");
    group.bench_function("encode_kafkad_zoned_timestamp", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&zoned).encode_into(&mut buf);
            black_box(buf.len())
        })
    });

    let bytes = SEED_PYTHON.as_bytes();
    group.bench_function("decode_seed_python_timestamp", |b| {
        b.iter(|| KafkaMessage::decode(black_box(bytes)).map(|m| black_box(m.message_id)))
    });

    let kafkad_bytes = zoned.encode();
    group.bench_function("decode_kafkad_zoned_timestamp", |b| {
        b.iter(|| KafkaMessage::decode(black_box(&kafkad_bytes)).map(|m| black_box(m.message_id)))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
