//! A partition of one of the consumer's topics.
//!
//! A consumer may read several topics (a list, or every topic a pattern matches), and two of
//! them can both have a partition 0: everything kept per partition is kept per topic and
//! partition. The topic is held as a number, given in the order the consumer met the topics,
//! so that the key stays a pair of integers: copied, hashed and compared as cheaply as the
//! partition number alone was. [`TopicNames`] turns the numbers back into names.

use std::sync::Arc;

/// A topic's number in [`TopicNames`] and a partition of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Tp {
    pub topic: u32,
    pub partition: i32,
}

/// The names of the topics the consumer met, numbered in that order. A number, once given,
/// names its topic for the life of the consumer (topics a pattern matches can come and go;
/// their names are few and short).
#[derive(Debug, Default)]
pub(crate) struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    /// The number of `name`, if it was met.
    #[inline]
    pub fn find(&self, name: &str) -> Option<u32> {
        // Almost always one topic, or a handful: a scan beats hashing the name.
        self.0
            .iter()
            .position(|known| &**known == name)
            .and_then(|at| u32::try_from(at).ok())
    }

    /// The number of `name`, given now if it was not met before.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(known) = self.find(name) {
            return known;
        }
        self.0.push(Arc::from(name));
        u32::try_from(self.0.len() - 1).unwrap_or(u32::MAX)
    }

    /// The name of topic number `topic` (empty for a number never given).
    pub fn name(&self, topic: u32) -> &Arc<str> {
        static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        self.0
            .get(topic as usize)
            .unwrap_or_else(|| NONE.get_or_init(|| Arc::from("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number() {
        let mut names = TopicNames::default();
        assert_eq!(names.find("a"), None);
        assert_eq!(names.intern("a"), 0);
        assert_eq!(names.intern("b"), 1);
        assert_eq!(names.intern("a"), 0);
        assert_eq!(&**names.name(1), "b");
        assert_eq!(&**names.name(7), "");
    }
}
