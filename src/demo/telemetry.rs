//! The demo's one `/metrics` endpoint: every instance's metrics under its own labels, as six
//! processes would export them.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::{DemoError, TOPIC};
use crate::telemetry::health::Health;
use crate::telemetry::http;
use crate::telemetry::metrics::RoleMetrics;

/// One registry for every instance, each under its own labels, as six processes would
/// export them; and the health the endpoint reports.
pub(super) struct DemoTelemetry {
    registry: Registry,
    health: Vec<Arc<Health>>,
}

impl DemoTelemetry {
    pub(super) fn new() -> Self {
        DemoTelemetry {
            registry: Registry::with_prefix("kafkad"),
            health: Vec::new(),
        }
    }

    pub(super) fn register(&mut self, group: Option<&str>, instance: &str, metrics: RoleMetrics) {
        let mut labels = vec![
            (
                Cow::Borrowed("role"),
                Cow::Borrowed(metrics.role().as_str()),
            ),
            (Cow::Borrowed("topic"), Cow::Borrowed(TOPIC)),
            (Cow::Borrowed("instance"), Cow::Owned(instance.to_owned())),
        ];
        if let Some(group) = group {
            labels.push((Cow::Borrowed("group"), Cow::Owned(group.to_owned())));
        }
        metrics.register(self.registry.sub_registry_with_labels(labels.into_iter()));
        // The demo is healthy and ready while its consumers are; producers finishing their
        // count is the normal course of the demo, not a failure.
        if let RoleMetrics::Consumer(..) = metrics {
            self.health.push(metrics.health());
        }
    }

    /// Serves `/metrics`, `/healthz`, `/readyz` on `addr`, if given.
    pub(super) async fn serve(
        self,
        addr: Option<SocketAddr>,
    ) -> Result<Option<http::Endpoint>, DemoError> {
        let Some(addr) = addr else {
            return Ok(None);
        };
        http::serve(addr, Arc::new(self.registry), self.health)
            .await
            .map(Some)
            .map_err(|source| DemoError::Listen { addr, source })
    }
}
