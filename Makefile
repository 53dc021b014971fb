# kafkad: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed by scripts/install-deps.sh (idempotent).

CARGO ?= cargo

.PHONY: build release demo test lint fmt deps bench

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release

release: build

# The seed topology on librdkafka's embedded mock cluster: 2 producers, 2 single and
# 2 batch consumers, then a reconciliation per group. Exits 0 only if nothing was lost.
demo: deps
	$(CARGO) run --release --quiet -- demo

# Formatting, lints and every test: unit, mock-cluster integration, CLI, deployment files, then
# the real-broker tests (tests named real_broker::*, each starting its own tansu on loopback),
# with their output shown so the reconciliation tables are in the log.
test: deps
	scripts/test-broker.sh install
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --lib --bins --tests -- --skip real_broker::
	$(CARGO) test --benches
	$(CARGO) test --tests -- --nocapture real_broker::

# kafkad against a raw-librdkafka reference on the mock cluster and on tansu (kafkad-bench, the
# bench/ crate), plus the codec's criterion benchmarks; writes BENCHMARKS.md (scripts/bench.sh).
bench: deps
	scripts/bench.sh

lint: deps
	$(CARGO) clippy --all-targets --workspace -- -D warnings

fmt:
	$(CARGO) fmt --all

.PHONY: image k8s-config

# The container image of deploy/Dockerfile (needs a Docker engine with BuildKit).
image:
	docker build -f deploy/Dockerfile -t kafkad:latest .

# kustomize reads files only from below deploy/k8s/, so its ConfigMap is generated from copies
# of config/*.toml kept there; tests/deploy.rs fails while they differ.
k8s-config:
	cp config/producer.toml config/single.toml config/batch.toml deploy/k8s/config/
