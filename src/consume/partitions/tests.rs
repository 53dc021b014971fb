//! The partition table's rules, record by record.
use rdkafka::message::OwnedMessage;

use super::*;

fn record(partition: i32, offset: i64, key: &str) -> OwnedMessage {
    OwnedMessage::new(
        Some(vec![b'x'; 10]),
        Some(key.as_bytes().to_vec()),
        "t".to_owned(),
        rdkafka::Timestamp::NotAvailable,
        partition,
        offset,
        None,
    )
}

/// Partition `partition` of topic "t", the first topic assigned.
fn tp(partition: i32) -> Tp {
    Tp {
        topic: 0,
        partition,
    }
}

fn assign(partitions: &mut Partitions, numbers: &[i32], now: Tick) {
    let tps: Vec<Tp> = numbers.iter().map(|&p| partitions.tp("t", p)).collect();
    partitions.assign(&tps, now);
}

fn window(records: usize) -> Window {
    Window {
        records,
        bytes: usize::MAX,
    }
}

#[test]
fn a_lane_holds_its_records_until_its_job_is_over() {
    let mut partitions = Partitions::new(ProcessingOrder::Key, window(100));
    let now = Tick::now();
    assign(&mut partitions, &[0], now);
    for (offset, key) in [(0, "a"), (1, "b"), (2, "a")] {
        assert!(partitions.receive(&record(0, offset, key), now));
    }
    assert_eq!(partitions.ready_records(), 3);
    let (lane, epoch, chunk) = partitions.take(10).expect("lane a");
    assert_eq!(chunk.len(), 2, "both records of key a");
    assert!(partitions.receive(&record(0, 3, "a"), now));
    let (_, _, other) = partitions.take(10).expect("lane b");
    assert_eq!(other.entries()[0].offset, 1);
    assert!(partitions.take(10).is_none(), "a is busy");
    partitions.free(lane);
    let (_, _, rest) = partitions.take(10).expect("a again");
    assert_eq!(rest.entries()[0].offset, 3);
    partitions.finish(tp(0), epoch, [(1, 0)]);
    assert_eq!(
        partitions.get(tp(0)).and_then(|s| s.offsets.commit_point()),
        None
    );
    partitions.finish(tp(0), epoch, [(0, 0)]);
    assert_eq!(
        partitions.get(tp(0)).and_then(|s| s.offsets.commit_point()),
        Some(2)
    );
}

#[test]
fn a_window_full_for_a_while_pauses_until_half_of_it_is_finished() {
    let mut partitions = Partitions::new(ProcessingOrder::Partition, window(4));
    let now = Tick::now();
    assign(&mut partitions, &[0, 1], now);
    let epoch = partitions.get(tp(0)).map(|s| s.epoch).expect("assigned");
    (0..4).for_each(|o| assert!(partitions.receive(&record(0, o, "k"), now)));
    assert_eq!(
        partitions.pauses_due(now),
        (vec![], vec![]),
        "full, not yet for long"
    );
    assert!(partitions.any_full());
    let later = now.after(PAUSE_AFTER);
    assert_eq!(partitions.pauses_due(later), (vec![tp(0)], vec![]));
    partitions.paused(&[tp(0)], true, later);
    assert!(!partitions.any_full(), "paused: the others may be polled");
    partitions.finish(tp(0), epoch, [(0, 0)]);
    assert_eq!(
        partitions.pauses_due(later),
        (vec![], vec![]),
        "3 of 4: still full"
    );
    partitions.finish(tp(0), epoch, [(1, 0)]);
    assert_eq!(partitions.pauses_due(later), (vec![], vec![tp(0)]));
}

#[test]
fn a_revoked_partition_drops_its_hand_and_a_new_assignment_starts_afresh() {
    let mut partitions = Partitions::new(ProcessingOrder::Partition, window(100));
    let now = Tick::now();
    assign(&mut partitions, &[0], now);
    let first = partitions.get(tp(0)).map(|s| s.epoch).expect("assigned");
    (0..3).for_each(|o| assert!(partitions.receive(&record(0, o, "k"), now)));
    partitions.begin_revoke(&[tp(0)]);
    assert_eq!(partitions.ready_records(), 0);
    assert!(partitions.take(10).is_none());
    partitions.remove(&[tp(0)]);
    assign(&mut partitions, &[0], now);
    assert!(
        !partitions.is_current(tp(0), first),
        "work of the old assignment counts for nothing"
    );
    assert!(
        partitions.receive(&record(0, 0, "k"), now),
        "read again from the commit"
    );
}
