#!/usr/bin/env bash
# Installs what building, and with `test` testing, kafkad needs, once; every later run is a no-op.
#
#   scripts/install-deps.sh        the build: a C toolchain, pkg-config and python3 for
#                                  librdkafka's own build, OpenSSL and zlib headers (TLS, gzip).
#                                  `make demo` needs no more.
#   scripts/install-deps.sh test   the build, and what `make test` runs beside it: a JDK (17 or
#                                  newer) and Maven for the Apache Kafka test cluster
#                                  (scripts/kafka-cluster.sh), docker-compose to validate
#                                  docker-compose.yml (no engine needed), promtool (Debian's
#                                  prometheus package) for the alert rules and their unit tests,
#                                  and kubectl where the apt sources have it, to render the
#                                  kustomize overlays (Debian's own kubernetes-client 1.20
#                                  predates kustomize components, so it is not a substitute),
#                                  and Debian's postgresql server and the openssl command for
#                                  the postgres sink's tests (scripts/postgres.sh runs a
#                                  throwaway one, over TLS with --tls).
#   scripts/install-deps.sh bench  the build, and what `make bench` runs beside it: a JDK and
#                                  Maven for the Apache Kafka cluster, javac for the probe that
#                                  times Kafka's perf tools, python3's venv module for the
#                                  seed's Python client, and Debian's kcat where apt has it (the
#                                  file producer's comparison). Go, for the franz-go peer, is
#                                  used where it is installed and not installed here: without it
#                                  the bench skips that peer.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)

if [ "${1:-}" = test ] || [ "${1:-}" = bench ]; then
  java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
    need_apt+=(openjdk-17-jre-headless)
  fi
  command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
fi
if [ "${1:-}" = test ]; then
  command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
  # scripts/postgres.sh --tls makes its CA and server certificate with it.
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  if ! command -v kubectl >/dev/null 2>&1 && apt-cache show kubectl >/dev/null 2>&1; then
    need_apt+=(kubectl)
  fi
fi
if [ "${1:-}" = bench ]; then
  # Debian splits venv (and the pip it bootstraps) out of python3.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
  # A JRE has no compiler.
  command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
  # kcat -P, beside which the producer reading a file is measured, where the apt sources
  # have it (Debian does).
  if ! command -v kcat >/dev/null 2>&1 && apt-cache show kcat >/dev/null 2>&1; then
    need_apt+=(kcat)
  fi
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # Only what is named: Debian's docker-compose recommends the Docker engine itself (containerd,
  # runc: hundreds of MB) and prometheus its node exporter; nothing here uses either.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust from https://rustup.rs first" >&2
  exit 1
fi
