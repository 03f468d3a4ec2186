//! loom models of shutdown races: sends racing the mailbox being dropped or
//! closed, and a sender going away while the owner drains its lane. The rule
//! checked: every message is delivered, handed back in an `Err`, or (if it
//! was accepted into a ring nobody will drain) dropped exactly once with the
//! ring; none is lost, leaked or dropped twice.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test 'loom_*'`
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringloop_actors::{Mailbox, MailboxConfig, Outbox, TrySendError};

fn mailbox<T>(lane_capacity: usize) -> Mailbox<T> {
    Mailbox::with_config(MailboxConfig::new().lane_capacity(lane_capacity)).unwrap()
}

/// A message that counts its drops.
struct Token {
    drops: Arc<AtomicUsize>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A producer sends two messages while the owner drains once and drops the
/// mailbox. The producer's lane is opened on its own thread (by cloning its
/// `Sender`), so the owner may drop the mailbox before ever adopting it.
/// Every message is delivered, handed back, or dropped by the ring, exactly
/// once; and a send made after the producer has seen the mailbox gone must
/// fail with `Closed`.
///
/// Mutation caught: removing `close_registry()` from `Mailbox::drop` lets a
/// send into the never-adopted lane succeed after the drop (the assertion
/// "send after the mailbox was dropped must be Closed" fails).
#[test]
fn sends_race_the_mailbox_drop() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let mut mb = mailbox::<Token>(2);
        let tx = mb.sender();
        let producer = {
            let drops = drops.clone();
            let gone = gone.clone();
            thread::spawn(move || {
                let mut lane = tx.clone();
                drop(tx);
                let mut handed_back = 0;
                for _ in 0..2 {
                    let saw_gone = gone.load(Ordering::Acquire);
                    let token = Token {
                        drops: drops.clone(),
                    };
                    match lane.try_send(token) {
                        Ok(()) => assert!(
                            !saw_gone,
                            "send after the mailbox was dropped must be Closed"
                        ),
                        Err(TrySendError::Closed(back)) => {
                            handed_back += 1;
                            drop(back);
                        }
                        Err(TrySendError::Full(_)) => unreachable!("two messages fit"),
                    }
                }
                handed_back
            })
        };
        let mut delivered = 0;
        mb.drain(usize::MAX, |token| {
            delivered += 1;
            drop(token);
        });
        drop(mb);
        gone.store(true, Ordering::Release);
        let handed_back = producer.join().unwrap();
        // Everything is gone now: both ends of every ring are dropped.
        assert!(delivered + handed_back <= 2);
        assert_eq!(
            drops.load(Ordering::Relaxed),
            2,
            "each message dropped exactly once"
        );
    });
}

/// An `Outbox` keeps sending (one into the capacity-1 lane, then two into its
/// overflow) while the owner closes the mailbox; the owner keeps the mailbox
/// and drains it after the sender is done. Every message must come out of
/// `close_and_drain` or be handed back (by `send` or a final `flush`).
///
/// Mutation caught (this model found it as a real bug, now fixed): flushing
/// with `let _ = self.flush()` in `Outbox::send`, as the code did, drops the
/// held messages silently when the mailbox closes between `send`'s
/// `is_closed` check and its flush, including the one `send` accepted with
/// `Ok`: only `[0]` comes out.
#[test]
fn outbox_sends_race_close() {
    loom::model(|| {
        let mut mb = mailbox::<u32>(1);
        let mut out = Outbox::new(mb.sender());
        let owner = thread::spawn(move || {
            mb.close();
            mb
        });
        let mut handed_back = Vec::new();
        for i in 0..3 {
            if let Err(e) = out.send(i) {
                handed_back.push(e.0);
            }
        }
        let mut mb = owner.join().unwrap();
        if let Err(e) = out.flush() {
            handed_back.extend(e.0);
        }
        let mut all: Vec<u32> = mb.close_and_drain().into_iter().collect();
        all.extend(handed_back);
        all.sort_unstable();
        assert_eq!(
            all,
            [0, 1, 2],
            "a message was neither delivered nor handed back"
        );
    });
}

/// A sender sends two messages and is dropped while the owner drains; the
/// owner stops once the lanes have been reclaimed. A second, idle sender is
/// dropped up front, so the owner's first drain already runs the reclaim pass
/// while the busy lane is still live. Reclaiming a lane must wait until it is
/// drained to its end: both messages are delivered.
///
/// Mutation caught: in `Mailbox::drain`'s reclaim pass (`retain_mut`),
/// testing `is_empty()` before `is_producer_closed()` lets the busy lane be
/// seen empty, then receive its messages and close, then be seen closed and
/// reclaimed with its messages in it (the assertion fails with `[]`).
///
/// Not a mutation this model (or any model through the mailbox) can catch:
/// storing `producer_closed` with `Relaxed` in `Producer::drop`. Every
/// mailbox send ends with the `SeqCst` fence of `WakeWord::notify`, which
/// also acts as a release fence for that later store, so the owner's
/// `Acquire` load of the flag still sees every message. The `Release` matters
/// for raw `ring` users only (a loom model of the bare ring catches it).
#[test]
fn lane_is_drained_to_its_end_before_reclaim() {
    loom::model(|| {
        let mut mb = mailbox::<u32>(2);
        let idle = mb.sender();
        let mut busy = mb.sender();
        drop(idle);
        let producer = thread::spawn(move || {
            busy.try_send(0).unwrap();
            busy.try_send(1).unwrap();
        });
        let mut got = Vec::new();
        loop {
            let n = mb.drain(usize::MAX, |m| got.push(m));
            if mb.lane_count() == 0 {
                break;
            }
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1], "lane reclaimed before it was drained");
        producer.join().unwrap();
    });
}
