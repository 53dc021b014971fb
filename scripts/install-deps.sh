#!/usr/bin/env bash
# Installs what building and testing kafkad needs, once; every later run is a no-op.
#  - Debian packages: a C toolchain and python3 for librdkafka's own build script, OpenSSL and
#    zlib headers (TLS, gzip), docker-compose for validating docker-compose.yml in tests.
#  - The test broker (tansu) is installed by scripts/test-broker.sh install (make test does).
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# tests/deploy.rs validates docker-compose.yml with `docker-compose config` (no engine needed).
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust from https://rustup.rs first" >&2
  exit 1
fi
