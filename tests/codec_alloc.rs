//! The codec's hot paths do not allocate: decoding borrows from the record, encoding writes
//! into the producer's reused buffer. Counted with a global allocator that counts calls on
//! this test's own thread (the test harness allocates on others).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kafkad::message::{KafkaMessage, Timestamp};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The seed's message as its Python producer writes it, and as kafkad's producer does.
const SEED_PYTHON: &str = r#"{"message_id": 42, "content": "Message 42 from producer-1", "producer_id": "producer-1", "timestamp": "2026-11-25T18:08:06.906824", "metadata": {"source": "python"}}"#;
const SEED_KAFKAD: &str = r#"{"message_id":42,"content":"Message 42 from producer-1","producer_id":"producer-1","timestamp":"2026-11-25T18:08:06.906824Z","metadata":{"source":"kafkad"}}"#;

#[test]
fn decoding_the_seed_message_does_not_allocate() {
    for text in [SEED_PYTHON, SEED_KAFKAD] {
        let bytes = text.as_bytes();
        // Warm-up: lazily initialised statics (none expected) are not the codec's cost.
        let _ = KafkaMessage::decode(bytes).expect("valid");
        let mut id = 0;
        let count = allocations_during(|| {
            for _ in 0..100 {
                let message = KafkaMessage::decode(bytes).expect("valid");
                id += message.message_id;
            }
        });
        assert_eq!(
            count, 0,
            "decode allocated {count} times for 100 messages of {text}"
        );
        assert_eq!(id, 4200);
    }
}

#[test]
fn encoding_into_a_reused_buffer_does_not_allocate() {
    let decoded = KafkaMessage::decode(SEED_PYTHON.as_bytes()).expect("valid");
    let mut zoned = decoded.clone();
    zoned.timestamp = Timestamp::parse("2026-11-25T21:08:06.906824+03:00").expect("valid");
    let mut buf = Vec::with_capacity(512);
    for message in [&decoded, &zoned] {
        let count = allocations_during(|| {
            for _ in 0..100 {
                buf.clear();
                message.encode_into(&mut buf);
            }
        });
        assert_eq!(count, 0, "encode allocated {count} times for 100 messages");
    }
    let count = allocations_during(|| {
        for _ in 0..100 {
            std::hint::black_box(Timestamp::now());
        }
    });
    assert_eq!(count, 0, "Timestamp::now allocated");
}
