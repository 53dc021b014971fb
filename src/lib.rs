//! kafkad: a Kafka worker daemon, the seed's Python producer/consumer system rebuilt as one
//! binary. See README.md for the tour (and docs/ for the reference); the modules, from the
//! outside in:
//!
//! * [`cli`], [`app`]: the command line and what each command does.
//! * [`roles`]: the roles: the producer, and the two consumer roles run on the consumer
//!   engine (`consume`).
//! * [`message`]: the `KafkaMessage` codec, the one place the wire format lives.
//! * [`payload`]: record values in every other format (`json`, `text`, `bytes`, the schema
//!   registry's), and what a sink writes for a record.
//! * [`config`]: layered configuration and librdkafka property handling.
//! * [`sink`], [`dlq`]: where processed and rejected records go; [`replay`]: a group's
//!   dead-lettered records through its sink again.
//! * [`shutdown`], [`client`], [`telemetry`]: what every role shares at run time.
//! * [`demo`], [`cluster`], [`reconcile`]: the embedded topology and its proof.
//!
//! The benchmark, `kafkad-bench` (the `bench/` crate of this workspace), measures the roles
//! through this same public surface.

pub mod app;
pub mod backoff;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
mod consume;
pub mod demo;
pub mod dlq;
pub mod message;
pub mod payload;
pub mod reconcile;
pub mod replay;
pub mod roles;
pub mod shutdown;
pub mod sink;
pub mod telemetry;
pub mod topic;
pub mod version;
