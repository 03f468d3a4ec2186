//! loom models of the SPSC ring protocol (`ring.rs`): slots handed from the
//! producer to the consumer by the `tail` Release/Acquire pair and back by the
//! `head` pair, across wrap-around, for single and batched operations.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test 'loom_*'`
#![cfg(loom)]

use loom::thread;
use ringloop_actors::ring;

/// FIFO across wrap-around: capacity 2, three messages, so the producer
/// writes slot 0 a second time after the consumer freed it.
///
/// Mutation caught: storing `tail` with `Relaxed` instead of `Release` in
/// `Producer::publish` makes loom report a causality violation (the consumer
/// reads a slot whose write it does not happen-after). Equally, storing `head`
/// with `Relaxed` in `Consumer::release` is caught when the producer reuses
/// slot 0 for the third message.
#[test]
fn fifo_across_wraparound() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::channel::<u32>(2);
        let producer = thread::spawn(move || {
            for i in 0..3 {
                let mut value = i;
                loop {
                    match tx.try_push(value) {
                        Ok(()) => break,
                        Err(e) => {
                            assert!(e.is_full());
                            value = e.into_inner();
                            thread::yield_now();
                        }
                    }
                }
            }
        });
        let mut next = 0;
        while next < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

/// Batch publish and batch consume: two messages pushed through
/// `Producer::batch` appear together or not at all, then a third one wraps
/// around; `Consumer::drain` takes them in order.
///
/// Mutation caught: publishing inside `PushBatch::try_push` (one `tail` store
/// per message instead of one per batch) lets the consumer's drain see one
/// message of the batch, and the `n != 1` assertion fails.
#[test]
fn batch_publish_and_batch_consume() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::channel::<u32>(2);
        let producer = thread::spawn(move || {
            {
                let mut batch = tx.batch();
                batch.try_push(0).unwrap();
                batch.try_push(1).unwrap();
            } // published here, with one store
            while tx.try_push(2).is_err() {
                thread::yield_now();
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            let before = got.len();
            let n = rx.drain(usize::MAX, |m| got.push(m));
            if before == 0 {
                assert_ne!(n, 1, "saw half of a batch");
            }
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2]);
        producer.join().unwrap();
    });
}

/// `push_from` (the batch publish behind `Sender::try_send_from` and
/// `Outbox::flush`) against a consumer draining with `max = 1`.
///
/// Mutation caught: loading `head` with `Relaxed` instead of `Acquire` in
/// `Producer::vacancy` makes loom report a causality violation (the producer
/// overwrites slot 0 while the consumer's read of it is not ordered before).
#[test]
fn push_from_against_drain_max_one() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::channel::<u32>(2);
        let producer = thread::spawn(move || {
            let mut queue: std::collections::VecDeque<u32> = (0..3).collect();
            while !queue.is_empty() {
                if tx.push_from(&mut queue) == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if rx.drain(1, |m| got.push(m)) == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2]);
        producer.join().unwrap();
    });
}

/// A consumer that sees the producer gone must still find every message it
/// published (this is what lets a mailbox reclaim a lane safely).
///
/// Mutation caught: storing `producer_closed` with `Relaxed` instead of
/// `Release` in `Producer::drop` lets the consumer see the flag but a stale,
/// empty `tail` (the "closed but empty" assertion fails). Through the mailbox
/// this is masked by the `SeqCst` fence every send ends with, so it is checked
/// here on the bare ring.
#[test]
fn producer_closed_implies_all_messages_visible() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::channel::<u32>(2);
        let producer = thread::spawn(move || {
            tx.try_push(0).unwrap();
            tx.try_push(1).unwrap();
        });
        if rx.is_producer_closed() {
            let mut got = Vec::new();
            while rx.drain(usize::MAX, |m| got.push(m)) > 0 {}
            assert_eq!(got, [0, 1], "closed but empty");
        }
        producer.join().unwrap();
    });
}
