//! A slow downstream for `kafkad-bench concurrency`: an HTTP/1.1 server on loopback that
//! answers every POST with 200 after a fixed delay, one thread per connection (so N callers
//! wait side by side, as behind a real service), and keeps the message ids of each request in
//! the order the requests arrived: what the per-key order check reads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answered request: when, and its (key, message id)s.
type Arrival = (Instant, Vec<(String, i64)>);

/// Requests by arrival.
type Arrivals = Arc<Mutex<Vec<Arrival>>>;

pub struct SlowDownstream {
    pub addr: SocketAddr,
    arrivals: Arrivals,
}

impl SlowDownstream {
    pub fn start(delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let arrivals = Arrivals::default();
        let recorded = Arc::clone(&arrivals);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || serve(stream, delay, &recorded));
            }
        });
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

/// Requests on one kept-alive connection until the client closes it.
fn serve(stream: TcpStream, delay: Duration, arrivals: &Mutex<Vec<Arrival>>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        let ids = ids_of(&body);
        arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), ids));
        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
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
