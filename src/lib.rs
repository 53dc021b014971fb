//! kafkad: a Kafka worker daemon.
pub mod config;
pub mod message;
