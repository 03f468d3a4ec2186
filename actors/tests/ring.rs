//! The SPSC ring on its own: FIFO across wrap-around, full and empty edges,
//! batch publish and batch consume, capacity rounding, and drop-exactly-once of
//! undelivered messages.
// Real threads and real file descriptors: these do not run under loom's
// model types (see `loom_*.rs` for the models).
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{spin_until, within, Tracker, HANG};
use ringloop_actors::ring::{self, MAX_CAPACITY};
use ringloop_actors::TrySendError;

/// Drains until a drain finds nothing. One `drain` call hands over what the
/// consumer's cached view of `tail` shows and re-reads the shared `tail` only
/// when that view is exhausted, so a single call may leave newer messages for
/// the next one; a call that returns 0 has re-read it and found nothing.
fn drain_all<T>(rx: &mut ring::Consumer<T>) -> Vec<T> {
    let mut got = Vec::new();
    while rx.drain(usize::MAX, |m| got.push(m)) > 0 {}
    got
}

/// Pushes and pops with a varying fill level so that both cursors wrap around
/// the slot array many times; every value must come out once, in order.
fn fifo_wraps(capacity: usize) {
    let (mut tx, mut rx) = ring::channel::<u64>(capacity);
    assert_eq!(tx.capacity(), capacity);
    assert_eq!(rx.capacity(), capacity);
    let mut next_in = 0u64;
    let mut next_out = 0u64;
    let rounds = 200 + 20_000 / capacity;
    for round in 0..rounds {
        // Fill to a level that cycles through 1..=capacity.
        let fill = 1 + round % capacity;
        for _ in 0..fill {
            tx.try_push(next_in).unwrap();
            next_in += 1;
        }
        // Pop all but (round % 2) of them, so the head lags by one sometimes.
        let keep = (round % 2).min(fill - 1);
        for _ in 0..fill - keep {
            assert_eq!(rx.pop(), Some(next_out));
            next_out += 1;
        }
        while let Some(v) = rx.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
    }
    assert_eq!(next_in, next_out);
    assert!(
        next_in > 10 * capacity as u64,
        "the cursors must have wrapped many times"
    );
    assert_eq!(rx.pop(), None);
}

#[test]
fn fifo_across_wraparound_capacity_2() {
    fifo_wraps(2);
}

#[test]
fn fifo_across_wraparound_capacity_4() {
    fifo_wraps(4);
}

#[test]
fn fifo_across_wraparound_capacity_1024() {
    fifo_wraps(1024);
}

#[test]
fn full_ring_hands_the_value_back() {
    let (mut tx, mut rx) = ring::channel::<String>(4);
    for i in 0..4 {
        tx.try_push(format!("m{i}")).unwrap();
    }
    match tx.try_push("overflow".to_string()) {
        Err(TrySendError::Full(v)) => assert_eq!(v, "overflow"),
        other => panic!("expected Full, got {other:?}"),
    }
    // Still full on a second try (the cached head is refreshed, still full).
    assert!(tx.try_push("again".to_string()).unwrap_err().is_full());
    // One slot freed: exactly one more fits.
    assert_eq!(rx.pop().as_deref(), Some("m0"));
    tx.try_push("m4".to_string()).unwrap();
    assert!(tx.try_push("m5".to_string()).unwrap_err().is_full());
    assert_eq!(drain_all(&mut rx), ["m1", "m2", "m3", "m4"]);
}

#[test]
fn empty_ring_pops_nothing() {
    let (_tx, mut rx) = ring::channel::<u8>(8);
    assert_eq!(rx.pop(), None);
    assert!(rx.is_empty());
    assert_eq!(rx.len(), 0);
    assert_eq!(rx.drain(usize::MAX, |_| panic!("nothing to drain")), 0);
}

#[test]
fn batch_is_invisible_until_published_then_visible_at_once() {
    let (mut tx, mut rx) = ring::channel::<u32>(8);
    {
        let mut batch = tx.batch();
        assert!(batch.is_empty());
        for i in 0..5 {
            batch.try_push(i).unwrap();
            assert_eq!(rx.len(), 0, "message {i} visible before publish");
            assert_eq!(rx.pop(), None);
        }
        assert_eq!(batch.len(), 5);
        batch.publish();
    }
    assert_eq!(rx.len(), 5, "the whole batch appears with one store");

    // Dropping a batch publishes it too.
    {
        let mut batch = tx.batch();
        batch.try_push(5).unwrap();
        batch.try_push(6).unwrap();
        assert_eq!(rx.len(), 5);
    }
    assert_eq!(rx.len(), 7);
    let mut got = Vec::new();
    assert_eq!(rx.drain(usize::MAX, |m| got.push(m)), 7);
    assert_eq!(got, (0..7).collect::<Vec<_>>());
}

#[test]
fn batch_stops_at_full_and_hands_the_value_back() {
    let (mut tx, mut rx) = ring::channel::<u32>(4);
    tx.try_push(100).unwrap();
    {
        let mut batch = tx.batch();
        for i in 0..3 {
            batch.try_push(i).unwrap();
        }
        match batch.try_push(3) {
            Err(TrySendError::Full(v)) => assert_eq!(v, 3),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(batch.len(), 3);
    }
    let mut got = Vec::new();
    rx.drain(usize::MAX, |m| got.push(m));
    assert_eq!(got, [100, 0, 1, 2]);
}

#[test]
fn empty_batch_publishes_nothing() {
    let (mut tx, mut rx) = ring::channel::<u32>(4);
    drop(tx.batch());
    tx.batch().publish();
    assert_eq!(rx.len(), 0);
    tx.try_push(1).unwrap();
    assert_eq!(rx.pop(), Some(1));
}

/// Across threads, a batch of `B` must be seen whole: the consumer, which
/// always takes everything visible, only ever sees multiples of `B`.
#[test]
fn batches_are_seen_whole_across_threads() {
    const B: usize = 4;
    const BATCHES: usize = 20_000;
    within(HANG, || {
        let (mut tx, mut rx) = ring::channel::<usize>(64);
        let producer = std::thread::spawn(move || {
            for b in 0..BATCHES {
                spin_until(|| {
                    // Wait for room for a whole batch, then publish it.
                    let mut batch = tx.batch();
                    for i in 0..B {
                        if let Err(e) = batch.try_push(b * B + i) {
                            assert!(e.is_full());
                            // The consumer frees whole batches and 64 is a
                            // multiple of B, so room comes in multiples of B:
                            // only the first push of a batch can find it full.
                            assert_eq!(i, 0, "a batch was split");
                            return false;
                        }
                    }
                    true
                });
            }
        });
        let mut next = 0;
        while next < BATCHES * B {
            let n = rx.drain(usize::MAX, |m| {
                assert_eq!(m, next);
                next += 1;
            });
            assert_eq!(n % B, 0, "saw part of a batch: {n} messages");
            if n == 0 {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn drain_honours_max() {
    let (mut tx, mut rx) = ring::channel::<u32>(16);
    for i in 0..10 {
        tx.try_push(i).unwrap();
    }
    let mut got = Vec::new();
    assert_eq!(rx.drain(0, |m| got.push(m)), 0);
    assert_eq!(rx.drain(3, |m| got.push(m)), 3);
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(rx.drain(1, |m| got.push(m)), 1);
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(rx.len(), 6);
    assert_eq!(rx.drain(usize::MAX, |m| got.push(m)), 6);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn capacity_is_rounded_up_to_a_power_of_two() {
    for (asked, real) in [
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 4),
        (5, 8),
        (1000, 1024),
        (1024, 1024),
        (1025, 2048),
    ] {
        let (mut tx, rx) = ring::channel::<u8>(asked);
        assert_eq!(tx.capacity(), real, "channel({asked})");
        assert_eq!(rx.capacity(), real, "channel({asked})");
        // And it really holds that many, not one more.
        for _ in 0..real {
            tx.try_push(0).unwrap();
        }
        assert!(tx.try_push(0).unwrap_err().is_full(), "channel({asked})");
    }
}

#[test]
#[should_panic(expected = "exceeds")]
fn capacity_above_the_maximum_panics() {
    let _ = ring::channel::<u8>(MAX_CAPACITY + 1);
}

#[test]
fn push_from_moves_what_fits_in_order() {
    let (mut tx, mut rx) = ring::channel::<u32>(4);
    let mut queue: VecDeque<u32> = (0..10).collect();
    assert_eq!(tx.push_from(&mut queue), 4);
    assert_eq!(queue.front(), Some(&4));
    assert_eq!(tx.push_from(&mut queue), 0, "full: nothing moves");
    assert_eq!(queue.len(), 6);
    assert_eq!(rx.pop(), Some(0));
    assert_eq!(tx.push_from(&mut queue), 1);
    assert_eq!(drain_all(&mut rx), [1, 2, 3, 4]);
    assert_eq!(tx.push_from(&mut queue), 4);
    assert_eq!(tx.push_from(&mut VecDeque::new()), 0);
    assert_eq!(drain_all(&mut rx), [5, 6, 7, 8]);
    assert_eq!(queue, [9]);
}

#[test]
fn closed_flags_follow_the_endpoints() {
    let (mut tx, rx) = ring::channel::<u32>(4);
    assert!(!tx.is_closed());
    assert!(!rx.is_producer_closed());
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.try_push(7), Err(TrySendError::Closed(7)));
    let mut queue = VecDeque::from([1, 2]);
    assert_eq!(tx.push_from(&mut queue), 0);
    assert_eq!(queue.len(), 2, "nothing taken from the queue once closed");
    let mut batch = tx.batch();
    assert_eq!(batch.try_push(8), Err(TrySendError::Closed(8)));

    let (mut tx, mut rx) = ring::channel::<u32>(4);
    tx.try_push(1).unwrap();
    drop(tx);
    assert!(rx.is_producer_closed());
    assert_eq!(rx.pop(), Some(1), "messages outlive their producer");
    assert_eq!(rx.pop(), None);
}

#[test]
fn undelivered_messages_dropped_once_consumer_dropped_first() {
    let tracker = Tracker::new(6);
    let (mut tx, mut rx) = ring::channel(4);
    // Move the cursors off zero so the leftovers straddle the wrap point.
    tx.try_push(tracker.token(0)).unwrap();
    tx.try_push(tracker.token(1)).unwrap();
    drop(rx.pop());
    drop(rx.pop());
    for id in 2..6 {
        tx.try_push(tracker.token(id)).unwrap();
    }
    assert_eq!(tracker.total(), 2);
    drop(rx);
    assert_eq!(
        tracker.total(),
        6,
        "the consumer's drop reclaims what it never read, even with the producer alive"
    );
    drop(tx);
    tracker.assert_each_dropped_once();
}

#[test]
fn undelivered_messages_dropped_once_producer_dropped_first() {
    let tracker = Tracker::new(5);
    let (mut tx, mut rx) = ring::channel(8);
    for id in 0..5 {
        tx.try_push(tracker.token(id)).unwrap();
    }
    drop(tx);
    let first = rx.pop().unwrap();
    assert_eq!(first.id, 0);
    drop(first);
    assert_eq!(tracker.total(), 1);
    drop(rx);
    tracker.assert_each_dropped_once();
}

#[test]
fn undelivered_messages_dropped_once_with_both_ends_holding_messages() {
    // Messages taken out and still alive, messages in the ring, a message
    // refused as Full and handed back: each is dropped exactly once.
    let tracker = Tracker::new(4);
    let (mut tx, mut rx) = ring::channel(2);
    tx.try_push(tracker.token(0)).unwrap();
    tx.try_push(tracker.token(1)).unwrap();
    let refused = tx.try_push(tracker.token(2)).unwrap_err().into_inner();
    let taken = rx.pop().unwrap();
    tx.try_push(tracker.token(3)).unwrap();
    drop(tx);
    drop(rx);
    assert_eq!(tracker.total(), 2, "ids 1 and 3 were in the ring");
    drop(refused);
    drop(taken);
    tracker.assert_each_dropped_once();
}

#[test]
fn batched_messages_are_dropped_once() {
    let tracker = Tracker::new(3);
    let (mut tx, rx) = ring::channel(4);
    {
        let mut batch = tx.batch();
        for id in 0..3 {
            batch.try_push(tracker.token(id)).unwrap();
        }
    }
    drop(rx);
    drop(tx);
    tracker.assert_each_dropped_once();
}

#[test]
fn panicking_drain_neither_double_drops_nor_loses_the_rest() {
    let tracker = Tracker::new(6);
    let (mut tx, mut rx) = ring::channel(8);
    for id in 0..5 {
        tx.try_push(tracker.token(id)).unwrap();
    }
    let mut kept = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        rx.drain(usize::MAX, |t| {
            if t.id == 2 {
                panic!("handler failed on message 2");
            }
            kept.push(t);
        })
    }));
    assert!(result.is_err());
    assert_eq!(kept.iter().map(|t| t.id).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        tracker.drops_of(2),
        1,
        "the message being handled is dropped by the unwind"
    );
    assert_eq!(tracker.total(), 1);
    // The rest are still there, in order, and the ring still works.
    tx.try_push(tracker.token(5)).unwrap();
    let rest: Vec<usize> = drain_all(&mut rx).iter().map(|t| t.id).collect();
    assert_eq!(rest, [3, 4, 5]);
    drop(kept);
    drop(tx);
    drop(rx);
    tracker.assert_each_dropped_once();
}

#[test]
fn panicking_drain_then_teardown_drops_each_message_once() {
    // No later drain gets a chance to store `head`: the unwinding drain must
    // have stored it itself, or tearing the ring down would drop the taken
    // messages a second time.
    let tracker = Tracker::new(4);
    let (mut tx, mut rx) = ring::channel(4);
    for id in 0..4 {
        tx.try_push(tracker.token(id)).unwrap();
    }
    let mut kept = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        rx.drain(usize::MAX, |t| {
            if t.id == 1 {
                panic!("handler failed on message 1");
            }
            kept.push(t);
        })
    }));
    assert!(result.is_err());
    drop(rx);
    drop(tx);
    assert_eq!(tracker.total(), 3, "ids 1, 2 and 3; id 0 is still kept");
    drop(kept);
    tracker.assert_each_dropped_once();
}

#[test]
fn panicking_drain_releases_the_slots_it_took() {
    // After a panic the taken slots must be free again for the producer.
    let (mut tx, mut rx) = ring::channel::<u32>(2);
    tx.try_push(0).unwrap();
    tx.try_push(1).unwrap();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        rx.drain(usize::MAX, |_| panic!("boom"))
    }));
    tx.try_push(2).unwrap();
    assert!(tx.try_push(3).unwrap_err().is_full());
    assert_eq!(rx.pop(), Some(1));
    assert_eq!(rx.pop(), Some(2));
}

fn cross_thread_fifo(capacity: usize, count: u64) {
    within(HANG, move || {
        let (mut tx, mut rx) = ring::channel::<u64>(capacity);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < count {
                // Alternate single pushes and batches to cover both paths.
                if i % 3 == 0 {
                    match tx.try_push(i) {
                        Ok(()) => i += 1,
                        Err(e) => {
                            assert!(e.is_full());
                            std::thread::yield_now();
                        }
                    }
                } else {
                    let mut batch = tx.batch();
                    while i < count && batch.try_push(i).is_ok() {
                        i += 1;
                    }
                    if batch.is_empty() {
                        drop(batch);
                        std::thread::yield_now();
                    }
                }
            }
        });
        let mut next = 0u64;
        while next < count {
            let n = if next % 2 == 0 {
                rx.drain(usize::MAX, |v| {
                    assert_eq!(v, next);
                    next += 1;
                })
            } else {
                match rx.pop() {
                    Some(v) => {
                        assert_eq!(v, next);
                        next += 1;
                        1
                    }
                    None => 0,
                }
            };
            if n == 0 {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn cross_thread_million_u64_fifo() {
    cross_thread_fifo(1024, 1_000_000);
}

#[test]
fn cross_thread_fifo_capacity_2() {
    cross_thread_fifo(2, 200_000);
}

#[test]
fn cross_thread_messages_dropped_once_when_consumer_quits_early() {
    const N: usize = 50_000;
    let tracker = Tracker::new(N);
    let t = tracker.clone();
    within(HANG, move || {
        let (mut tx, mut rx) = ring::channel(16);
        let producer = std::thread::spawn(move || {
            let mut refused = 0;
            for id in 0..N {
                let mut token = t.token(id);
                loop {
                    match tx.try_push(token) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            token = back;
                            std::thread::yield_now();
                        }
                        Err(TrySendError::Closed(back)) => {
                            drop(back);
                            refused += 1;
                            break;
                        }
                    }
                }
            }
            refused
        });
        let mut taken = 0;
        while taken < N / 2 {
            taken += rx.drain(usize::MAX, drop);
        }
        drop(rx);
        let refused = producer.join().unwrap();
        // The ring holds 16, so most of the second half was refused.
        assert!(refused > 0);
    });
    tracker.assert_each_dropped_once();
}
