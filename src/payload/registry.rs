//! The schema registry client of the schema'd formats: the schema of an id, fetched once and
//! kept.
//!
//! It speaks the Confluent Schema Registry API, which Confluent's registry, Apicurio
//! Registry's compatible API (`/apis/ccompat/v7`), Karapace and Redpanda serve:
//! `GET {url}/schemas/ids/{id}` answers the schema's text, its `schemaType` (`AVRO` when
//! absent, `PROTOBUF`, `JSON`) and the schemas it references (each `GET
//! {url}/subjects/{subject}/versions/{version}`). A schema id never changes meaning in a
//! registry, so a schema once parsed is kept for the life of the process; every worker of a
//! consumer shares the cache.
//!
//! What an answer means for the record that named the id:
//!
//! * **404**: the registry has no such schema: the record's fault, a bad record
//!   (`unknown_schema`). So is a schema of another type than the format
//!   (`wrong_schema_type`) and a schema that does not parse (`invalid_schema`): every record
//!   naming it would fail the same way.
//! * **No answer, a 5xx, a 401/403 or any other status**: the registry is down, unreachable,
//!   or refusing this client. Nothing is wrong with the record, and a restart or a retry may
//!   succeed, so it is [`RegistryError`], which the consumer waits out like a downstream
//!   outage rather than dead-lettering the record.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::{protobuf, BadValue, PayloadError, SchemaFraming, Undecoded};

/// How much of an error answer's body a [`RegistryError`] keeps.
const BODY_KEPT: usize = 300;
/// How deep schema references may nest: a registry answering a cycle must not hold a worker.
const MAX_REFERENCE_DEPTH: usize = 16;

/// The registry could not be asked, or did not answer usefully: not the record's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("schema registry {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("schema registry {url} answered something that is not a schema: {reason}")]
    Garbled { url: String, reason: String },
}

/// A parsed schema, ready to decode values.
pub enum Schema {
    Avro(super::avro::AvroSchema),
    Protobuf(protobuf::ProtoSchema),
    /// A JSON Schema: values are checked to be JSON, not validated against it.
    Json,
}

impl Schema {
    /// The format whose values this schema decodes.
    pub fn framing(&self) -> SchemaFraming {
        match self {
            Schema::Avro(_) => SchemaFraming::Avro,
            Schema::Protobuf(_) => SchemaFraming::Protobuf,
            Schema::Json => SchemaFraming::JsonSchema,
        }
    }
}

/// What `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaAnswer {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

/// A schema this one imports (Protobuf) or names types of (Avro).
#[derive(Debug, Clone, Deserialize)]
struct Reference {
    /// The import path (Protobuf) or full type name (Avro) it is referred to by.
    name: String,
    subject: String,
    version: i64,
}

/// A schema's text and the texts of everything it references, by name.
pub struct SchemaText {
    pub text: String,
    pub references: Vec<(String, String)>,
}

/// The schemas of the ids this consumer met, fetched from a registry.
pub struct SchemaRegistry {
    url: String,
    agent: ureq::Agent,
    cache: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`http://host:port`, or with a path such as
    /// Apicurio's `/apis/ccompat/v7`), each request bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        SchemaRegistry {
            url: url.trim_end_matches('/').to_owned(),
            agent,
            cache: Mutex::default(),
        }
    }

    /// The schema of `id`, parsed for `framing`: from the cache, or asked of the registry.
    pub fn schema(&self, id: u32, framing: SchemaFraming) -> Result<Arc<Schema>, Undecoded> {
        let cached = self.cache().get(&id).map(Arc::clone);
        if let Some(schema) = cached {
            // Another format's consumer may share the process: the id's type still decides.
            return match schema.framing() == framing {
                true => Ok(schema),
                false => Err(bad(PayloadError::WrongSchemaType {
                    id,
                    expected: framing.schema_type(),
                    found: schema.framing().schema_type().to_owned(),
                })),
            };
        }
        let answer = match self.get(&format!("/schemas/ids/{id}"))? {
            Some(answer) => answer,
            None => return Err(bad(PayloadError::UnknownSchema { id })),
        };
        let found = answer.schema_type.as_deref().unwrap_or("AVRO");
        if found != framing.schema_type() {
            return Err(bad(PayloadError::WrongSchemaType {
                id,
                expected: framing.schema_type(),
                found: found.to_owned(),
            }));
        }
        let text = SchemaText {
            references: self.references(&answer.references, 0)?,
            text: answer.schema,
        };
        let invalid = |detail: String| bad(PayloadError::InvalidSchema { id, detail });
        let schema = match framing {
            SchemaFraming::Avro => {
                Schema::Avro(super::avro::AvroSchema::parse(&text).map_err(invalid)?)
            }
            SchemaFraming::Protobuf => {
                Schema::Protobuf(protobuf::ProtoSchema::compile(&text).map_err(invalid)?)
            }
            SchemaFraming::JsonSchema => Schema::Json,
        };
        let schema = Arc::new(schema);
        self.cache().insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Schema>>> {
        // A panic while holding the lock left at worst a complete entry: keep using it.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The texts of `references` and of theirs, depth first, each by the name it is
    /// referred to by.
    fn references(
        &self,
        references: &[Reference],
        depth: usize,
    ) -> Result<Vec<(String, String)>, Undecoded> {
        let mut texts = Vec::new();
        for reference in references {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(Undecoded::RegistryUnavailable(RegistryError::Garbled {
                    url: self.url.clone(),
                    reason: format!(
                        "schema references nest deeper than {MAX_REFERENCE_DEPTH} (a cycle?) at {}",
                        reference.name
                    ),
                }));
            }
            let path = format!(
                "/subjects/{}/versions/{}",
                encode_segment(&reference.subject),
                reference.version
            );
            let answer = self.get(&path)?.ok_or_else(|| {
                Undecoded::RegistryUnavailable(RegistryError::Status {
                    url: format!("{}{path}", self.url),
                    status: 404,
                    body: format!("referenced schema {} is missing", reference.name),
                })
            })?;
            texts.extend(self.references(&answer.references, depth + 1)?);
            texts.push((reference.name.clone(), answer.schema));
        }
        Ok(texts)
    }

    /// `GET {url}{path}`: the answer, `None` for a 404, an error for anything else.
    fn get(&self, path: &str) -> Result<Option<SchemaAnswer>, Undecoded> {
        let url = format!("{}{path}", self.url);
        let unavailable = Undecoded::RegistryUnavailable;
        let mut answer = self
            .agent
            .get(&url)
            .header(
                "accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .call()
            .map_err(|error| {
                unavailable(RegistryError::Unreachable {
                    url: url.clone(),
                    reason: error.to_string(),
                })
            })?;
        let status = answer.status().as_u16();
        let mut body = String::new();
        answer
            .body_mut()
            .as_reader()
            .take(16 << 20)
            .read_to_string(&mut body)
            .map_err(|error| {
                unavailable(RegistryError::Unreachable {
                    url: url.clone(),
                    reason: format!("reading the answer: {error}"),
                })
            })?;
        match status {
            200 => serde_json::from_str(&body).map(Some).map_err(|error| {
                unavailable(RegistryError::Garbled {
                    url,
                    reason: error.to_string(),
                })
            }),
            404 => Ok(None),
            status => {
                let cut = body
                    .char_indices()
                    .nth(BODY_KEPT)
                    .map_or(body.len(), |(i, _)| i);
                Err(unavailable(RegistryError::Status {
                    url,
                    status,
                    body: body[..cut].trim().to_owned(),
                }))
            }
        }
    }
}

fn bad(error: PayloadError) -> Undecoded {
    Undecoded::Bad(BadValue::Payload(error))
}

/// A subject name as one URL path segment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    //! The client against recorded registry answers, served over real HTTP from loopback.

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A registry on 127.0.0.1 answering each path with a recorded (status, body), 404 for
    /// others; counts the requests.
    pub(crate) struct RecordedRegistry {
        pub url: String,
        pub requests: Arc<AtomicUsize>,
    }

    impl RecordedRegistry {
        pub(crate) fn start(answers: Vec<(&str, u16, String)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let answers: HashMap<String, (u16, String)> = answers
                .into_iter()
                .map(|(path, status, body)| (path.to_owned(), (status, body)))
                .collect();
            let requests = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&requests);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        continue;
                    }
                    // The rest of the head; a GET has no body.
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let path = request_line.split_whitespace().nth(1).unwrap_or("");
                    let (status, body) = answers.get(path).cloned().unwrap_or((
                        404,
                        r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
                    ));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            RecordedRegistry { url, requests }
        }

        pub(crate) fn client(&self) -> SchemaRegistry {
            SchemaRegistry::new(&self.url, Duration::from_secs(5))
        }
    }

    fn unavailable(result: Result<Arc<Schema>, Undecoded>) -> RegistryError {
        match result {
            Err(Undecoded::RegistryUnavailable(error)) => error,
            Err(Undecoded::Bad(bad)) => panic!("a bad record, not an outage: {bad}"),
            Ok(_) => panic!("a schema"),
        }
    }

    fn bad_kind(result: Result<Arc<Schema>, Undecoded>) -> &'static str {
        match result {
            Err(Undecoded::Bad(bad)) => bad.kind(),
            Err(Undecoded::RegistryUnavailable(error)) => panic!("an outage: {error}"),
            Ok(_) => panic!("a schema"),
        }
    }

    #[test]
    fn a_schema_is_asked_once_and_kept() {
        // The answer Confluent's API documents for GET /schemas/ids/1 (no schemaType: AVRO).
        let registry = RecordedRegistry::start(vec![(
            "/schemas/ids/1",
            200,
            r#"{"schema":"{\"type\":\"string\"}"}"#.to_owned(),
        )]);
        let client = registry.client();
        for _ in 0..3 {
            assert!(matches!(
                client.schema(1, SchemaFraming::Avro).as_deref(),
                Ok(Schema::Avro(_))
            ));
        }
        assert_eq!(registry.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_record_is_at_fault_for_an_unknown_id_a_wrong_type_and_a_broken_schema() {
        let registry = RecordedRegistry::start(vec![
            (
                "/schemas/ids/2",
                200,
                r#"{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\"; message M { string a = 1; }"}"#.to_owned(),
            ),
            ("/schemas/ids/3", 200, r#"{"schema":"{\"type\":\"nope\"}"}"#.to_owned()),
        ]);
        let client = registry.client();
        assert_eq!(
            bad_kind(client.schema(99, SchemaFraming::Avro)),
            "unknown_schema"
        );
        assert_eq!(
            bad_kind(client.schema(2, SchemaFraming::Avro)),
            "wrong_schema_type"
        );
        assert_eq!(
            bad_kind(client.schema(3, SchemaFraming::Avro)),
            "invalid_schema"
        );
        // The unknown and unusable ones are asked again next time: they may be fixed.
        let before = registry.requests.load(Ordering::SeqCst);
        let _ = client.schema(99, SchemaFraming::Avro);
        assert_eq!(registry.requests.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn a_registry_that_is_down_or_refusing_is_not_the_records_fault() {
        let registry = RecordedRegistry::start(vec![
            (
                "/schemas/ids/5",
                500,
                r#"{"error_code":50001,"message":"Error in the backend data store"}"#.to_owned(),
            ),
            (
                "/schemas/ids/6",
                401,
                r#"{"error_code":401,"message":"Unauthorized"}"#.to_owned(),
            ),
            (
                "/schemas/ids/7",
                200,
                "<html>a proxy's page</html>".to_owned(),
            ),
        ]);
        let client = registry.client();
        let error = unavailable(client.schema(5, SchemaFraming::Avro));
        assert!(
            error
                .to_string()
                .contains("answered HTTP 500: {\"error_code\":50001"),
            "{error}"
        );
        assert!(matches!(
            unavailable(client.schema(6, SchemaFraming::Avro)),
            RegistryError::Status { status: 401, .. }
        ));
        assert!(matches!(
            unavailable(client.schema(7, SchemaFraming::Avro)),
            RegistryError::Garbled { .. }
        ));

        // Nobody listening.
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let client = SchemaRegistry::new(&url, Duration::from_secs(2));
        assert!(matches!(
            unavailable(client.schema(1, SchemaFraming::Avro)),
            RegistryError::Unreachable { .. }
        ));
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode_segment("orders-value"), "orders-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
