//! References to secrets (`{ file = ... }`, `{ env = ... }`) in `[kafka]`, `[sink.kafka]` and
//! the http sink's headers, resolved once at load.

use super::*;

pub(super) fn resolve_kafka(
    kafka: &Map<String, KafkaValue>,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<KafkaProperties, ConfigError> {
    let mut resolved = std::collections::BTreeMap::new();
    for (name, value) in kafka {
        let text = resolve_value(value, &format!("kafka.{name}"), env, tree)?;
        resolved.insert(name.clone(), text);
    }
    Ok(KafkaProperties::new(resolved))
}

/// `value` (configured at `key`) as text: a `{ file }` or `{ env }` reference read.
pub(super) fn resolve_value(
    value: &KafkaValue,
    key: &str,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<String, ConfigError> {
    match value {
        KafkaValue::Text(text) => Ok(text.clone()),
        KafkaValue::FromFile(path) => read_secret_file(path)
            .map_err(|e| invalid(tree, key, format!("cannot read {}: {e}", path.display()))),
        KafkaValue::FromEnv(var) => env
            .iter()
            .find(|(name, _)| name == var)
            .map(|(_, value)| value.clone())
            .ok_or_else(|| invalid(tree, key, format!("environment variable {var} is not set"))),
    }
}

/// The http sink's headers with `{ file }` and `{ env }` references read.
pub(super) fn resolve_sink_headers(
    sink: &SinkSettings,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<ResolvedHeaders, ConfigError> {
    let SinkSettings::Http { headers, .. } = sink else {
        return Ok(ResolvedHeaders::default());
    };
    let mut resolved = Vec::with_capacity(headers.0.len());
    for (name, value) in &headers.0 {
        let key = format!("sink.headers.{name}");
        let text = resolve_value(value, &key, env, tree)?;
        if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(tree, &key, "is not a valid HTTP header name"));
        }
        if ureq::http::HeaderValue::from_str(&text).is_err() {
            return Err(invalid(
                tree,
                &key,
                "the value is not a valid HTTP header value (control characters?)",
            ));
        }
        resolved.push((name.clone(), text));
    }
    Ok(ResolvedHeaders(resolved))
}

/// A secret file's content without the trailing newline editors and `echo` add.
pub(super) fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}
