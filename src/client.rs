//! What every librdkafka client of kafkad shares: its log lines and errors go to `tracing`,
//! with secret values removed first (librdkafka's debug output can echo configuration), and
//! errors that retrying cannot fix are kept for the role to stop on.
//!
//! librdkafka retries every connection failure forever, which is right for a broker that is
//! down or restarting, and wrong for a TLS handshake that fails because the CA is not trusted,
//! a broker that refuses the client's certificate, or a SASL login with a wrong password: those
//! would retry silently for ever. Such errors
//! are recorded here; the roles check for one between messages and exit 1 with librdkafka's
//! own description, which names the broker and the cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::kafka::Redactor;
use crate::telemetry::logging::{self, Admission, RepeatLimiter, REPEAT_WINDOW};
use crate::telemetry::stats::ClientStats;

/// The base context: a client name for log lines, the redactor, where statistics go, the
/// first unrecoverable error, and what keeps repeated errors from flooding the log.
#[derive(Debug, Clone)]
pub struct ClientLog {
    name: String,
    redactor: Redactor,
    stats: Option<ClientStats>,
    failure: Arc<Failure>,
    reports: Arc<Reports>,
}

/// While no broker is reachable librdkafka reports every failed attempt, many a second. Each
/// distinct error is logged once when it happens, then at most once per [`REPEAT_WINDOW`]
/// with how often it happened meanwhile, and never twice for one occurrence.
#[derive(Debug)]
struct Reports {
    repeats: RepeatLimiter<ClientLine>,
    /// Where the previous error event's text was, and when it came.
    previous_event: Mutex<Option<(usize, usize, Instant)>>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            repeats: RepeatLimiter::new(REPEAT_WINDOW),
            previous_event: Mutex::default(),
        }
    }
}

/// rdkafka's producer hands each error event to the context twice in a row: its poll serves
/// the event, then the producer's own handling serves it again, with the very same text (the
/// same bytes, owned by the event). A call with the text of the previous one, at the same
/// address, this soon after it, is that second call. A new event with the same text is a new
/// allocation, or comes later (they are at least milliseconds apart).
const SAME_EVENT: Duration = Duration::from_millis(10);

impl Reports {
    /// Whether this call is rdkafka's second delivery of the previous error event.
    fn is_second_call(&self, reason: &str, now: Instant) -> bool {
        let Ok(mut previous) = self.previous_event.lock() else {
            return false;
        };
        let this = (reason.as_ptr() as usize, reason.len());
        let second = previous.is_some_and(|(at, len, seen)| {
            (at, len) == this && now.saturating_duration_since(seen) < SAME_EVENT
        });
        // A third such call would be a new event again.
        *previous = (!second).then_some((this.0, this.1, now));
        second
    }
}

/// A line of a client's log that may repeat, kept to log it again with its count.
#[derive(Debug, Clone)]
enum ClientLine {
    /// An error event: a warning when librdkafka recovers from it by itself, else an error.
    Error {
        error: String,
        reason: String,
        warning: bool,
    },
    /// One of librdkafka's log lines, at warning level or worse.
    Log {
        level: RDKafkaLogLevel,
        facility: String,
        message: String,
    },
}

impl ClientLine {
    fn log(&self, client: &str, repeated: Option<u64>) {
        match self {
            ClientLine::Error {
                error,
                reason,
                warning: true,
            } => tracing::warn!(client, %error, repeated, "{reason}"),
            ClientLine::Error { error, reason, .. } => {
                tracing::error!(client, %error, repeated, "{reason}")
            }
            ClientLine::Log {
                level,
                facility,
                message,
            } => logging::librdkafka_line(*level, facility, message, client, repeated),
        }
    }
}

/// What makes two reports the same error: where they come from (an error code, a log
/// facility) and librdkafka's text without the part that changes with every repeat, "(after
/// 5ms in state CONNECT, 3 identical error(s) suppressed)".
fn repeat_key(source: &str, text: &str) -> String {
    let text = text.rfind(" (after ").map_or(text, |at| &text[..at]);
    format!("{source}: {text}")
}

/// The first error retrying cannot fix. The flag keeps the per-message check to one load.
#[derive(Debug, Default)]
struct Failure {
    happened: AtomicBool,
    description: Mutex<Option<String>>,
    /// The last librdkafka log line at error level: consumers receive errors from `poll`
    /// as bare codes ("SSL error"), and this line holds the broker and the cause.
    last_error_line: Mutex<Option<String>>,
}

/// Errors that mean the configuration cannot work (trust, credentials), not that a broker is
/// away for now.
pub fn is_unrecoverable(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    )
}

/// Whether a transport failure is the broker refusing this client's side of the TLS
/// handshake: a missing or untrusted client certificate where the listener requires one. The
/// broker answers with a TLS alert and closes; librdkafka reports that as a transport failure
/// carrying OpenSSL's "SSL alert number N". Retrying sends the same certificate again.
pub fn is_refused_by_tls_alert(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    code == Some(RDKafkaErrorCode::BrokerTransportFailure) && reason.contains("SSL alert number")
}

impl ClientLog {
    pub fn new(name: impl Into<String>, redactor: Redactor) -> Self {
        ClientLog {
            name: name.into(),
            redactor,
            stats: None,
            failure: Arc::default(),
            reports: Arc::default(),
        }
    }

    /// The first unrecoverable error this client reported, if any.
    pub fn failure(&self) -> Option<String> {
        if !self.failure.happened.load(Ordering::Relaxed) {
            return None;
        }
        self.failure.description.lock().ok().and_then(|d| d.clone())
    }

    /// The best description of why the client cannot connect: the error callback's, else
    /// librdkafka's last error log line.
    pub fn failure_description(&self) -> Option<String> {
        self.failure().or_else(|| {
            self.failure
                .last_error_line
                .lock()
                .ok()
                .and_then(|l| l.clone())
        })
    }

    fn record_failure(&self, description: String) {
        if let Ok(mut slot) = self.failure.description.lock() {
            slot.get_or_insert(description);
        }
        self.failure.happened.store(true, Ordering::Relaxed);
    }

    /// Feeds librdkafka statistics into `stats` (needs `statistics.interval.ms`).
    pub fn with_stats(mut self, stats: ClientStats) -> Self {
        self.stats = Some(stats);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.redactor.redact(text)
    }

    /// Logs `line` unless it repeats an error logged less than a window ago, and the counts
    /// of errors whose window is over.
    fn report(&self, key: &str, line: ClientLine) {
        let now = Instant::now();
        if let Admission::Log { repeated } = self.reports.repeats.admit(key, &line, now) {
            line.log(&self.name, repeated);
        }
        self.log_overdue(now);
    }

    /// Logs the errors that kept repeating until their window was over, with their counts.
    fn log_overdue(&self, now: Instant) {
        for (line, held_back) in self.reports.repeats.overdue(now) {
            line.log(&self.name, Some(held_back));
        }
    }
}

impl ClientContext for ClientLog {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(stats) = &self.stats {
            stats.observe(&statistics);
        }
        // Statistics come every statistics.interval.ms, also when nothing else happens: the
        // counts of errors that stopped are logged then.
        self.log_overdue(Instant::now());
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = self.redactor.redact(message);
        let error_level = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        );
        if error_level {
            if let Ok(mut last) = self.failure.last_error_line.lock() {
                *last = Some(message.clone().into_owned());
            }
            // librdkafka logs a broker's failure at error level as a FAIL line and raises an
            // error event with the same text, which `error` logs with its code.
            if facility == "FAIL" {
                return;
            }
        }
        if error_level || matches!(level, RDKafkaLogLevel::Warning) {
            let key = repeat_key(facility, &message);
            let line = ClientLine::Log {
                level,
                facility: facility.to_owned(),
                message: message.into_owned(),
            };
            self.report(&key, line);
        } else {
            logging::librdkafka_line(level, facility, &message, &self.name, None);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.reports.is_second_call(reason, Instant::now()) {
            return;
        }
        let reason = self.redactor.redact(reason);
        let code = error.rdkafka_error_code();
        let fatal = is_unrecoverable(code) || is_refused_by_tls_alert(code, &reason);
        if fatal {
            self.record_failure(reason.clone().into_owned());
        }
        // Transport errors while a broker is down repeat every retry; they are expected and
        // librdkafka recovers by itself, so they are warnings. Anything else is an error.
        let warning = !fatal
            && matches!(
                code,
                Some(
                    RDKafkaErrorCode::BrokerTransportFailure
                        | RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::Resolve
                )
            );
        let key = match code {
            // "1/1 brokers are down", "0/1 brokers are down": the counts follow librdkafka's
            // view of its brokers from one report to the next; the error is the same.
            Some(RDKafkaErrorCode::AllBrokersDown) => repeat_key("AllBrokersDown", ""),
            _ => repeat_key(&format!("{code:?}"), &reason),
        };
        let line = ClientLine::Error {
            error: error.to_string(),
            reason: reason.into_owned(),
            warning,
        };
        self.report(&key, line);
    }
}

/// Serves `client`'s main queue once, without waiting: librdkafka's log lines and error
/// events go to the client's context, as a consumer's or producer's own poll does. rdkafka's
/// `AdminClient` polls only its admin results; without this, an admin client never shows a
/// librdkafka log line, and an untrusted certificate or a refused login never reaches
/// [`ClientLog`]'s error handling, so it looks like a broker that is merely unreachable.
pub fn serve_main_queue<C: ClientContext>(client: &rdkafka::client::Client<C>) {
    use rdkafka::bindings as rdsys;
    use std::ffi::CStr;

    let text = |ptr: *const std::ffi::c_char| -> String {
        if ptr.is_null() {
            String::new()
        } else {
            // SAFETY: librdkafka hands out NUL-terminated strings owned by the event, which
            // is alive here; the text is copied before the event is destroyed.
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .trim()
                .to_owned()
        }
    };
    // SAFETY: the native handle is alive as long as `client`. The queue reference and every
    // event polled from it are destroyed here, each exactly once, after their last use.
    unsafe {
        let queue = rdsys::rd_kafka_queue_get_main(client.native_ptr());
        if queue.is_null() {
            return;
        }
        loop {
            let event = rdsys::rd_kafka_queue_poll(queue, 0);
            if event.is_null() {
                break;
            }
            match rdsys::rd_kafka_event_type(event) {
                rdsys::RD_KAFKA_EVENT_LOG => {
                    let mut facility = std::ptr::null();
                    let mut message = std::ptr::null();
                    let mut level = 0;
                    if rdsys::rd_kafka_event_log(event, &mut facility, &mut message, &mut level)
                        == 0
                    {
                        client
                            .context()
                            .log(log_level(level), &text(facility), &text(message));
                    }
                }
                rdsys::RD_KAFKA_EVENT_ERROR => {
                    let code = rdsys::rd_kafka_event_error(event);
                    let reason = text(rdsys::rd_kafka_event_error_string(event));
                    client
                        .context()
                        .error(KafkaError::Global(code.into()), &reason);
                }
                // Statistics and anything else: nothing to do for an admin client.
                _ => {}
            }
            rdsys::rd_kafka_event_destroy(event);
        }
        rdsys::rd_kafka_queue_destroy(queue);
    }
}

/// A syslog level as librdkafka reports it.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// Implements `ClientContext` for a context that wraps a [`ClientLog`] in the field `$field`:
/// logs, errors and statistics all go through it. (A context that forgot `stats` would fall
/// back to rdkafka's default, which logs the whole statistics struct at INFO.)
#[macro_export]
macro_rules! delegate_client_context {
    ($context:ty, $field:ident) => {
        impl rdkafka::ClientContext for $context {
            fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
                rdkafka::ClientContext::log(&self.$field, level, facility, message);
            }

            fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
                rdkafka::ClientContext::error(&self.$field, error, reason);
            }

            fn stats(&self, statistics: rdkafka::Statistics) {
                rdkafka::ClientContext::stats(&self.$field, statistics);
            }
        }
    };
}

/// Waits up to `timeout` for every librdkafka client of this process, and every thread
/// librdkafka started, to be gone; whether they are.
///
/// A process must not exit while a client lives: exiting runs the C library's exit handlers,
/// OpenSSL's clean-up among them, under librdkafka threads that may be inside a TLS
/// handshake, and the heap is corrupted (an abort instead of the exit code).
pub fn all_closed_within(timeout: Duration) -> bool {
    let millis = std::os::raw::c_int::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: takes no pointer; only reads librdkafka's global counts of clients and threads.
    unsafe { rdkafka::bindings::rd_kafka_wait_destroyed(millis) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many occurrences of each error the client counted and did not log yet: what a
    /// window's end would report.
    fn held_back(log: &ClientLog) -> Vec<u64> {
        let after_the_window = Instant::now() + REPEAT_WINDOW;
        let mut counts: Vec<u64> = log
            .reports
            .repeats
            .overdue(after_the_window)
            .into_iter()
            .map(|(_, count)| count)
            .collect();
        counts.sort_unstable();
        counts
    }

    fn all_brokers_down() -> KafkaError {
        KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)
    }

    #[test]
    fn rdkafkas_second_call_for_one_error_event_is_not_a_repeat() {
        let log = ClientLog::new("producer p", Redactor::default());
        // Three events, each handed over twice with the same bytes, as rdkafka's producer
        // does: one logged, two held back.
        for down in [
            "1/1 brokers are down",
            "0/1 brokers are down",
            "1/1 brokers are down",
        ] {
            let event_text = down.to_owned();
            log.error(all_brokers_down(), &event_text);
            log.error(all_brokers_down(), &event_text);
        }
        assert_eq!(held_back(&log), [2]);

        // A consumer's events come once each, however alike: every one counts.
        let log = ClientLog::new("consumer g", Redactor::default());
        let events: Vec<String> = (0..3).map(|_| "1/1 brokers are down".to_owned()).collect();
        for event_text in &events {
            log.error(all_brokers_down(), event_text);
        }
        assert_eq!(held_back(&log), [2]);
    }

    #[test]
    fn a_fail_line_is_left_to_its_error_event_and_still_describes_the_failure() {
        let log = ClientLog::new("consumer g", Redactor::default());
        let text =
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: certificate verify failed";
        log.log(RDKafkaLogLevel::Error, "FAIL", text);
        log.log(RDKafkaLogLevel::Error, "FAIL", text);
        assert!(held_back(&log).is_empty(), "neither logged nor counted");
        assert_eq!(log.failure_description().as_deref(), Some(text));
        // Other warnings repeat like errors do.
        for _ in 0..3 {
            log.log(RDKafkaLogLevel::Warning, "CONFWARN", "a warning");
        }
        assert_eq!(held_back(&log), [2]);
    }

    #[test]
    fn a_tls_alert_from_the_broker_is_a_refusal_a_lost_connection_is_not() {
        let alert = "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 4ms in state APIVERSION_QUERY)";
        let transport = Some(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(is_refused_by_tls_alert(transport, alert));
        assert!(!is_refused_by_tls_alert(
            transport,
            "ssl://127.0.0.1:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: Connection refused"
        ));
        assert!(!is_refused_by_tls_alert(
            Some(RDKafkaErrorCode::AllBrokersDown),
            alert
        ));
    }
}
