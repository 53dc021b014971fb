#!/usr/bin/env python3
"""Writes BENCHMARKS.md from what scripts/bench.sh measured (target/bench/).

Usage: bench_report.py OUT_DIR ANALYSIS.md > BENCHMARKS.md
Each OUT_DIR/<broker>-<workload>.txt holds one `kafkad-bench ... --json` output: the human
table, then the JSON line. codec.txt is criterion's output; machine.txt is key=value lines.
"""
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
analysis = Path(sys.argv[2]).read_text() if len(sys.argv) > 2 else ""


def load(name):
    path = out / f"{name}.txt"
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    return json.loads(lines[-1]) if lines else None


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


machine = {}
if (out / "machine.txt").exists():
    for line in (out / "machine.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        machine[key] = value

FIGURES = [
    ("msgs_per_s", "msgs/s", "higher"),
    ("mb_per_s", "MB/s (values)", "higher"),
    ("cpu_s", "CPU s (window)", "lower"),
    ("cpu_us_per_msg", "CPU µs/msg", "lower"),
    ("peak_rss_mb", "peak RSS MiB", "lower"),
    ("latency_p50_ms", "latency p50 ms", "lower"),
    ("latency_p95_ms", "latency p95 ms", "lower"),
    ("latency_p99_ms", "latency p99 ms", "lower"),
    ("latency_max_ms", "latency max ms", "lower"),
]


# The sides a comparison may have: (JSON prefix of its figures, column title, ratio prefix).
SIDES = [
    ("reference_", "reference (raw)", "ratio_"),
    ("codec_reference_", "reference + codec", "ratio_codec_"),
    ("", "kafkad", None),
    ("python_", "Python seed", "ratio_python_"),
    ("franz_go_", "franz-go", "ratio_franz_go_"),
    ("java_", "Kafka perf tool", "ratio_java_"),
    ("java_librdkafka_batch_", "Kafka perf tool, librdkafka batch.size", "ratio_java_librdkafka_batch_"),
]


def sides_of(report, prefix):
    return [side for side in SIDES if f"{side[0]}{prefix}msgs_per_s" in report]


def table(report, prefix):
    sides = sides_of(report, prefix)
    ratios = [side for side in sides if side[2]]
    head = ["figure"] + [title for _, title, _ in sides]
    head += [f"kafkad ÷ {title}" for _, title, _ in ratios] + ["better"]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(sides) + len(ratios)) + "---|"]
    for key, label, better in FIGURES:
        if report.get(f"{prefix}{key}") is None:
            continue
        cells = [label] + [fmt(report.get(f"{side}{prefix}{key}")) for side, _, _ in sides]
        for _, _, ratio in ratios:
            value = report.get(f"{ratio}{prefix}{key}")
            cells.append("-" if value is None else f"**{value:.3f}×**")
        rows.append("| " + " | ".join(cells + [better]) + " |")
    for key, label in [
        ("window_messages", "messages in the window"),
        ("runs_msgs_per_s", "msgs/s of every run"),
        ("median_msgs_per_s", "msgs/s of the median run"),
        ("tool_msgs_per_s", "msgs/s as the tool itself reports the best run"),
        ("startup_s", "startup s (not in the window)"),
    ]:
        if not any(f"{side}{prefix}{key}" in report for side, _, _ in sides):
            continue
        cells = [label] + [fmt(report.get(f"{side}{prefix}{key}")) for side, _, _ in sides]
        rows.append("| " + " | ".join(cells + [""] * (len(ratios) + 1)) + " |")
    return "\n".join(rows)


def section(name, title):
    report = load(name)
    if report is None:
        return f"### {title}\n\nnot measured (no target/bench/{name}.txt)\n"
    head = (
        f"### {title}\n\n`{report['messages']}` messages of {report['value_bytes']:.0f} bytes "
        f"(mean record value), {report['brokers']}, topic {report['partitions']} partitions "
        f"RF {report['replication_factor']}, best of {report['runs']} run(s) per side"
    )
    if "rate" in report:
        head += f", producer at {report['rate']:.0f} msgs/s"
    head += ".\n"
    parts = [head]
    if report["workload"] == "consume":
        parts.append("**single consumer**\n\n" + table(report, "single_"))
        parts.append("**batch consumer**\n\n" + table(report, "batch_"))
    else:
        parts.append(table(report, ""))
    return "\n\n".join(parts) + "\n"


def ratio_cell(report, key):
    value = report.get(key) if report else None
    return "-" if value is None else f"{value:.3f}×"


def roles(broker):
    p, c = load(f"{broker}-produce"), load(f"{broker}-consume")
    out = []
    if p:
        out.append(("producer", p, ""))
    if c:
        out += [("single", c, "single_"), ("batch", c, "batch_")]
    return out


def headline():
    rows = [
        "| broker | role | kafkad msgs/s | ÷ raw reference | ÷ reference + codec | CPU µs/msg kafkad (raw, + codec) | peak RSS MiB kafkad |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for broker, label in [("mock", "librdkafka mock cluster"), ("kafka", "Apache Kafka, 3 brokers")]:
        for role, report, p in roles(broker):
            cpu = (
                f"{fmt(report.get(f'{p}cpu_us_per_msg'))} "
                f"({fmt(report.get(f'reference_{p}cpu_us_per_msg'))}, "
                f"{fmt(report.get(f'codec_reference_{p}cpu_us_per_msg'))})"
            )
            rows.append(
                f"| {label} | {role} | {fmt(report.get(f'{p}msgs_per_s'))} "
                f"| **{ratio_cell(report, f'ratio_{p}msgs_per_s')}** "
                f"| **{ratio_cell(report, f'ratio_codec_{p}msgs_per_s')}** "
                f"| {cpu} | {fmt(report.get(f'{p}peak_rss_mb'))} |"
            )
    return "\n".join(rows)


def python_headline():
    rows = [
        "| role | kafkad msgs/s | Python msgs/s | throughput kafkad ÷ Python | CPU µs/msg kafkad / Python | CPU per message kafkad ÷ Python | peak RSS MiB kafkad / Python | RSS kafkad ÷ Python |",
        "|---|---:|---:|---:|---|---:|---|---:|",
    ]
    any_row = False
    for role, report, p in roles("kafka") + [("roundtrip at 1,000 msgs/s", load("kafka-roundtrip"), "")]:
        if not report or f"python_{p}msgs_per_s" not in report:
            continue
        any_row = True
        rows.append(
            f"| {role} | {fmt(report.get(f'{p}msgs_per_s'))} | {fmt(report.get(f'python_{p}msgs_per_s'))} "
            f"| **{ratio_cell(report, f'ratio_python_{p}msgs_per_s')}** "
            f"| {fmt(report.get(f'{p}cpu_us_per_msg'))} / {fmt(report.get(f'python_{p}cpu_us_per_msg'))} "
            f"| **{ratio_cell(report, f'ratio_python_{p}cpu_us_per_msg')}** "
            f"| {fmt(report.get(f'{p}peak_rss_mb'))} / {fmt(report.get(f'python_{p}peak_rss_mb'))} "
            f"| **{ratio_cell(report, f'ratio_python_{p}peak_rss_mb')}** |"
        )
    return "\n".join(rows) if any_row else "not measured"


# The peers, per role: (JSON prefix of the side, what the side is, for that role).
PEERS = {
    "producer": [
        ("franz_go_", "franz-go (pre-serialized values)"),
        ("java_", "ProducerPerformance at its defaults (`batch.size` 16,384)"),
        ("java_librdkafka_batch_", "ProducerPerformance with librdkafka's `batch.size` (1,000,000)"),
    ],
    "single": [
        ("franz_go_", "franz-go + encoding/json (decodes every record)"),
        ("java_", "ConsumerPerformance (decodes nothing)"),
    ],
    "batch": [
        ("franz_go_", "franz-go + encoding/json, a synchronous commit per batch"),
        ("java_", "ConsumerPerformance (decodes nothing, commits automatically)"),
    ],
}
KAFKAD_DOES = {
    "producer": "kafkad (encodes every message)",
    "single": "kafkad (decodes every record)",
    "batch": "kafkad (decodes every record, one commit on its way at a time)",
}


def median_of(report, side, p, key):
    return report.get(f"{side}{p}median_{key}")


def peers_headline():
    rows = [
        "| role | side | msgs/s | kafkad ÷ side | CPU µs/msg | CPU per message kafkad ÷ side | peak RSS MiB | RSS kafkad ÷ side |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    any_row = False
    for role, report, p in roles("kafka"):
        peers = [(side, label) for side, label in PEERS[role] if f"{side}{p}median_msgs_per_s" in report]
        if not peers and "franz_go" not in machine:
            continue
        any_row = True
        rows.append(
            f"| {role} | {KAFKAD_DOES[role]} | {fmt(median_of(report, '', p, 'msgs_per_s'))} | "
            f"| {fmt(median_of(report, '', p, 'cpu_us_per_msg'))} | "
            f"| {fmt(median_of(report, '', p, 'peak_rss_mb'))} | |"
        )
        for side, label in PEERS[role]:
            if f"{side}{p}median_msgs_per_s" not in report:
                if side == "franz_go_" and machine.get("franz_go", "").startswith("not measured"):
                    rows.append(f"| {role} | franz-go | {machine['franz_go']} | | | | | |")
                continue
            ratio = f"ratio_{side}{p}median_"
            rows.append(
                f"| {role} | {label} | {fmt(median_of(report, side, p, 'msgs_per_s'))} "
                f"| **{ratio_cell(report, ratio + 'msgs_per_s')}** "
                f"| {fmt(median_of(report, side, p, 'cpu_us_per_msg'))} "
                f"| **{ratio_cell(report, ratio + 'cpu_us_per_msg')}** "
                f"| {fmt(median_of(report, side, p, 'peak_rss_mb'))} "
                f"| **{ratio_cell(report, ratio + 'peak_rss_mb')}** |"
            )
    return "\n".join(rows) if any_row else "not measured"


# The targets against the peers: (role, what, JSON key of kafkad's median ratio, bound, at
# least or at most).
PEER_TARGETS = [
    ("producer", "msgs/s ≥ 1.1× franz-go's", "ratio_franz_go_median_msgs_per_s", 1.1, "min"),
    ("producer", "CPU per message ≤ 1.0× franz-go's", "ratio_franz_go_median_cpu_us_per_msg", 1.0, "max"),
    ("producer", "msgs/s ≥ 0.9× the raw reference's", "ratio_median_msgs_per_s", 0.9, "min"),
    ("single", "msgs/s ≥ 2.5× franz-go + encoding/json", "ratio_franz_go_single_median_msgs_per_s", 2.5, "min"),
    ("single", "msgs/s ≥ 0.8× ConsumerPerformance's", "ratio_java_single_median_msgs_per_s", 0.8, "min"),
    ("batch", "msgs/s ≥ 1.0× franz-go's", "ratio_franz_go_batch_median_msgs_per_s", 1.0, "min"),
    ("batch", "msgs/s ≥ 0.5× ConsumerPerformance's", "ratio_java_batch_median_msgs_per_s", 0.5, "min"),
]


def peer_targets():
    reports = {role: report for role, report, _ in roles("kafka")}
    rows = ["| role | target | kafkad ÷ peer (medians) | verdict |", "|---|---|---:|---|"]
    for role, what, key, bound, kind in PEER_TARGETS:
        value = reports.get(role, {}).get(key)
        if value is None:
            verdict = "not measured"
        else:
            met = value >= bound if kind == "min" else value <= bound
            verdict = "met" if met else "**missed**"
        rows.append(f"| {role} | {what} | {'-' if value is None else f'{value:.3f}×'} | {verdict} |")
    peaks = [
        (role, report.get(f"{p}median_peak_rss_mb"))
        for role, report, p in roles("kafka")
        if report.get(f"{p}median_peak_rss_mb") is not None
    ]
    if peaks:
        worst = max(value for _, value in peaks)
        figure = ", ".join(f"{role} {value:.1f}" for role, value in peaks)
        verdict = "met" if worst <= 64 else "**missed**"
        rows.append(f"| every role | kafkad's peak RSS ≤ 64 MiB | {figure} MiB | {verdict} |")
    return "\n".join(rows)


def latency_headline():
    rows = [
        "| broker, settings | side | p50 ms | p99 ms | max ms | kafkad p99 ÷ reference p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, label in [
        ("kafka-roundtrip", "Apache Kafka, role defaults"),
        ("mock-roundtrip", "mock, role defaults"),
        ("mock-roundtrip-short-wait", "mock, fetch.wait.max.ms=5"),
    ]:
        report = load(name)
        if not report:
            continue
        for side, title, _ in sides_of(report, ""):
            ratio = ratio_cell(report, "ratio_latency_p99_ms") if side == "" else ""
            rows.append(
                f"| {label} | {title} | {fmt(report.get(f'{side}latency_p50_ms'))} "
                f"| {fmt(report.get(f'{side}latency_p99_ms'))} | {fmt(report.get(f'{side}latency_max_ms'))} "
                f"| {'**' + ratio + '**' if ratio else ''} |"
            )
    return "\n".join(rows)


def concurrency():
    report = load("mock-concurrency")
    if not report:
        return "not measured"
    rows = [
        f"`kafkad-bench concurrency`: the single role, `ordering = \"key\"`, {report['keys']} keys, "
        f"the http sink into a server answering every request after {report['delay_ms']} ms, on the "
        "mock cluster; throughput from the first answer to the last, per-key order checked at "
        "the server. Target: concurrency 16 at least 8x concurrency 1.",
        "",
        "| concurrency | msgs/s | records before an earlier one of their key |",
        "|---:|---:|---:|",
    ]
    for run in report["runs"]:
        rows.append(f"| {run['concurrency']} | {fmt(run['msgs_per_s'])} | {run['order_violations']} |")
    rows.append("")
    rows.append(f"Concurrency {report['runs'][-1]['concurrency']} ÷ concurrency 1: **{report['ratio']:.2f}×**")
    return "\n".join(rows)


def produce_file():
    report = load("kafka-produce-file")
    if not report:
        return "not measured (`scripts/bench.sh file`)"
    best = report["best"]
    titles = {
        "kafkad": "kafkad producer, `source = { file }`, `format = \"json\"` (each line checked)",
        "kafkad-bytes": "kafkad producer, `format = \"bytes\"` (unchecked)",
        "kafka-console-producer": "`kafka-console-producer` (Kafka's own, Java)",
        "kcat": "`kcat -P` (Debian's)",
    }
    rows = [
        f"{report['lines']:,} lines ({report['bytes'] / 1e6:.0f} MB, the seed's message as one JSON "
        "line each) into a topic of 3 partitions, RF 3, `min.insync.replicas=2`, on the 3-broker "
        "Apache Kafka cluster, each side with `acks=all`, idempotence, lz4, `linger.ms=5`, one "
        "request in flight; timed from start to exit (start-up and the final flush included), "
        "every side's topic checked to hold every line; best of the runs per side"
        + (f" (measured {report['date']} at {report['commit']})." if "date" in report else "."),
        "",
        "| side | msgs/s | MB/s | CPU s | peak RSS MiB | kafkad (json) ÷ side, msgs/s | msgs/s of every run |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for side in ["kafkad", "kafkad-bytes", "kafka-console-producer", "kcat"]:
        if side not in best:
            if side == "kcat":
                rows.append(f"| {titles[side]} | not installed | | | | | |")
            continue
        run = best[side]
        ratio = report.get(f"ratio_{side}")
        every = ", ".join(fmt(r["msgs_per_s"]) for r in report["runs"] if r["side"] == side)
        rows.append(
            f"| {titles[side]} | {fmt(run['msgs_per_s'])} | {fmt(run['mb_per_s'])} | {fmt(run['cpu_s'])} "
            f"| {fmt(run['peak_rss_mb'])} | {'**' + f'{ratio:.2f}×' + '**' if ratio else ''} | {every} |"
        )
    return "\n".join(rows)


def codec():
    path = out / "codec.txt"
    if not path.exists():
        return "not measured\n"
    rows = ["| benchmark | time per message | messages/s (one core) |", "|---|---:|---:|"]
    name = None
    time = None
    for line in path.read_text().splitlines():
        m = re.match(r"^(codec/\S+)", line.strip())
        if m and "Benchmarking" not in line:
            name = m.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if t and name:
            time = t.group(1)
        th = re.search(r"thrpt:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if th and name and time:
            rows.append(f"| `{name}` | {time} | {th.group(1).replace('Melem/s', 'M')} |")
            name = time = None
    return "\n".join(rows) + "\n"


def settings():
    merged = {}
    for name in ["kafka-produce", "kafka-consume"]:
        report = load(name)
        if report:
            merged.update(report.get("settings", {}))
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in sorted(merged.items())]
    return "\n".join(rows)


print(f"""# Benchmarks

Written by `make bench` ({machine.get('date', '?')}, {machine.get('commit', '?')}); every
figure below is that run's output. The machine is shared and noisy (2 cores, shared with the
brokers): absolute numbers drift between runs, the ratios measured within one run are what to
compare. How to reproduce and what each figure means are at the end; what was changed because
of these figures, and what holds the ratios back where they miss the target, is in "Analysis".

## Headline

Each role runs beside two references in the same invocation, best of the runs per side:
the **raw reference** calls librdkafka directly with pre-serialized payloads and never looks at
what it consumes (the client's physical limit); the **codec reference** is the same loop that
also encodes each `KafkaMessage` with serde_json into a reused buffer and decodes each consumed
one. raw → codec is what the codec costs, codec → kafkad what kafkad's own loop costs. Targets:
on Apache Kafka, producer and both consumers ≥ 0.95× the raw reference; on the mock cluster,
every role ≥ 0.95× the codec reference; peak RSS ≤ 64 MB per role.

{headline()}

### Against the seed's Python system (Apache Kafka)

The seed's three loops rebuilt in Python on confluent-kafka with the settings its README lists
(`bench/python/seed_bench.py`), on the same cluster, in the same invocation. Throughput above 1×
and CPU or RSS below 1× favour kafkad. The seed's batch consumer commits synchronously every 10
messages, as the seed does, and is measured on the first 20,000 records of the topic.

{python_headline()}

### Against the clients users would pick instead (Apache Kafka)

The same cluster, the same invocation, each run a process of its own interleaved with
kafkad's; **the median run of each side** by throughput (of an even number of runs, the slower
middle one; the per-workload tables further down show each side's best run), peak RSS the
highest of a side's runs. Throughput above 1× and CPU or RSS below 1× favour kafkad.

* **franz-go** ({machine.get('franz_go', '?')}; `bench/go`): the producer with the seed's
  settings (acks=all, idempotence, lz4, `linger.ms` 5; franz-go cannot hold an idempotent
  producer to one request in flight: it allows 5 per broker) sending the raw reference's
  pre-serialized values; the consumers decode every record into the seed's `KafkaMessage` with
  encoding/json and fetch with the roles' settings, single marking each record for the
  automatic commit, batch committing each batch (the role's sizes) synchronously.
* **Kafka's perf tools** ({machine.get('java_tools', '?')}): `ProducerPerformance` with the
  seed's settings, once at the Java client's defaults and once with librdkafka's `batch.size`
  (kafkad's), values from the same file; `ConsumerPerformance` at its defaults (which fetch as
  librdkafka's do), reading the same topic as the consumers without looking inside a record.
  A probe in their clients times the same window as kafkad's (first acknowledgement to last;
  first record to the N-th): the tools' own figures, which include connecting, are in the
  tables further down. CPU is the JVM's, JIT compiler and garbage collector included.

{peers_headline()}

The targets against them, on this run's medians:

{peer_targets()}

### Concurrency against a slow downstream

{concurrency()}

### The producer reading a file

{produce_file()}

### End-to-end latency at 1,000 msgs/s (producer role → single consumer role)

{latency_headline()}

## Machine and versions

| | |
|---|---|
| CPU | {machine.get('cpu', '?')} × {machine.get('nproc', '?')} (nproc) |
| memory | {machine.get('memory', '?')} |
| kernel | {machine.get('kernel', '?')} |
| kafkad | {machine.get('kafkad', '?')} |
| librdkafka | {machine.get('librdkafka', '?')} (rdkafka 0.39, bundled) |
| rustc | {machine.get('rustc', '?')} |
| brokers | {machine.get('kafka', '?')} (scripts/kafka-cluster.sh: 3 combined broker+controller nodes in KRaft mode on 127.0.0.1, 512 MB heap each, on the same 2 cores); {machine.get('java', '?')} |
| Python seed | {machine.get('python', '?')} |
| franz-go peer | {machine.get('franz_go', '?')} |
| Kafka's perf tools | {machine.get('java_tools', '?')} |

## Settings

The roles' defaults, as `kafkad-bench` resolved them for Apache Kafka (every side but the
Python seed gets the identical librdkafka configuration; the seed sets only what its README
lists, and librdkafka's defaults apply to the rest). On the mock, `session.timeout.ms=6000` and
`heartbeat.interval.ms=500` (`kafkad::cluster::mock_settings`).

{settings()}

## Apache Kafka 3 brokers (KRaft, loopback)

{section('kafka-produce', 'Produce')}
{section('kafka-consume', 'Consume')}
{section('kafka-roundtrip', 'Roundtrip (role defaults)')}
## Mock cluster (librdkafka's, 3 brokers, in the bench's parent process)

{section('mock-produce', 'Produce')}
{section('mock-consume', 'Consume')}
{section('mock-roundtrip', 'Roundtrip (role defaults)')}
{section('mock-roundtrip-short-wait', 'Roundtrip with fetch.wait.max.ms=5')}
## Codec (criterion, `benches/codec.rs`)

Target ≥ 1,000,000 messages/s per core for each of encode and decode of the seed message.

{codec()}
{analysis}""")
