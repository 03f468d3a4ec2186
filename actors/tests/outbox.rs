//! The outbox: never blocks, keeps order through its local overflow, hands
//! everything back once the destination is closed, and lets two event loops
//! flood each other through tiny lanes without deadlocking.
// Real threads and real file descriptors: these do not run under loom's
// model types (see `loom_*.rs` for the models).
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;

use common::{within, HANG};
use ringloop_actors::{DoorbellKind, Mailbox, MailboxConfig, Outbox, SendError};

fn mailbox<T>(lane_capacity: usize, kind: DoorbellKind) -> Mailbox<T> {
    Mailbox::with_config(
        MailboxConfig::new()
            .lane_capacity(lane_capacity)
            .doorbell(kind),
    )
    .unwrap()
}

fn drain_all<T>(mailbox: &mut Mailbox<T>) -> Vec<T> {
    let mut got = Vec::new();
    while mailbox.drain(usize::MAX, |m| got.push(m)) > 0 {}
    got
}

#[test]
fn overflow_keeps_order_and_flush_moves_what_fits() {
    let mut mb = mailbox::<u32>(2, DoorbellKind::EventFd);
    let mut out = Outbox::new(mb.sender());
    for i in 0..7 {
        out.send(i).unwrap();
    }
    assert_eq!(out.held(), 5);
    assert_eq!(out.flush(), Ok(false), "lane still full");
    let mut got = drain_all(&mut mb);
    assert_eq!(got, [0, 1]);
    // A send while messages are held must queue behind them, even though the
    // lane has room now.
    out.send(7).unwrap();
    got.extend(drain_all(&mut mb));
    while out.flush() != Ok(true) {
        got.extend(drain_all(&mut mb));
    }
    got.extend(drain_all(&mut mb));
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    assert_eq!(out.held(), 0);
    assert_eq!(out.flush(), Ok(true));
}

#[test]
fn closed_destination_hands_everything_back() {
    let mut mb = mailbox::<u32>(1, DoorbellKind::EventFd);
    let mut out = Outbox::new(mb.sender());
    out.send(0).unwrap(); // in the lane
    out.send(1).unwrap(); // held
    out.send(2).unwrap(); // held
    assert!(!out.is_closed());
    mb.close();
    assert!(out.is_closed());
    // New sends fail with the message; held ones come back from flush.
    assert_eq!(out.send(3), Err(SendError(3)));
    assert_eq!(out.flush(), Err(SendError(VecDeque::from([1, 2]))));
    assert_eq!(out.held(), 0);
    assert_eq!(out.flush(), Ok(true));
    assert_eq!(
        out.send(4),
        Err(SendError(4)),
        "empty overflow, closed lane"
    );
    assert_eq!(drain_all(&mut mb), [0]);
}

/// One side of the exchange: an event loop that never blocks on a send. Each
/// turn it drains its mailbox, produces a few messages into its outbox and
/// flushes it. It parks (no timeout) only when nothing is held and nothing is
/// left to send: then everything it owes the peer is in the peer's lane, so
/// the peer cannot be stuck waiting on it.
fn event_loop(mut inbox: Mailbox<u32>, mut out: Outbox<u32>, count: u32) {
    let mut next_in = 0;
    let mut next_out = 0;
    while next_in < count || next_out < count || out.held() > 0 {
        let got = inbox.drain(64, |m| {
            assert_eq!(m, next_in, "out of order");
            next_in += 1;
        });
        // Produce up to 8 new messages a turn, bounded overflow as a real
        // loop would (it stops reading its sockets while the outbox is big).
        for _ in 0..8 {
            if next_out < count && out.held() < 32 {
                out.send(next_out).unwrap();
                next_out += 1;
            }
        }
        out.flush().unwrap();
        if got == 0 {
            if out.held() == 0 && next_out == count && next_in < count {
                inbox.park(None).unwrap();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[test]
fn two_loops_flood_each_other_through_capacity_2_lanes() {
    const N: u32 = 10_000;
    for kind in [DoorbellKind::EventFd, DoorbellKind::Pipe] {
        within(HANG, move || {
            let a = mailbox::<u32>(2, kind);
            let b = mailbox::<u32>(2, kind);
            let a_to_b = Outbox::new(b.sender());
            let b_to_a = Outbox::new(a.sender());
            let left = std::thread::spawn(move || event_loop(a, a_to_b, N));
            let right = std::thread::spawn(move || event_loop(b, b_to_a, N));
            left.join().unwrap();
            right.join().unwrap();
        });
    }
}

/// The outbox's place in the mailbox's causal order: a message that went
/// straight into the lane is ordered by its `send`; a held one by the
/// `flush` that moves it (documented); once nothing is held, everything the
/// outbox sent precedes any later send by another thread.
#[test]
fn outbox_messages_join_the_causal_order_when_they_enter_the_lane() {
    let mut mb = mailbox::<(char, u32)>(1, DoorbellKind::EventFd);
    let mut out = Outbox::new(mb.sender());
    let other = mb.shared_sender();
    let send_from_another_thread = |m| {
        let other = other.clone();
        // The join makes this send happen after everything above it.
        std::thread::spawn(move || other.send(m).unwrap())
            .join()
            .unwrap();
    };

    // Straight into the lane: ordered by `send`.
    out.send(('o', 0)).unwrap();
    assert_eq!(out.held(), 0);
    send_from_another_thread(('t', 0));
    assert_eq!(drain_all(&mut mb), [('o', 0), ('t', 0)]);

    // Held (the lane holds one): ordered by the flush, so a later send from
    // another thread may come first, while the outbox's own order holds.
    out.send(('o', 1)).unwrap();
    out.send(('o', 2)).unwrap();
    assert_eq!(out.held(), 1);
    send_from_another_thread(('t', 1));
    let mut got = Vec::new();
    while got.len() < 3 {
        mb.drain(usize::MAX, |m| got.push(m));
        out.flush().unwrap();
    }
    assert_eq!(got, [('o', 1), ('t', 1), ('o', 2)]);
    assert_eq!(out.held(), 0);

    // Nothing held any more: whatever the outbox sends now, and everything
    // it flushed before, precedes a later send from another thread.
    out.send(('o', 3)).unwrap();
    out.flush().unwrap();
    assert_eq!(out.held(), 0);
    send_from_another_thread(('t', 2));
    assert_eq!(drain_all(&mut mb), [('o', 3), ('t', 2)]);
}
