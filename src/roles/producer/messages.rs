//! The seed's messages, made up: [`MessageFactory`] builds each one's key and value.

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::config::ProducerSettings;
use crate::message::{KafkaMessage, Timestamp};

/// Builds each message's key and value into reused buffers: no allocation per message on the
/// hot path. The one place the producer's message shape is made: content template, padding,
/// `{"source":"kafkad"}` metadata, a UTC timestamp of the moment it is built.
pub struct MessageFactory {
    producer_id: String,
    template: Vec<Piece>,
    padding: String,
    metadata: Box<RawValue>,
    content: String,
    key: String,
    value: Vec<u8>,
}

/// A part of the `content` template.
enum Piece {
    Text(String),
    Id,
    ProducerId,
}

impl MessageFactory {
    pub fn new(settings: &ProducerSettings, producer_id: String) -> Self {
        let mut template = Vec::new();
        let mut rest = settings.content.as_str();
        while let Some(start) = rest.find('{') {
            let (before, tail) = rest.split_at(start);
            let (piece, len) = if tail.starts_with("{id}") {
                (Piece::Id, 4)
            } else if tail.starts_with("{producer_id}") {
                (Piece::ProducerId, 13)
            } else {
                (Piece::Text("{".to_owned()), 1)
            };
            if !before.is_empty() {
                template.push(Piece::Text(before.to_owned()));
            }
            template.push(piece);
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            template.push(Piece::Text(rest.to_owned()));
        }
        MessageFactory {
            metadata: RawValue::from_string(r#"{"source":"kafkad"}"#.to_owned())
                .expect("valid JSON"),
            producer_id,
            template,
            padding: "x".repeat(settings.payload_bytes),
            content: String::new(),
            key: String::new(),
            value: Vec::with_capacity(256 + settings.payload_bytes),
        }
    }

    /// Builds message `id`: its [`key`](Self::key) and [`value`](Self::value).
    pub fn build(&mut self, id: i64) {
        self.content.clear();
        for piece in &self.template {
            match piece {
                Piece::Text(text) => self.content.push_str(text),
                Piece::Id => {
                    let _ = write!(self.content, "{id}");
                }
                Piece::ProducerId => self.content.push_str(&self.producer_id),
            }
        }
        self.content.push_str(&self.padding);
        self.key.clear();
        let _ = write!(self.key, "{id}");
        let message = KafkaMessage {
            message_id: id,
            content: self.content.as_str().into(),
            producer_id: self.producer_id.as_str().into(),
            timestamp: Timestamp::now(),
            metadata: std::borrow::Cow::Borrowed(&self.metadata),
        };
        self.value.clear();
        message.encode_into(&mut self.value);
    }

    /// The record key of the last message built: its id in decimal.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The record value of the last message built: the encoded `KafkaMessage`.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(content: &str, payload_bytes: usize) -> ProducerSettings {
        ProducerSettings {
            source: crate::config::InputSource::Generate,
            format: crate::payload::Format::KafkaMessage,
            key: None,
            headers: Default::default(),
            count: 0,
            rate: 0.0,
            producer_id: None,
            content: content.to_owned(),
            payload_bytes,
        }
    }

    #[test]
    fn factory_fills_the_template_and_key() {
        let mut factory = MessageFactory::new(
            &settings("Message {id} from {producer_id} {x}", 3),
            "p-1".into(),
        );
        factory.build(42);
        assert_eq!(factory.key, "42");
        let message = KafkaMessage::decode(&factory.value).expect("valid message");
        assert_eq!(message.message_id, 42);
        assert_eq!(message.producer_id, "p-1");
        assert_eq!(message.content, "Message 42 from p-1 {x}xxx");
        assert_eq!(message.metadata_map()["source"], "kafkad");
        factory.build(43);
        assert_eq!(
            KafkaMessage::decode(&factory.value).expect("valid").content,
            "Message 43 from p-1 {x}xxx"
        );
    }
}
