//! A local HTTP/1.1 server for the http sink tests: std's `TcpListener` on 127.0.0.1:0,
//! hand-written request parsing, keep-alive, an answer (status and extra headers) chosen per
//! request by the test, and an outage switch that closes the port (connection refused) until
//! it is turned back on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server read it.
pub struct Request<'a> {
    /// Its number, from 1.
    pub number: usize,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

/// What the server answers: a status and extra header lines.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl From<u16> for Reply {
    fn from(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
        }
    }
}

/// Chooses the answer to a request.
pub type Answer = dyn Fn(&Request<'_>) -> Reply + Send + Sync;

/// A request's method and path, and the status it was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
}

struct State {
    answer: Box<Answer>,
    requests: AtomicUsize,
    /// Bodies of POSTs answered with a 2xx, in order, with when each answer was decided:
    /// what a sink delivered.
    accepted: Mutex<Vec<(Instant, Vec<u8>)>>,
    exchanges: Mutex<Vec<Exchange>>,
    /// Header lines of every request (lowercased names).
    headers: Mutex<Vec<Vec<(String, String)>>>,
    down: AtomicBool,
    stop: AtomicBool,
}

pub struct HttpServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl HttpServer {
    /// A server answering each request with the status `answer` picks from its number and
    /// body.
    pub fn start(answer: impl Fn(usize, &[u8]) -> u16 + Send + Sync + 'static) -> Self {
        Self::start_with(move |request| answer(request.number, request.body).into())
    }

    /// A server answering each request with what `answer` makes of it.
    pub fn start_with(answer: impl Fn(&Request<'_>) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            answer: Box::new(answer),
            requests: AtomicUsize::new(0),
            accepted: Mutex::default(),
            exchanges: Mutex::default(),
            headers: Mutex::default(),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || serve(listener, addr, shared));
        HttpServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Requests received while up.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> Vec<Vec<u8>> {
        let accepted = self.state.accepted.lock().expect("lock");
        accepted.iter().map(|(_, body)| body.clone()).collect()
    }

    /// As [`accepted`](Self::accepted), each body with when its answer was decided (before
    /// the sink could see it).
    pub fn accepted_at(&self) -> Vec<(Instant, Vec<u8>)> {
        self.state.accepted.lock().expect("lock").clone()
    }

    /// Every request received while up, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().expect("lock").clone()
    }

    pub fn headers(&self) -> Vec<Vec<(String, String)>> {
        self.state.headers.lock().expect("lock").clone()
    }

    /// Closes the port (new connections refused, open ones dropped) until [`Self::up`].
    pub fn down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(listener: TcpListener, addr: SocketAddr, state: Arc<State>) {
    let mut listener = Some(listener);
    while !state.stop.load(Ordering::SeqCst) {
        if state.down.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let Some(open) = &listener else {
            match TcpListener::bind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        open.set_nonblocking(true).expect("nonblocking");
        match open.accept() {
            Ok((stream, _)) => {
                let state = Arc::clone(&state);
                std::thread::spawn(move || connection(stream, state));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Serves requests on one connection until the client closes it or the server goes down.
fn connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        if state.down.load(Ordering::SeqCst) || state.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut request_line = line.split_whitespace();
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)));
        let mut headers = Vec::new();
        let mut length = 0usize;
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
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
        if state.down.load(Ordering::SeqCst) {
            return;
        }
        let number = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
        state.headers.lock().expect("lock").push(headers);
        let reply = (state.answer)(&Request {
            number,
            method: &method,
            path: &path,
            body: &body,
        });
        let status = reply.status;
        let answered = Instant::now();
        state.exchanges.lock().expect("lock").push(Exchange {
            method: method.clone(),
            path,
            status,
        });
        if (200..300).contains(&status) && method == "POST" {
            state.accepted.lock().expect("lock").push((answered, body));
        }
        let text = format!("status {status}");
        let extra: String = reply
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{extra}\r\n{text}",
            text.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
