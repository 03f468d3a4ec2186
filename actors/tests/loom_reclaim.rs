//! loom model of the ring's reclaim handshake: a consumer dropped while its
//! producer pushes. Every message must be dropped exactly once, and a message
//! pushed while the consumer goes away must be dropped before the producer
//! itself is dropped (not kept alive by a producer that lives on).
//!
//! The producer publishes, fences (`SeqCst`), and reclaims if it sees the
//! consumer gone; the consumer's `Drop` marks itself gone, fences, and
//! reclaims what it never read. Mutations this model catches (each checked
//! by hand, 2026-11-21):
//! - not calling `reclaim_if_consumer_gone` after a push: a message is left
//!   in the ring while the producer lives ("left behind");
//! - skipping the re-check of `tail` after releasing `reclaiming` in
//!   `Shared::reclaim`: same.
//!
//! Not caught: removing the `fence(SeqCst)` in `Consumer::drop`. The Dekker
//! argument needs it (without it, the consumer's read of `tail` and the
//! producer's read of `consumer_closed` may both be stale, as a store buffer
//! allows), but loom, which fences only one side here, did not produce that
//! outcome even without a preemption bound; the fence stays, justified by the
//! argument rather than by this model.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test loom_reclaim`
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringloop_actors::ring;

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_message_pushed_as_the_consumer_goes_is_dropped_exactly_once_and_promptly() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, rx) = ring::channel::<Counted>(2);
        let consumer = thread::spawn(move || drop(rx));
        const MESSAGES: usize = 2;
        for _ in 0..MESSAGES {
            match tx.try_push(Counted(drops.clone())) {
                Ok(()) => {
                    // The caller's fence between publish and reclaim (a
                    // mailbox sender's wake-up check provides it).
                    fence(Ordering::SeqCst);
                    tx.reclaim_if_consumer_gone();
                }
                // Refused (the consumer is gone): handed back, dropped here.
                Err(refused) => drop(refused),
            }
        }
        consumer.join().unwrap();
        // Both ends have run their handshake; the producer is still alive,
        // yet every message is gone: none is kept alive by it.
        assert_eq!(
            drops.load(Ordering::SeqCst),
            MESSAGES,
            "a message was left behind while its producer lives"
        );
        drop(tx);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            MESSAGES,
            "a message was dropped twice"
        );
    });
}
