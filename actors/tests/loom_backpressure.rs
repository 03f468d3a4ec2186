//! loom models of full lanes: a blocking `Sender::send` waiting for room in a
//! capacity-1 lane, and two event loops flooding each other through
//! `Outbox`es without ever blocking on a send.
//!
//! Under loom, `Sender::send`'s backoff is `loom::thread::yield_now`, and
//! `Mailbox::park(None)` blocks on the model doorbell until rung (a lost
//! wake-up is a loom deadlock).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test 'loom_*'`
#![cfg(loom)]

use loom::thread;
use ringloop_actors::{Mailbox, MailboxConfig, Outbox};

fn mailbox(lane_capacity: usize) -> Mailbox<u32> {
    Mailbox::with_config(MailboxConfig::new().lane_capacity(lane_capacity)).unwrap()
}

/// A blocking `send` of three messages into a capacity-1 lane while the owner
/// drains: every message waits for the single slot to be freed, arrives once
/// and in order, and the sender is never left waiting on a lane the owner has
/// emptied.
///
/// The owner here yields instead of parking when it runs dry;
/// `blocking_send_into_a_capacity_1_lane_to_a_parking_owner` is the same
/// exchange with an owner that parks.
///
/// Mutation caught: loading `head` with `Relaxed` instead of `Acquire` in
/// `Producer::vacancy` makes loom report a causality violation (the sender
/// reuses the single slot while the owner's read of it is not ordered before).
#[test]
fn blocking_send_into_a_capacity_1_lane() {
    blocking_send_of_three(|_| thread::yield_now());
}

/// The blocking `send` above against an owner that parks (with no timeout)
/// whenever it runs dry: the sender waits for room while the owner may be
/// parking, and every message still wakes it. Each of the three sends can
/// meet the owner awake, announcing a park, or parked.
///
/// Until the owner's `announce_park`/`awake` became read-modify-writes, loom
/// 0.7.2 reported a false deadlock here (tokio-rs/loom#389; see `wake.rs`).
///
/// Mutation caught: removing the `fence(SeqCst)` in `WakeWord::notify` (or
/// in `announce_park`) loses a wake-up: the owner sleeps for good on a full
/// lane while the sender waits for room, and loom fails the model (maximum
/// number of branches exceeded by the sender's backoff).
#[test]
fn blocking_send_into_a_capacity_1_lane_to_a_parking_owner() {
    blocking_send_of_three(|mb| mb.park(None).unwrap());
}

/// The two models above: a sender thread makes three blocking `send`s into a
/// capacity-1 lane; the owner drains, calls `idle` whenever it found nothing,
/// and must get every message once, in order.
fn blocking_send_of_three(idle: fn(&mut Mailbox<u32>)) {
    loom::model(move || {
        let mut mb = mailbox(1);
        let mut tx = mb.sender();
        let producer = thread::spawn(move || {
            for i in 0..3 {
                tx.send(i).unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if mb.drain(usize::MAX, |m| got.push(m)) == 0 {
                idle(&mut mb);
            }
        }
        assert_eq!(got, [0, 1, 2]);
        producer.join().unwrap();
    });
}

/// One event loop: each turn it drains its mailbox, sends what is due through
/// its outbox (never blocking; the first turn sends a burst larger than the
/// lane) and flushes it. It parks only when it owes the peer nothing (nothing
/// held, everything sent): then all it sent is in the peer's lane, so the peer
/// can never be waiting on it. Otherwise it yields.
fn event_loop(inbox: &mut Mailbox<u32>, out: &mut Outbox<u32>, count: u32) {
    let mut next_in = 0;
    let mut next_out = 0;
    while next_in < count || next_out < count || out.held() > 0 {
        let got = inbox.drain(usize::MAX, |m| {
            assert_eq!(m, next_in, "out of order");
            next_in += 1;
        });
        // A burst: everything due goes out this turn, more than the lane holds.
        while next_out < count {
            out.send(next_out).unwrap();
            next_out += 1;
        }
        out.flush().unwrap();
        if got == 0 {
            if out.held() == 0 && next_out == count && next_in < count {
                inbox.park(None).unwrap();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// Two owners exchanging two messages each through `Outbox`es over
/// capacity-1 lanes: both lanes fill up, neither owner blocks on a send, both
/// finish and everything arrives in order.
///
/// Mutation caught: making `Outbox::send` wait for room (calling the blocking
/// `Sender::send`) instead of holding the message lets both owners wait on
/// each other's full lane forever: loom fails the model (its maximum number
/// of branches is exceeded by the two senders yielding to each other).
#[test]
fn two_owners_exchange_through_outboxes() {
    loom::model(|| {
        let mut a = mailbox(1);
        let mut b = mailbox(1);
        let mut a_to_b = Outbox::new(b.sender());
        let mut b_to_a = Outbox::new(a.sender());
        let right = thread::spawn(move || event_loop(&mut b, &mut b_to_a, 2));
        event_loop(&mut a, &mut a_to_b, 2);
        right.join().unwrap();
    });
}
