//! loom model of the generation rule seen through a mailbox: an owner (an
//! event loop) keeps "connections" in a [`Slab`] and applies requests
//! `(SlotKey, payload)` that handle threads send through its [`Mailbox`].
//! While a stale handle's requests are in flight, the owner closes the
//! connection and a new one reuses its slot. A request is applied only if
//! `slab.get_mut(key)` finds its connection; the rule checked: a request is
//! applied to the connection it was made for or refused, never applied to
//! the newcomer, and the newcomer gets exactly its own requests.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test loom_generation`
#![cfg(loom)]

use loom::thread;
use ringloop_actors::slab::{Slab, SlotKey};
use ringloop_actors::{Mailbox, MailboxConfig};

/// A connection: who it is and the payloads applied to it, in order.
struct Conn {
    id: u32,
    applied: Vec<u32>,
}

/// A request: the key the handle holds, the connection it was made for
/// (for checking only; the owner decides by the key alone), a payload.
type Request = (SlotKey, u32, u32);

/// The owner's rule: apply if the key still names a live value, else refuse.
fn apply(slab: &mut Slab<Conn>, (key, made_for, payload): Request, refused: &mut Vec<u32>) {
    match slab.get_mut(key) {
        Some(conn) => {
            assert_eq!(
                conn.id, made_for,
                "request {payload}, made for connection {made_for}, was applied to connection {}",
                conn.id
            );
            conn.applied.push(payload);
        }
        None => refused.push(payload),
    }
}

/// A stale handle sends two requests for connection 1 while the owner
/// closes it and connection 2 takes its slot; a handle made for connection
/// 2 (on a third thread) sends one request meanwhile.
///
/// Mutation caught (checked by hand): if `Slab::remove` did not bump the
/// slot's generation (`slot.generation = slot.generation.wrapping_add(1)`
/// removed), the stale key matches the reused slot and the stale request is
/// applied to connection 2 ("made for connection 1, was applied to
/// connection 2").
#[test]
fn a_stale_key_never_reaches_the_value_that_reused_its_slot() {
    loom::model(|| {
        let config = MailboxConfig::new().lane_capacity(2);
        let mut mailbox = Mailbox::<Request>::with_config(config).unwrap();
        let mut slab = Slab::new();
        let old = slab
            .insert(Conn {
                id: 1,
                applied: Vec::new(),
            })
            .unwrap();
        let mut stale_lane = mailbox.sender();
        let stale_handle = thread::spawn(move || {
            for payload in [10, 11] {
                assert!(stale_lane.try_send((old, 1, payload)).is_ok(), "two fit");
            }
        });
        let mut refused = Vec::new();
        // The owner serves a turn: what has arrived goes to connection 1.
        mailbox.drain(usize::MAX, |r| apply(&mut slab, r, &mut refused));
        // Connection 1 closes; connection 2 reuses its slot.
        let first = slab.remove(old).expect("connection 1 was live");
        let new = slab
            .insert(Conn {
                id: 2,
                applied: Vec::new(),
            })
            .unwrap();
        assert_eq!(new.index, old.index, "the slot is reused");
        let mut new_lane = mailbox.sender();
        let new_handle = thread::spawn(move || {
            assert!(new_lane.try_send((new, 2, 20)).is_ok(), "one fits");
        });
        // Another turn, racing both senders; then everything left.
        mailbox.drain(usize::MAX, |r| apply(&mut slab, r, &mut refused));
        stale_handle.join().unwrap();
        new_handle.join().unwrap();
        mailbox.drain(usize::MAX, |r| apply(&mut slab, r, &mut refused));
        assert_eq!(mailbox.try_recv(), None);

        let second = slab.remove(new).expect("connection 2 is live");
        assert_eq!(second.applied, [20], "connection 2 gets exactly its own");
        // Connection 1 got a prefix of its requests, in order; the rest
        // were refused; nothing was lost or doubled.
        let mut accounted = first.applied.clone();
        accounted.extend(&refused);
        assert_eq!(
            accounted,
            [10, 11],
            "applied {:?}, refused {refused:?}",
            first.applied
        );
    });
}
