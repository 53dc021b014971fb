# kafkad: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed by scripts/install-deps.sh (idempotent): the demo needs only
# the build toolchain; the tests also need a JDK and Maven for the Apache Kafka test cluster.

CARGO ?= cargo

.PHONY: build release demo test lint fmt deps test-deps bench kafka

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh test
	@scripts/kafka-cluster.sh install

build: deps
	$(CARGO) build --release

release: build

# The seed topology on librdkafka's embedded mock cluster: 2 producers, 2 single and
# 2 batch consumers, then a reconciliation per group. Exits 0 only if nothing was lost.
# It runs the dev profile, whose build `make test` uses too: the demo takes about a second of CPU
# in either profile, and the release profile (`make build`, the container image) would be a
# longer build of its own. A first build takes about 2 minutes on 2 cores, most of it
# librdkafka's C library; cargo shows its progress.
demo: deps
	@echo "make demo: building kafkad (a fresh clone: about 2 minutes on 2 cores, mostly librdkafka)"
	$(CARGO) build --bin kafkad
	$(CARGO) run --quiet --bin kafkad -- demo

# Formatting, lints and every test: unit, mock-cluster integration, CLI, deployment files, the
# codec benchmarks run once each as tests, then the real-broker tests (tests named real_broker::*)
# on Apache Kafka with scripts/test-real-broker.sh: each test binary starts its own cluster with
# scripts/kafka-cluster.sh and runs its tests one at a time, two binaries at a time, and each
# binary's output is printed whole (topic descriptions, reconciliation tables). All of it builds
# the dev profile, as `make demo` does.
test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --lib --bins --tests -- --skip real_broker::
	$(CARGO) test --benches
	scripts/test-real-broker.sh

# A local 3-broker Apache Kafka cluster on 127.0.0.1:9092-9094 (KRaft, like the seed's) for
# trying config/*.toml by hand; Ctrl-C stops it.
kafka: test-deps
	scripts/kafka-cluster.sh run --port 9092

# kafkad against a raw-librdkafka reference, a codec-inclusive reference, the seed's Python
# system and, on Apache Kafka, franz-go and Kafka's own perf tools (kafkad-bench, the bench/
# crate), on the mock cluster and on a 3-broker Apache Kafka cluster, plus the codec's
# criterion benchmarks; writes BENCHMARKS.md (scripts/bench.sh, which installs a JDK, Maven,
# Kafka and the Python client as needed, and uses Go where it is installed).
bench: deps
	scripts/bench.sh

lint: deps
	$(CARGO) clippy --all-targets --workspace -- -D warnings

fmt:
	$(CARGO) fmt --all

.PHONY: image k8s-config k8s-rules

# The container image of deploy/Dockerfile (needs a Docker engine with BuildKit).
image:
	docker build -f deploy/Dockerfile -t kafkad:latest .

# kustomize reads files only from below deploy/k8s/, so its ConfigMap is generated from copies
# of config/*.toml kept there; tests/deploy.rs fails while they differ.
k8s-config:
	cp config/producer.toml config/single.toml config/batch.toml deploy/k8s/config/

# The same goes for the alert rules: the operator component's PrometheusRule is
# deploy/prometheus/alerts.yml (less its header comment) under a PrometheusRule header;
# tests/deploy_operations.rs fails while they differ.
k8s-rules:
	{ printf '%s\n' \
	    '# Generated from deploy/prometheus/alerts.yml by `make k8s-rules`: edit that file instead.' \
	    'apiVersion: monitoring.coreos.com/v1' 'kind: PrometheusRule' 'metadata:' '  name: kafkad' \
	    '  labels:' '    app.kubernetes.io/name: kafkad' 'spec:'; \
	  sed -e '/^#/d' -e 's/^\(.\)/  \1/' deploy/prometheus/alerts.yml; \
	} > deploy/k8s/components/operator/prometheusrule.yaml
