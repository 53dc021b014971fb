//! Records in hand, owned, in one buffer per chunk.
//!
//! A record travels from the polling thread to a worker, and may wait there for minutes (a
//! retry, an outage). A librdkafka record (`BorrowedMessage`) cannot cross threads freely and
//! keeps its whole fetch buffer alive for as long as it is held; a detached copy costs an
//! allocation per key, value, topic and header list. A chunk instead copies the key and value
//! of each record into one byte buffer that grows once and is reused: a record costs a copy of
//! its bytes, and headers (which few records have) are copied only where there are any.
//!
//! Decoding happens on the worker, from the chunk's bytes, so the polling thread only copies.

use std::ops::Range;

use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::Message;

/// One record's place in its chunk.
#[derive(Debug)]
pub(crate) struct Entry {
    pub partition: i32,
    pub offset: i64,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Option<OwnedHeaders>,
}

/// Records of one lane (see `partitions`), in the order they were received.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    entries: Vec<Entry>,
    bytes: Vec<u8>,
    /// Entries before this one were taken off the front ([`Chunk::take_front`]); their bytes
    /// stay until the chunk empties.
    start: usize,
}

impl Chunk {
    /// Appends `record`.
    pub fn push<M: Message>(&mut self, record: &M) {
        let key = record.key().map(|key| keep(&mut self.bytes, key));
        let value = record.payload().map(|value| keep(&mut self.bytes, value));
        // librdkafka hands over an empty header list for a record without headers: copying it
        // would cost an allocation per record for nothing.
        let headers = record.headers().filter(|h| h.count() > 0).map(|headers| {
            let copy = OwnedHeaders::new_with_capacity(headers.count());
            headers.iter().fold(copy, OwnedHeaders::insert)
        });
        self.entries.push(Entry {
            partition: record.partition(),
            offset: record.offset(),
            key,
            value,
            headers,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries[self.start..]
    }

    /// Key and value bytes of record `index`: what it holds in memory.
    pub fn size(&self, index: usize) -> usize {
        let entry = &self.entries()[index];
        let len = |range: &Option<Range<usize>>| range.as_ref().map_or(0, |r| r.len());
        len(&entry.key) + len(&entry.value)
    }

    /// The value of record `index`; `None` for a tombstone.
    pub fn value(&self, index: usize) -> Option<&[u8]> {
        self.entries()[index].value.clone().map(|r| &self.bytes[r])
    }

    /// The key of record `index`, if it has one.
    pub fn key(&self, index: usize) -> Option<&[u8]> {
        self.entries()[index].key.clone().map(|r| &self.bytes[r])
    }

    /// The headers of record `index`, if it has any.
    pub fn headers(&self, index: usize) -> Option<&OwnedHeaders> {
        self.entries()[index].headers.as_ref()
    }

    /// Record `index` as it was received, from `topic`, for its dead-letter copy (its
    /// timestamp is the copy's own).
    pub fn original(&self, topic: &str, index: usize) -> OwnedMessage {
        let entry = &self.entries()[index];
        let bytes = |range: &Option<Range<usize>>| range.clone().map(|r| self.bytes[r].to_vec());
        OwnedMessage::new(
            bytes(&entry.value),
            bytes(&entry.key),
            topic.to_owned(),
            rdkafka::Timestamp::NotAvailable,
            entry.partition,
            entry.offset,
            entry.headers.clone(),
        )
    }

    /// Empties the chunk, keeping its buffers.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.start = 0;
    }

    /// Moves the first `count` records into a chunk of their own: a copy of theirs, however
    /// many stay behind.
    pub fn take_front(&mut self, count: usize) -> Chunk {
        let count = count.min(self.len());
        let mut front = Chunk::default();
        for entry in &self.entries[self.start..self.start + count] {
            let moved = |range: &Option<Range<usize>>, into: &mut Vec<u8>| {
                range.clone().map(|r| keep(into, &self.bytes[r]))
            };
            let key = moved(&entry.key, &mut front.bytes);
            let value = moved(&entry.value, &mut front.bytes);
            front.entries.push(Entry {
                partition: entry.partition,
                offset: entry.offset,
                key,
                value,
                headers: entry.headers.clone(),
            });
        }
        self.start += count;
        if self.is_empty() {
            self.clear();
        } else if self.start >= self.len() {
            self.compact();
        }
        front
    }

    /// Drops the entries taken off the front and their bytes, moving the rest to the start of
    /// the buffers. Done once what was taken is at least what stays, it moves each record at
    /// most once more and keeps the buffers within twice what is in hand: a hand that never
    /// empties (a batch taking 500 of a lane that keeps receiving) would otherwise grow with
    /// every record its partition receives.
    fn compact(&mut self) {
        let cut = self.entries[self.start..]
            .iter()
            .find_map(|e| e.key.as_ref().or(e.value.as_ref()).map(|r| r.start))
            .unwrap_or(self.bytes.len());
        self.entries.drain(..self.start);
        self.bytes.drain(..cut);
        for entry in &mut self.entries {
            for range in [&mut entry.key, &mut entry.value].into_iter().flatten() {
                range.start -= cut;
                range.end -= cut;
            }
        }
        self.start = 0;
    }
}

/// Appends `data` to `buffer`; returns where it is.
fn keep(buffer: &mut Vec<u8>, data: &[u8]) -> Range<usize> {
    let start = buffer.len();
    buffer.extend_from_slice(data);
    start..buffer.len()
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Header;

    use super::*;

    fn record(partition: i32, offset: i64, headers: bool) -> OwnedMessage {
        let headers = headers.then(|| {
            OwnedHeaders::new().insert(Header {
                key: "trace",
                value: Some(format!("t-{offset}").as_str()),
            })
        });
        OwnedMessage::new(
            Some(format!("value-{offset}").into_bytes()),
            (offset % 2 == 0).then(|| format!("key-{offset}").into_bytes()),
            "t".to_owned(),
            rdkafka::Timestamp::CreateTime(1_700_000_000_000 + offset),
            partition,
            offset,
            headers,
        )
    }

    #[test]
    fn records_come_back_as_they_were_received() {
        let mut rest = Chunk::default();
        let received: Vec<_> = (0..5).map(|o| record(1, o, o == 3)).collect();
        received.iter().for_each(|r| rest.push(r));
        let chunk = rest.take_front(2);
        assert_eq!((chunk.len(), rest.len()), (2, 3));
        for (index, expected) in received[2..].iter().enumerate() {
            let original = rest.original("t", index);
            assert_eq!(original.payload(), expected.payload());
            assert_eq!(original.key(), expected.key());
            assert_eq!(
                (original.partition(), original.offset()),
                (1, expected.offset())
            );
            let header = |m: &OwnedMessage| m.headers().map(|h| h.get(0).value.map(<[u8]>::to_vec));
            assert_eq!(header(&original), header(expected));
        }
        assert_eq!(chunk.value(1), Some(&b"value-1"[..]));
    }

    #[test]
    fn keys_and_headers_follow_the_front_taken_off() {
        let mut rest = Chunk::default();
        let received: Vec<_> = (0..6).map(|o| record(1, o, o == 4)).collect();
        received.iter().for_each(|r| rest.push(r));
        let _ = rest.take_front(2);
        for (index, expected) in received[2..].iter().enumerate() {
            assert_eq!(rest.key(index), expected.key(), "key of {index}");
            assert_eq!(rest.headers(index).is_some(), expected.headers().is_some());
        }
        // Taken again past half: the rest moves to the front of the buffers.
        let _ = rest.take_front(1);
        assert_eq!((rest.start, rest.len()), (0, 3));
        for (index, expected) in received[3..].iter().enumerate() {
            assert_eq!(rest.value(index), expected.payload());
            assert_eq!(rest.key(index), expected.key());
            assert_eq!(rest.headers(index).is_some(), expected.headers().is_some());
        }
        rest.push(&record(1, 6, false));
        assert_eq!(rest.value(3), Some(&b"value-6"[..]));
        assert_eq!(rest.key(3), Some(&b"key-6"[..]));
    }
}
