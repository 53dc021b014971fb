//! [`ConfigError`], and turning serde's complaints back into the key and the layer that
//! caused them.

use super::*;

/// A configuration problem, always one line naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML{}: {message}", path.display(), .at.map(|at| format!(" at {at}")).unwrap_or_default())]
    Syntax {
        path: PathBuf,
        at: Option<sources::Position>,
        message: String,
    },
    #[error("unknown key `{key}` ({origin}); {hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    #[error("`{key}` ({origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("no role given: pass --role producer|single|batch, set `role` in the config file, or set KAFKAD_ROLE")]
    NoRole,
}

/// A refused setting, before it is named with its layer ([`invalid`]): its key and why.
pub(super) type Refusal = (&'static str, String);

/// A serde error while reading the merged tree, as a [`ConfigError`] naming the key and the
/// layer its value came from. The `config` crate tells the table a failing value sits in;
/// serde's message tells the rest (an unknown or missing key, or the value's problem).
pub(super) fn deserialize_error(
    error: config::ConfigError,
    tree: &Map<String, Value>,
) -> ConfigError {
    let (table, message) = table_and_message(error);
    let within = |field: &str| match &table {
        Some(table) => format!("{table}.{field}"),
        None => field.to_owned(),
    };
    // In a table whose `kind` chooses its variant (`[sink]`), that choice decides which
    // keys belong: it is named with the error.
    let kind_key = within("kind");
    let kind = lookup(tree, &kind_key)
        .filter(|_| table.is_some())
        .and_then(|value| value.clone().into_string().ok());
    // `unknown field `x`, expected one of `a`, `b`` (or `there are no fields`).
    if let Some((field, allowed)) = quoted_after(&message, "unknown field ") {
        let allowed = allowed.trim_start_matches([',', ' ']);
        let hint = match (&kind, allowed) {
            (Some(kind), "there are no fields") => {
                format!("`{kind_key} = \"{kind}\"` takes no other key")
            }
            (Some(kind), allowed) => format!(
                "with `{kind_key} = \"{kind}\"` allowed: {}",
                allowed.trim_start_matches("expected ")
            ),
            (None, allowed) => format!("allowed: {}", allowed.trim_start_matches("expected ")),
        };
        let key = within(field);
        return ConfigError::UnknownKey {
            origin: origin_of(tree, &key),
            hint,
            key,
        };
    }
    // A missing key: `[sink] kind = "jsonl"` without `path`, named with the `kind` (and its
    // layer) that asked for it.
    if let Some((field, _)) = quoted_after(&message, "missing field ") {
        let key = within(field);
        return match kind {
            Some(kind) => ConfigError::Invalid {
                origin: origin_of(tree, &kind_key),
                message: format!("missing; `{kind_key} = \"{kind}\"` needs it"),
                key,
            },
            None => ConfigError::Invalid {
                origin: origin_of(tree, &key),
                message: "missing".to_owned(),
                key,
            },
        };
    }
    // `unknown variant `x`, expected ...`: the table's `kind` chose no known variant.
    let key = match (&table, &kind) {
        (Some(_), Some(_)) if message.starts_with("unknown variant") => kind_key,
        _ => table.unwrap_or_else(|| "(configuration)".to_owned()),
    };
    ConfigError::Invalid {
        origin: origin_of(tree, &key),
        key,
        message,
    }
}

/// The table a failing value sits in, if the `config` crate says, and serde's message in
/// words an operator reads (one line, "a whole number above 0" for a `NonZero`).
fn table_and_message(error: config::ConfigError) -> (Option<String>, String) {
    let (table, message) = match error {
        config::ConfigError::Type {
            key,
            unexpected,
            expected,
            ..
        } => (key, format!("expected {expected}, found {unexpected}")),
        config::ConfigError::At { error, key, .. } => (key, error.to_string()),
        // A key a struct or variant needs and nothing set.
        config::ConfigError::NotFound(key) => match key.rsplit_once('.') {
            Some((table, field)) => (Some(table.to_owned()), format!("missing field `{field}`")),
            None => (None, format!("missing field `{key}`")),
        },
        other => (None, other.to_string()),
    };
    let message = message
        .replace('\n', " ")
        .replace("a nonzero usize", "a whole number above 0")
        .replace("a nonzero u32", "a whole number above 0");
    (table, message)
}

/// The first backquoted word after `prefix` at the start of `message`, and the rest.
pub(super) fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, &'m str)> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`')
}

/// A value that serde read but kafkad cannot accept, naming the key and its layer.
pub(super) fn invalid(
    tree: &Map<String, Value>,
    key: &str,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: origin_of(tree, key),
        message: message.into(),
    }
}
