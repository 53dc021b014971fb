//! A slow downstream for `kafkad-bench concurrency`: an HTTP server on loopback that answers
//! every POST with 200 after a fixed delay, each request waiting on its own (so N callers wait
//! side by side, as behind a real service), and keeps the message ids of each request in the
//! order the requests were answered: what the per-key order check reads.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

/// One answered request: when, and its (key, message id)s.
type Arrival = (Instant, Vec<(String, i64)>);

/// Requests by arrival.
type Arrivals = Arc<Mutex<Vec<Arrival>>>;

pub struct SlowDownstream {
    pub addr: SocketAddr,
    arrivals: Arrivals,
}

impl SlowDownstream {
    /// Serves on the current runtime until the bench ends.
    pub async fn start(delay: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let arrivals = Arrivals::default();
        let app = Router::new()
            .route("/ingest", post(ingest))
            .with_state((delay, Arc::clone(&arrivals)));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(SlowDownstream { addr, arrivals })
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Every (key, message id) received so far, in arrival order, with when it was answered.
    pub fn received(&self) -> Vec<(Instant, String, i64)> {
        let arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        arrivals
            .iter()
            .flat_map(|(at, ids)| ids.iter().map(move |(key, id)| (*at, key.clone(), *id)))
            .collect()
    }

    pub fn forget(&self) {
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// One request: answered after the delay, its ids recorded as it is answered.
async fn ingest(State((delay, arrivals)): State<(Duration, Arrivals)>, body: Bytes) -> StatusCode {
    tokio::time::sleep(delay).await;
    let ids = ids_of(&body);
    arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((Instant::now(), ids));
    StatusCode::OK
}

/// The (content, message id) of each message in a body (one message, or an array). The
/// content names the key: `kafkad-bench concurrency` writes `key <k>` into it.
fn ids_of(body: &[u8]) -> Vec<(String, i64)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let messages = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    messages
        .iter()
        .filter_map(|m| {
            let key = m["content"].as_str()?.to_owned();
            Some((key, m["message_id"].as_i64()?))
        })
        .collect()
}
