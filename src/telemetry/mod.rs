//! Logging, metrics, librdkafka statistics, health, the HTTP endpoint and periodic summaries.
pub mod clock;
pub mod health;
pub mod histogram;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod stats;
pub mod summary;
