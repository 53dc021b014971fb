//! The `http` sink: POSTs each record's value (single consumer) or each batch's as one JSON
//! array (batch consumer) to a URL. Any 2xx answer means processed. The value is what
//! [`payload::line::write_value`](crate::payload::line::write_value) makes of it: the
//! message for `kafka_message`, the value itself for `json` and the schema'd formats, a JSON
//! string for `text`, a base64 string for `bytes`.
//!
//! A blocking client on purpose ([`ureq`]): sinks run on the consumer's own thread, which may
//! block, and a blocking call needs no runtime. The agent keeps idle connections open
//! (keep-alive), so one consumer reuses one connection call after call.
//!
//! Failures say whether to retry (see [`SinkError::is_retryable`]): no answer (refused,
//! reset, timed out) and HTTP 408, 429 and 5xx are retryable; any other answer is the server
//! refusing the request for good. An answer's `Retry-After` goes into the error.
//!
//! Redirects are never followed, whatever their status: they are answers like any other
//! non-2xx, permanent failures whose error names where they pointed. Following a 301, 302
//! or 303 turns the POST into a GET without the body, so a 2xx to that GET would pass for
//! the message being delivered when it went nowhere. A 307 or 308 keeps the method and the
//! body, but following one would send the message, and with it the configured headers, to
//! a place the configuration does not name, on every request; the client used here does
//! not re-send a body on any redirect anyway. A redirecting URL is a configuration mistake
//! (http instead of https, a missing trailing slash, a moved ingress rule) that the error
//! points at, instead of one that silently costs a round trip per message.

use std::io::Read;
use std::time::{Duration, SystemTime};

use super::{HttpAnswer, Record, Sink, SinkError};
use crate::payload::line::write_value;
use crate::payload::Payload;

/// How much of an error answer's body the error keeps.
const BODY_KEPT: usize = 512;

/// POSTs messages as JSON.
pub struct HttpSink {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpSink {
    /// A sink posting to `url` (checked when the configuration was loaded), each request
    /// bounded by `timeout` from connecting to the end of the answer, with `headers` added.
    pub fn new(url: &str, timeout: Duration, headers: Vec<(String, String)>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Statuses are the sink's to judge (retryable or not), not transport errors.
            .http_status_as_error(false)
            // A redirect is returned as the answer it is (see the module docs); with a limit of
            // 0 the client follows none and returns the 3xx itself.
            .max_redirects(0)
            .build()
            .into();
        HttpSink {
            agent,
            url: url.to_owned(),
            headers,
            body: Vec::with_capacity(4096),
        }
    }

    fn post(&mut self) -> Result<(), SinkError> {
        let transport = |error: ureq::Error| SinkError::HttpTransport {
            url: self.url.clone(),
            reason: error.to_string(),
        };
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut answer = request.send(&self.body[..]).map_err(transport)?;
        let status = answer.status().as_u16();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location").filter(|_| (300..400).contains(&status));
        let retry_after = header("retry-after").and_then(|value| {
            parse_retry_after(&value, header("date").as_deref(), SystemTime::now())
        });
        // Read the answer to its end: only then can the connection serve the next request.
        let mut body = Vec::new();
        answer
            .body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_end(&mut body)
            .map_err(|e| SinkError::HttpTransport {
                url: self.url.clone(),
                reason: format!("reading the answer: {e}"),
            })?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        let cut = text
            .char_indices()
            .nth(BODY_KEPT)
            .map_or(text.len(), |(i, _)| i);
        Err(SinkError::HttpStatus {
            url: self.url.clone(),
            status,
            answer: Box::new(HttpAnswer {
                location,
                retry_after,
                body: text[..cut].trim().to_owned(),
            }),
        })
    }
}

/// The delay a `Retry-After` value asks for: a number of seconds, or an HTTP-date (any of
/// the three forms HTTP allows). A date counts from the answer's own `Date` when it has a
/// readable one, so a clock difference between the server and this host does not stretch
/// or shrink the delay; otherwise from `now`. A date already past asks for no delay.
/// `None` for a value that is neither.
fn parse_retry_after(value: &str, date: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 of seconds is no delay anyone means: ignored.
        return value.parse().ok().map(Duration::from_secs);
    }
    let until = httpdate::parse_http_date(value).ok()?;
    let from = date
        .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
        .unwrap_or(now);
    Some(until.duration_since(from).unwrap_or(Duration::ZERO))
}

impl Sink for HttpSink {
    /// The value as JSON: a message as the JSON object it was produced as.
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.body.clear();
        value_into(&mut self.body, &record.payload);
        self.post()
    }

    /// Another worker shares the agent, and with it the pool of kept-alive connections.
    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(HttpSink {
            agent: self.agent.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Vec::with_capacity(4096),
        }))
    }

    /// The batch as one JSON array of values, in batch order.
    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.body.clear();
        self.body.push(b'[');
        for (n, record) in batch.iter().enumerate() {
            if n > 0 {
                self.body.push(b',');
            }
            value_into(&mut self.body, &record.payload);
        }
        self.body.push(b']');
        self.post()
    }
}

/// Appends the JSON of a record's value; the seed's message through its own encoder, the
/// same bytes [`write_value`] gives, without serde's indirection.
fn value_into(body: &mut Vec<u8>, payload: &Payload<'_>) {
    match payload {
        Payload::Message(message) => message.encode_into(body),
        other => write_value(body, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        httpdate::parse_http_date(text).expect("an HTTP-date")
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", None, now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", None, now), Some(Duration::ZERO));
        for ignored in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(ignored, None, now), None, "{ignored:?}");
        }
    }

    #[test]
    fn retry_after_as_a_date_in_each_form_http_allows() {
        let now = at("Sun, 06 Nov 1994 08:49:00 GMT");
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
            "Sun Nov  6 08:49:37 1994",       // asctime
        ] {
            assert_eq!(
                parse_retry_after(form, None, now),
                Some(Duration::from_secs(37)),
                "{form}"
            );
        }
    }

    #[test]
    fn retry_after_as_a_date_counts_from_the_answers_own_date() {
        // The server's clock is an hour behind this host's: its Date says so.
        let now = at("Sun, 06 Nov 1994 09:49:00 GMT");
        let retry = "Sun, 06 Nov 1994 08:50:00 GMT";
        assert_eq!(
            parse_retry_after(retry, Some("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        // Without a readable Date, from this host's clock: already past, no delay.
        for date in [None, Some("yesterday")] {
            assert_eq!(parse_retry_after(retry, date, now), Some(Duration::ZERO));
        }
    }
}
