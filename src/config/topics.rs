//! `topic`: one topic, a list of topics, or a regular expression naming topics.
//!
//! ```toml
//! topic = "orders"                      # one topic
//! topic = ["orders", "refunds"]         # a list
//! topic = "^orders\\..*"                # a pattern: librdkafka's convention, a leading ^
//! ```
//!
//! In the environment and on the command line, where a value is one string, a list is its
//! names joined by commas (`KAFKAD_TOPIC=orders,refunds`): Kafka topic names cannot hold a
//! comma, so the two cannot be confused. A pattern is compiled when the configuration is
//! loaded, with the `regex` crate's syntax; one that does not compile is a configuration
//! error naming the key. It matches anywhere in a name unless anchored, so `^orders\.`
//! matches `orders.eu`, and `$` ends it.

use std::fmt;

use config::{Map, Value};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{invalid, kafka_topic_name, ConfigError, Refusal, Role, Settings, SinkSettings};

/// The topics a role reads (or, for one topic, writes).
#[derive(Debug, Clone)]
pub enum TopicSelection {
    One(String),
    List(Vec<String>),
    Pattern(TopicPattern),
}

/// A compiled topic pattern and the text it was written as (with its leading `^`).
#[derive(Debug, Clone)]
pub struct TopicPattern {
    text: String,
    regex: regex::Regex,
}

impl TopicPattern {
    /// Compiles `text`, which starts with `^`.
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        Ok(TopicPattern {
            regex: regex::Regex::new(text)?,
            text: text.to_owned(),
        })
    }

    /// As written, `^` included: what librdkafka's `subscribe` takes as a pattern.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_match(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl PartialEq for TopicSelection {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TopicSelection::One(a), TopicSelection::One(b)) => a == b,
            (TopicSelection::List(a), TopicSelection::List(b)) => a == b,
            (TopicSelection::Pattern(a), TopicSelection::Pattern(b)) => a == b,
            _ => false,
        }
    }
}

impl TopicSelection {
    /// Reads a string as configuration writes it: a pattern when it starts with `^`, a
    /// list when it holds a comma, else one name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with('^') {
            return TopicPattern::new(text)
                .map(TopicSelection::Pattern)
                .map_err(|error| {
                    let why = error.to_string().replace('\n', " ");
                    format!("`{text}` is not a regular expression: {why}")
                });
        }
        if text.contains(',') {
            return Ok(TopicSelection::List(
                text.split(',').map(|name| name.trim().to_owned()).collect(),
            ));
        }
        Ok(TopicSelection::One(text.to_owned()))
    }

    /// The one topic, if exactly one is named.
    pub fn single(&self) -> Option<&str> {
        match self {
            TopicSelection::One(name) => Some(name),
            TopicSelection::List(names) if names.len() == 1 => Some(&names[0]),
            _ => None,
        }
    }

    /// The topics named by name: one, or the list; none for a pattern.
    pub fn names(&self) -> &[String] {
        match self {
            TopicSelection::One(name) => std::slice::from_ref(name),
            TopicSelection::List(names) => names,
            TopicSelection::Pattern(_) => &[],
        }
    }

    /// Whether `topic` is one of those selected.
    pub fn selects(&self, topic: &str) -> bool {
        match self {
            TopicSelection::Pattern(pattern) => pattern.is_match(topic),
            _ => self.names().iter().any(|name| name == topic),
        }
    }

    /// What librdkafka's `subscribe` takes: the names, or the pattern.
    pub fn subscription(&self) -> Vec<&str> {
        match self {
            TopicSelection::Pattern(pattern) => vec![pattern.as_str()],
            _ => self.names().iter().map(String::as_str).collect(),
        }
    }
}

impl fmt::Display for TopicSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicSelection::One(name) => f.write_str(name),
            TopicSelection::List(names) => f.write_str(&names.join(",")),
            TopicSelection::Pattern(pattern) => f.write_str(pattern.as_str()),
        }
    }
}

impl Serialize for TopicSelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TopicSelection::List(names) => names.serialize(serializer),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for TopicSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Selection;
        impl<'de> Visitor<'de> for Selection {
            type Value = TopicSelection;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a topic name, a list of names, or a pattern starting with ^")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<TopicSelection, E> {
                TopicSelection::parse(text).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopicSelection, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if name.starts_with('^') {
                        return Err(de::Error::custom(format_args!(
                            "`{name}` in a list: a list holds topic names; a pattern stands alone (topic = \"{name}\")"
                        )));
                    }
                    names.push(name);
                }
                Ok(TopicSelection::List(names))
            }
        }
        deserializer.deserialize_any(Selection)
    }
}

/// The topics Kafka would accept, a role given what it can use, and dead-letter topics that
/// are neither invalid nor read again as input.
pub(super) fn check(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    check_names(&settings.topic.selection)
        .and_then(|()| check_role_can_read(settings))
        .and_then(|()| check_dead_letter_topics(settings))
        .map_err(|(key, message)| invalid(tree, key, message))
}

/// Names Kafka accepts, and a list that names each topic once.
fn check_names(selection: &TopicSelection) -> Result<(), Refusal> {
    for name in selection.names() {
        if let Err(why) = kafka_topic_name(name) {
            return match selection {
                TopicSelection::List(_) => Err(("topic.name", format!("`{name}` {why}"))),
                _ => Err(("topic.name", why)),
            };
        }
    }
    if let TopicSelection::List(names) = selection {
        if names.is_empty() {
            return Err(("topic.name", "an empty list names no topic".to_owned()));
        }
        if let Some(twice) = names
            .iter()
            .enumerate()
            .find_map(|(i, name)| names[..i].contains(name).then_some(name))
        {
            return Err(("topic.name", format!("`{twice}` is listed twice")));
        }
    }
    Ok(())
}

/// Several topics only for a role that can serve them.
fn check_role_can_read(settings: &Settings) -> Result<(), Refusal> {
    let selection = &settings.topic.selection;
    let (Some(role), None) = (settings.role, selection.single()) else {
        return Ok(());
    };
    let refused = match (role, &settings.sink) {
        (Role::Producer, _) => Some("the producer writes one topic; a list or a pattern is for the consumers, `kafkad topic ensure` (a list) and `kafkad config check`".to_owned()),
        // Their positions, and the transaction that writes them, are per topic.
        (Role::Single | Role::Batch, SinkSettings::Postgres(_)) => Some(
            "the postgres sink keeps the consumer's positions for one topic; read one topic per consumer with it".to_owned(),
        ),
        (Role::Single | Role::Batch, SinkSettings::Kafka(_)) => Some(
            "the kafka sink keeps the consumer's positions for one topic; read one topic per consumer with it".to_owned(),
        ),
        (Role::Single | Role::Batch, _) => None,
    };
    match refused {
        Some(why) => Err(("topic.name", format!("`{selection}`: {why}"))),
        None => Ok(()),
    }
}

/// Dead-letter topics Kafka accepts, none of them read again as input.
fn check_dead_letter_topics(settings: &Settings) -> Result<(), Refusal> {
    let selection = &settings.topic.selection;
    for name in selection.names() {
        let Some(dlq) = settings.dead_letter_topic_of(name) else {
            continue;
        };
        if let Err(why) = kafka_topic_name(&dlq) {
            return match settings.dlq_topic {
                Some(_) => Err(("dlq_topic", why)),
                // The default name, `<topic>.dlq`, can be four characters too long.
                None => Err((
                    "topic.name",
                    format!(
                        "gives the default dead-letter topic `{dlq}`, which {why}; set dlq_topic"
                    ),
                )),
            };
        }
    }
    if settings.dlq_topic.is_none() {
        if let Some(dlq) = selection
            .names()
            .iter()
            .map(|name| format!("{name}.dlq"))
            .find(|dlq| selection.selects(dlq))
        {
            return Err((
                "topic.name",
                format!("lists `{dlq}`, the default dead-letter topic of another topic listed: its copies would be read again as bad records, forever; set dlq_topic, or leave `{dlq}` out"),
            ));
        }
    }
    if let Some(dlq) = settings.dlq_topic.as_deref().filter(|dlq| !dlq.is_empty()) {
        if selection.selects(dlq) {
            let what = match selection {
                TopicSelection::Pattern(_) => "must not match the topic pattern",
                TopicSelection::One(_) => "must differ from topic.name",
                TopicSelection::List(_) => "must not be one of the topics",
            };
            return Err((
                "dlq_topic",
                format!("{what}: a bad record's dead-letter copy would be read again as a bad record, forever"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_a_name_a_comma_list_or_a_pattern() {
        assert_eq!(
            TopicSelection::parse("orders"),
            Ok(TopicSelection::One("orders".into()))
        );
        assert_eq!(
            TopicSelection::parse("orders, refunds"),
            Ok(TopicSelection::List(vec![
                "orders".into(),
                "refunds".into()
            ]))
        );
        let pattern = TopicSelection::parse(r"^orders\..*").expect("compiles");
        assert!(pattern.selects("orders.eu") && !pattern.selects("orders-eu"));
        assert_eq!(pattern.subscription(), [r"^orders\..*"]);
        assert_eq!(pattern.to_string(), r"^orders\..*");
        assert!(pattern.names().is_empty() && pattern.single().is_none());
        let error = TopicSelection::parse("^orders(").expect_err("does not compile");
        assert!(
            error.starts_with("`^orders(` is not a regular expression:"),
            "{error}"
        );
    }

    #[test]
    fn a_list_of_one_is_a_single_topic() {
        let list = TopicSelection::List(vec!["a".into()]);
        assert_eq!(list.single(), Some("a"));
        let two = TopicSelection::List(vec!["a".into(), "b".into()]);
        assert_eq!(two.single(), None);
        assert!(two.selects("b") && !two.selects("c"));
        assert_eq!(two.subscription(), ["a", "b"]);
    }
}
