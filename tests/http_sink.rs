//! The http sink against a local HTTP server: a redirect is a permanent failure naming where
//! it pointed, never followed (so no message is ever "delivered" by a GET without its body),
//! and a `Retry-After` reaches the error.

mod support;

use std::time::Duration;

use kafkad::message::KafkaMessage;
use kafkad::sink::http::HttpSink;
use kafkad::sink::{Record, Sink, SinkError};
use support::http_server::{Exchange, HttpServer, Reply};

fn record(id: i64) -> Record<'static> {
    Record {
        topic: "t",
        partition: 0,
        offset: id,
        payload: kafkad::payload::Payload::Message(KafkaMessage::new(id, "c", "p")),
        key: None,
        headers: None,
    }
}

fn sink(server: &HttpServer) -> HttpSink {
    HttpSink::new(&server.url(), Duration::from_secs(10), Vec::new())
}

fn reply(status: u16, headers: &[(&str, &str)]) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

/// Every redirect status, for a single message and for a batch: the sink reports the
/// redirect as a permanent failure, and the only request the server ever saw is the POST it
/// refused; `/moved`, which would accept anything (a GET without the body included), is
/// never asked.
#[test]
fn a_redirect_is_a_permanent_failure_and_never_followed() {
    for status in [301, 302, 303, 307, 308] {
        let server = HttpServer::start_with(move |request| match request.path {
            "/ingest" => reply(status, &[("Location", "/moved")]),
            _ => 200.into(),
        });
        let mut sink = sink(&server);
        let single = sink
            .process(&record(1))
            .expect_err("a redirect is no delivery");
        let batch = sink
            .process_batch(&[record(2), record(3)])
            .expect_err("a redirect is no delivery");
        for error in [single, batch] {
            match &error {
                SinkError::HttpStatus {
                    status: answered,
                    answer,
                    ..
                } => {
                    assert_eq!(*answered, status);
                    assert_eq!(answer.location.as_deref(), Some("/moved"));
                }
                other => panic!("{status}: {other}"),
            }
            assert!(!error.is_retryable(), "{status}: {error}");
            assert!(
                error.to_string().contains("redirecting to /moved"),
                "{error}"
            );
        }
        let posted = Exchange {
            method: "POST".into(),
            path: "/ingest".into(),
            status,
        };
        assert_eq!(server.exchanges(), [posted.clone(), posted], "{status}");
        assert!(server.accepted().is_empty(), "{status}");
    }
}

#[test]
fn retry_after_of_an_answer_reaches_the_error() {
    let server = HttpServer::start_with(|request| match request.number {
        1 => reply(503, &[("Retry-After", "7")]),
        // Ten seconds after the server's own clock, whatever this host's says.
        2 => reply(
            429,
            &[
                ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Retry-After", "Sun, 06 Nov 1994 08:49:47 GMT"),
            ],
        ),
        3 => reply(503, &[("Retry-After", "whenever")]),
        _ => 503.into(),
    });
    let mut sink = sink(&server);
    for expected in [
        Some(Duration::from_secs(7)),
        Some(Duration::from_secs(10)),
        None,
        None,
    ] {
        let error = sink.process(&record(1)).expect_err("503");
        assert!(error.is_retryable(), "{error}");
        assert_eq!(error.retry_after(), expected, "{error}");
    }
}
