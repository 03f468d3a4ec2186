//! loom models of causal order across lanes: when one send happens-before
//! another (the first returns, a flag is set, another thread sees the flag
//! and sends), the owner receives them in that order, whichever lanes they
//! travel on. This is the worker-pool pattern of `examples/echo_pool`: a
//! worker's `async_write` returns, it sets `done`, the loop sees `done` and
//! hands the next job to another worker, whose write must not overtake.
//!
//! Each producer has its own `Sender` (its own lane), as pool workers have
//! through `SharedSender`'s per-thread lanes. (`SharedSender` itself keeps
//! its lanes in a std `thread_local!`, which loom's threads share, so the
//! models use `Sender`s; `tests/senders.rs` covers `SharedSender` with real
//! threads.)
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p ringloop-actors --release --test loom_causal`
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringloop_actors::{Mailbox, MailboxConfig, Sender};

fn mailbox() -> Mailbox<u32> {
    Mailbox::with_config(MailboxConfig::new().lane_capacity(2)).unwrap()
}

/// Runs `first` on one thread, which then sets a flag, and `second` on
/// another, once it sees the flag: `first`'s sends happen-before `second`'s
/// (exactly the echo_pool pattern). Returns the two threads.
fn flag_ordered(
    first: impl FnOnce() + Send + 'static,
    second: impl FnOnce() + Send + 'static,
) -> [thread::JoinHandle<()>; 2] {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    [
        thread::spawn(move || {
            first();
            // Release: publishes "my sends returned" to the second thread.
            set.store(true, Ordering::Release);
        }),
        thread::spawn(move || {
            // Acquire: pairs with the Release above, so the first thread's
            // sends happen-before everything after the loop.
            while !flag.load(Ordering::Acquire) {
                thread::yield_now();
            }
            second();
        }),
    ]
}

/// Drains `expected` messages, checks them against `want` and joins the
/// producers.
fn expect_in_order(
    mailbox: &mut Mailbox<u32>,
    producers: [thread::JoinHandle<()>; 2],
    want: &[u32],
) {
    assert_eq!(
        drain_all(mailbox, want.len()),
        want,
        "a causally later send overtook"
    );
    for p in producers {
        p.join().unwrap();
    }
}

/// The owner drains until `expected` messages arrived, parking (no timeout)
/// whenever a drain hands over nothing, and returns them in the order
/// received. Under loom `park(None)` blocks until the doorbell rings, so an
/// owner left parked while a message waits is reported as a deadlock.
/// (Parking rather than spinning also keeps loom's branch count bounded.)
fn drain_all(mailbox: &mut Mailbox<u32>, expected: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < expected {
        if mailbox.drain(usize::MAX, |m| got.push(m)) == 0 {
            mailbox.park(None).unwrap();
        }
    }
    got
}

/// Two producers, causally ordered through an atomic flag: the first sends 1
/// and sets the flag; the second waits for the flag and sends 2. The owner
/// must receive `[1, 2]`.
///
/// Fails on the round-robin drain of per-producer lanes (before issue 18):
/// the owner reads the first lane empty, then both sends happen, then it
/// reads 2 from the second lane and hands it over first.
#[test]
fn sends_ordered_through_a_flag_arrive_in_that_order() {
    loom::model(|| {
        let mut mb = mailbox();
        let (mut first, mut second) = (mb.sender(), mb.sender());
        let producers = flag_ordered(
            move || first.try_send(1).unwrap(),
            move || second.try_send(2).unwrap(),
        );
        expect_in_order(&mut mb, producers, &[1, 2]);
    });
}

/// The same with the lanes in the other order in the owner's lane list, and
/// a third, unrelated message racing both: causal pairs stay ordered, the
/// unrelated message may land anywhere.
#[test]
fn causal_pair_stays_ordered_beside_an_unrelated_send() {
    loom::model(|| {
        let mut mb = mailbox();
        let mut later = mb.sender(); // adopted first: scanned first
        let mut earlier = mb.sender();
        let mut other = mb.sender();
        let producers = flag_ordered(
            move || earlier.try_send(1).unwrap(),
            move || later.try_send(2).unwrap(),
        );
        other.try_send(9).unwrap();
        let got = drain_all(&mut mb, 3);
        let pos = |m| got.iter().position(|&x| x == m).unwrap();
        assert!(pos(1) < pos(2), "a causally later send overtook: {got:?}");
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// The causally earlier message travels on a lane the owner has not adopted
/// yet (its `Sender` is opened inside the producer thread), the later one on
/// a lane it has adopted. Only the `new_lanes` hint, read after the scan,
/// tells the owner that the adopted lane's new message may have an unseen
/// predecessor. (Once the template's lane is reclaimed the owner has one
/// adopted lane, and its one-lane fast path makes the same check.)
///
/// Mutation caught: dropping the `new_lanes` re-check at the end of
/// `Mailbox::scan` makes loom report the overtaking.
#[test]
fn a_predecessor_on_a_lane_not_yet_adopted_is_not_overtaken() {
    loom::model(|| {
        let mut mb = mailbox();
        // `second` first: its lane is the scan's start lane, whose new
        // messages only the `new_lanes` re-check can hold back.
        let mut second = mb.sender();
        let template: Sender<u32> = mb.sender();
        // Adopt both lanes now, so that the clone below is the only new one.
        mb.drain(0, |_| ());
        let producers = flag_ordered(
            move || {
                let mut first = template.clone(); // a new lane, registered now
                drop(template);
                first.try_send(1).unwrap();
            },
            move || second.try_send(2).unwrap(),
        );
        expect_in_order(&mut mb, producers, &[1, 2]);
    });
}

/// A batch is ordered as a whole: the first producer publishes `[1, 2]` in
/// one batch, then sets the flag; the second sends 3. The owner receives
/// `[1, 2, 3]`.
#[test]
fn a_batch_is_ordered_before_a_causally_later_send() {
    loom::model(|| {
        let mut mb = mailbox();
        let (mut first, mut second) = (mb.sender(), mb.sender());
        let producers = flag_ordered(
            move || {
                let mut batch = first.batch();
                batch.try_send(1).unwrap();
                batch.try_send(2).unwrap();
            },
            move || second.try_send(3).unwrap(),
        );
        expect_in_order(&mut mb, producers, &[1, 2, 3]);
    });
}

/// Batch publish from a queue (`Sender::try_send_from`, what an `Outbox`
/// flush uses) is ordered as a whole too: `[1, 2]` from one queue, then the
/// flag, then 3 from another producer.
#[test]
fn a_queue_flush_is_ordered_before_a_causally_later_send() {
    loom::model(|| {
        let mut mb = mailbox();
        let (mut first, mut second) = (mb.sender(), mb.sender());
        let producers = flag_ordered(
            move || {
                let mut queue = std::collections::VecDeque::from([1, 2]);
                assert_eq!(first.try_send_from(&mut queue), Ok(2));
            },
            move || second.try_send(3).unwrap(),
        );
        expect_in_order(&mut mb, producers, &[1, 2, 3]);
    });
}
