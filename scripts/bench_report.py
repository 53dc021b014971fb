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


def table(report, prefix):
    rows = [
        "| figure | reference (raw rdkafka) | kafkad | ratio kafkad/ref | better |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, better in FIGURES:
        k = report.get(f"{prefix}{key}")
        if k is None:
            continue
        r = report.get(f"reference_{prefix}{key}")
        ratio = report.get(f"ratio_{prefix}{key}")
        rows.append(f"| {label} | {fmt(r)} | {fmt(k)} | **{ratio:.3f}×** | {better} |")
    rows.append(
        f"| msgs/s of every run | {fmt(report.get(f'reference_{prefix}runs_msgs_per_s'))} "
        f"| {fmt(report.get(f'{prefix}runs_msgs_per_s'))} | | |"
    )
    rows.append(
        f"| startup s (not in the window) | {fmt(report.get(f'reference_{prefix}startup_s'))} "
        f"| {fmt(report.get(f'{prefix}startup_s'))} | | |"
    )
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


def headline():
    rows = [
        "| broker | producer msgs/s ratio | single msgs/s ratio | batch msgs/s ratio | peak RSS MiB kafkad (producer / single / batch) |",
        "|---|---:|---:|---:|---|",
    ]
    for broker, label in [("mock", "librdkafka mock cluster"), ("tansu", "tansu (real broker, loopback)")]:
        p, c = load(f"{broker}-produce"), load(f"{broker}-consume")
        if not p or not c:
            continue
        rss = " / ".join(fmt(v) for v in [p["peak_rss_mb"], c["single_peak_rss_mb"], c["batch_peak_rss_mb"]])
        rows.append(
            f"| {label} | {p['ratio_msgs_per_s']:.3f}× | {c['ratio_single_msgs_per_s']:.3f}× "
            f"| {c['ratio_batch_msgs_per_s']:.3f}× | {rss} |"
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
    for name in ["mock-produce", "mock-consume"]:
        report = load(name)
        if report:
            merged.update(report.get("settings", {}))
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in sorted(merged.items())]
    return "\n".join(rows)


print(f"""# Benchmarks

Written by `make bench` ({machine.get('date', '?')}, {machine.get('commit', '?')}); every
figure below is that run's output. The machine is shared and noisy: absolute numbers drift
between runs, the ratios measured within one run are what to compare. How to reproduce and
what each figure means are at the end; what was changed because of these figures, and what
holds the ratios back where they miss the target, is in "Analysis".

## Headline

Ratios are kafkad ÷ the raw-rdkafka reference, measured in the same invocation. Targets:
producer, single and batch consumer throughput ≥ 0.95×; peak RSS ≤ 64 MB per role.

{headline()}

## Machine and versions

| | |
|---|---|
| CPU | {machine.get('cpu', '?')} × {machine.get('nproc', '?')} (nproc) |
| memory | {machine.get('memory', '?')} |
| kernel | {machine.get('kernel', '?')} |
| kafkad | {machine.get('kafkad', '?')} |
| librdkafka | {machine.get('librdkafka', '?')} (rdkafka 0.39, bundled) |
| rustc | {machine.get('rustc', '?')} |
| tansu | {machine.get('tansu', '?')} (in-memory storage, one broker on loopback) |

## Settings

The roles' defaults, as `kafkad-bench` resolved them (both sides get the identical
librdkafka configuration); on the mock, `session.timeout.ms=6000` and
`heartbeat.interval.ms=500` (`kafkad::cluster::mock_settings`).

{settings()}

## Mock cluster (librdkafka's, 3 brokers, in the bench's parent process)

{section('mock-produce', 'Produce')}
{section('mock-consume', 'Consume')}
{section('mock-roundtrip', 'Roundtrip (default config)')}
{section('mock-roundtrip-short-wait', 'Roundtrip with fetch.wait.max.ms=5')}
## tansu (a Kafka-protocol broker in Rust, separate process, loopback)

{section('tansu-produce', 'Produce')}
{section('tansu-consume', 'Consume')}
{section('tansu-roundtrip', 'Roundtrip (default config)')}
## Codec (criterion, `benches/codec.rs`)

Target ≥ 1,000,000 messages/s per core for each of encode and decode of the seed message.

{codec()}
{analysis}""")
