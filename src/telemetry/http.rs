//! The HTTP endpoint: Prometheus `/metrics`, `/healthz` and `/readyz`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use super::health::Health;
use super::metrics::RoleMetrics;

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Vec<Arc<Health>>,
}

/// A running endpoint; it serves until the process exits (or the handle is aborted), so that
/// probes see 503 during a graceful shutdown rather than a refused connection.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds `listen` (port 0 picks a free port) and serves. Health is the conjunction of every
/// `health` given (the demo runs several roles in one process).
pub async fn serve(
    listen: SocketAddr,
    registry: Arc<Registry>,
    health: Vec<Arc<Health>>,
) -> std::io::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { registry, health });
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "HTTP endpoint stopped");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(Endpoint { addr, task })
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    for health in &shared.health {
        health.refresh();
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &shared.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {error}\n"),
        ),
    }
}

fn status(ok: bool, yes: &'static str, no: &'static str) -> (StatusCode, &'static str) {
    if ok {
        (StatusCode::OK, yes)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, no)
    }
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.health.iter().any(|h| h.is_stalled()) {
        return status(false, "", "stalled: no progress within stall_timeout\n");
    }
    status(
        shared.health.iter().all(|h| h.is_alive()),
        "alive\n",
        "not running or shutting down\n",
    )
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    status(
        shared.health.iter().all(|h| h.is_ready()),
        "ready\n",
        "not ready\n",
    )
}

/// What labels a role's metrics besides its role: the topic (or the list or pattern of a
/// consumer of several) and a consumer's group.
#[derive(Debug, Clone)]
pub struct MetricLabels {
    pub topic: String,
    pub group: Option<String>,
}

/// A role's registry: its metrics under `kafkad_`, labelled with role, topic and (consumers)
/// group, as every process of the topology exports them.
pub fn role_registry(labels: &MetricLabels, metrics: &RoleMetrics) -> Registry {
    let mut pairs = vec![
        (
            Cow::Borrowed("role"),
            Cow::Borrowed(metrics.role().as_str()),
        ),
        (Cow::Borrowed("topic"), Cow::Owned(labels.topic.clone())),
    ];
    if let Some(group) = labels.group.as_ref().filter(|group| !group.is_empty()) {
        pairs.push((Cow::Borrowed("group"), Cow::Owned(group.clone())));
    }
    let mut registry = Registry::with_prefix_and_labels("kafkad", pairs.into_iter());
    metrics.register(&mut registry);
    registry
}

/// Serves a role's metrics and health on `listen` (`[http] listen`, or another address when
/// that one is taken); `None` when there is none (`""`).
pub async fn serve_role(
    labels: &MetricLabels,
    metrics: &RoleMetrics,
    listen: Option<SocketAddr>,
) -> Result<Option<Endpoint>, (SocketAddr, std::io::Error)> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let registry = Arc::new(role_registry(labels, metrics));
    serve(listen, registry, vec![metrics.health()])
        .await
        .map(Some)
        .map_err(|error| (listen, error))
}
