//! The built-in defaults: the lowest configuration layer. Each section's are its `Default`,
//! beside its fields (`sections`); what has no section struct of its own (the top-level
//! keys, `[kafka]`, `[sink]`) is TOML beside [`Settings`]; each role's librdkafka properties
//! sit beside the role (`role`). This gathers them, lowest first, as TOML tables, so that
//! `config print` names a default as it names a file's value.

use super::*;

/// The default layers of a process of `role` (none: a command that runs no role).
pub(super) fn layers(role: Option<Role>) -> Vec<toml::Table> {
    let mut layers = vec![built_in(Settings::DEFAULTS), sections()];
    layers.extend(role.map(Role::kafka_defaults).unwrap_or_default());
    layers
}

/// A table of defaults written as TOML in the binary.
pub(super) fn built_in(text: &str) -> toml::Table {
    toml::from_str(text).expect("built-in defaults are valid TOML")
}

/// Every section's `Default`, under its name.
fn sections() -> toml::Table {
    let mut table = toml::Table::new();
    section(&mut table, "topic", &TopicSettings::default());
    section(&mut table, "producer", &ProducerSettings::default());
    section(&mut table, "consumer", &ConsumerSettings::default());
    section(&mut table, "batch", &BatchSettings::default());
    section(&mut table, "retry", &RetrySettings::default());
    section(&mut table, "http", &HttpSettings::default());
    section(&mut table, "log", &LogSettings::default());
    table
}

fn section<T: Serialize>(table: &mut toml::Table, name: &str, defaults: &T) {
    let Ok(toml::Value::Table(mut fields)) = toml::Value::try_from(defaults) else {
        unreachable!("a section serializes to a table");
    };
    // An empty map (`[topic] config`) is no value: leaving it out keeps `config print` from
    // showing an empty table as if it had been set.
    fields.retain(|_, value| !matches!(value, toml::Value::Table(t) if t.is_empty()));
    table.insert(name.to_owned(), toml::Value::Table(fields));
}
