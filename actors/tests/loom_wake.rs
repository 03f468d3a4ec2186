//! loom models of the park/notify protocol (`wake.rs` + `Mailbox::park_with`):
//! the owner announces parking, fences, re-checks its lanes and only then
//! blocks; a producer publishes, fences, and rings only if it wins the wake
//! word. Under loom `Mailbox::park(None)` blocks on the model doorbell until
//! it is rung, so a lost wake-up leaves the owner blocked forever and loom
//! reports a deadlock.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test 'loom_*'`
#![cfg(loom)]

use loom::thread;
use ringloop_actors::{Mailbox, MailboxConfig};

fn mailbox() -> Mailbox<u32> {
    Mailbox::with_config(MailboxConfig::new().lane_capacity(1)).unwrap()
}

/// The owner's loop: drain, and park with no timeout whenever the drain found
/// nothing, until `expected` messages arrived. Returns the messages and how
/// many times the owner parked.
fn owner(mailbox: &mut Mailbox<u32>, expected: usize) -> (Vec<u32>, u64) {
    let mut got = Vec::new();
    let mut parks = 0;
    loop {
        mailbox.drain(usize::MAX, |m| got.push(m));
        if got.len() == expected {
            return (got, parks);
        }
        parks += 1;
        mailbox.park(None).unwrap();
    }
}

/// No lost wake-up: two producers on two lanes (two `Sender`s), each sending
/// one message, against an owner that parks with no timeout whenever it runs
/// dry.
///
/// Mutations caught (each makes loom report a deadlock):
/// * removing the `fence(SeqCst)` in `WakeWord::notify`;
/// * removing the `fence(SeqCst)` in `WakeWord::announce_park`;
/// * skipping the lane re-check in `Mailbox::park_with` (always `block(true)`).
#[test]
fn no_lost_wake_up_two_lanes() {
    loom::model(|| {
        let mut mb = mailbox();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let mut tx = mb.sender();
                thread::spawn(move || tx.try_send(p).unwrap())
            })
            .collect();
        let (mut got, _) = owner(&mut mb, 2);
        got.sort_unstable();
        assert_eq!(got, [0, 1]);
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// No lost wake-up for a lane that is opened while the owner may already be
/// parking: the producer clones its `Sender` (which opens and registers a new
/// lane) and sends on the clone. The owner has not adopted that lane, so only
/// the `new_lanes` hint, read after the owner's fence, can stop it blocking
/// when the producer's fence came first.
///
/// Mutation caught: dropping the `new_lanes` check from
/// `Mailbox::has_messages` makes loom report a deadlock.
#[test]
fn no_lost_wake_up_for_a_new_lane() {
    loom::model(|| new_lane(|mb| owner(mb, 1).0));
}

/// The model of `no_lost_wake_up_for_a_new_lane`, with `run_owner` as the
/// owner's loop.
fn new_lane(run_owner: impl FnOnce(&mut Mailbox<u32>) -> Vec<u32>) {
    let mut mb = mailbox();
    let first = mb.sender();
    // Adopt the first lane, so that the new one is the only unadopted one.
    mb.drain(0, |_| ());
    let producer = thread::spawn(move || {
        let mut second = first.clone();
        drop(first);
        second.try_send(7).unwrap();
    });
    assert_eq!(run_owner(&mut mb), [7]);
    producer.join().unwrap();
}

/// No lost wake-up across several parks: one producer sends two messages on
/// one lane, so the owner may park, wake, drain and park again between them,
/// and the second `notify` can meet the `false` left by the first one's swap
/// or by the owner's `awake()`, or find a stale ring still in the doorbell.
///
/// Mutation caught: removing the `fence(SeqCst)` in `WakeWord::notify` makes
/// loom report a deadlock.
#[test]
fn no_lost_wake_up_across_parks() {
    loom::model(|| {
        let mut mb = Mailbox::with_config(MailboxConfig::new().lane_capacity(2)).unwrap();
        let mut tx = mb.sender();
        let producer = thread::spawn(move || {
            tx.try_send(0).unwrap();
            tx.try_send(1).unwrap();
        });
        let (got, _) = owner(&mut mb, 2);
        assert_eq!(got, [0, 1]);
        producer.join().unwrap();
    });
}

/// Two producers on two lanes: producer 0 sends [0], producer 1 sends
/// [2, 3].
fn two_producers(mb: &mut Mailbox<u32>) -> Vec<thread::JoinHandle<()>> {
    (0..2)
        .map(|p| {
            let mut tx = mb.sender();
            thread::spawn(move || {
                for m in 2 * p..3 * p + 1 {
                    tx.try_send(m).unwrap();
                }
            })
        })
        .collect()
}

/// No lost wake-up with several producers across several parks: two
/// producers on two lanes, one sending two messages and the other one, so a
/// `notify` can come after the owner woke for the other producer's message,
/// drained, and announced a new park, and meet the `false` left by the other
/// producer's swap. Each lane stays FIFO. (Two messages each is the same
/// shape, about ten times the states: 15 s at depth 2, minutes at 3.)
///
/// This is the shape loom 0.7.2 used to report a false deadlock for, when the
/// owner's `announce_park`/`awake` were plain stores (tokio-rs/loom#389; see
/// `wake.rs`): they are read-modify-writes now, so it is checked as shipped.
///
/// Mutation caught: removing the `fence(SeqCst)` in `WakeWord::notify` makes
/// loom report a deadlock.
#[test]
fn no_lost_wake_up_two_producers_across_parks() {
    loom::model(|| {
        let mut mb = Mailbox::with_config(MailboxConfig::new().lane_capacity(2)).unwrap();
        let producers = two_producers(&mut mb);
        let (got, _) = owner(&mut mb, 3);
        let lane = |p: u32| {
            got.iter()
                .filter(|&&m| m / 2 == p)
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(lane(0), [0]);
        assert_eq!(lane(1), [2, 3]);
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// At most one doorbell write per park: the producers race for the wake word
/// with a swap, and only the winner rings. Counted with `doorbell_rings()`
/// against the owner's parks.
///
/// Mutation caught: turning the producer's `swap(false)` in
/// `WakeWord::notify` into a plain `load` lets both producers ring for one
/// park, and the `rings <= parks` assertion fails.
#[test]
fn at_most_one_ring_per_park() {
    loom::model(|| {
        let mut mb = mailbox();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let mut tx = mb.sender();
                thread::spawn(move || tx.try_send(p).unwrap())
            })
            .collect();
        let (got, parks) = owner(&mut mb, 2);
        assert_eq!(got.len(), 2);
        for p in producers {
            p.join().unwrap();
        }
        let rings = mb.doorbell_rings();
        assert!(rings <= parks, "{rings} rings for {parks} parks");
    });
}

/// The owner's loop of an event loop: park (without blocking when messages
/// wait), then [`Mailbox::drain_after_park`], which skips the lanes when the
/// park's re-check found them empty and no producer claimed the wake-up,
/// until `expected` messages arrived. Returns the messages in arrival order.
fn owner_skipping(mailbox: &mut Mailbox<u32>, expected: usize) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        mailbox.drain_after_park(usize::MAX, |m| got.push(m));
        if got.len() >= expected {
            return got;
        }
        mailbox.park(None).unwrap();
    }
}

/// `quiet_park`: skipping a drain loses no wake-up and no message, and
/// delivers none twice: two producers on two lanes, one sending two
/// messages, against an owner that skips its drain after every park whose
/// re-check found nothing and whose wake-up no producer claimed. A message
/// published after the re-check must be found by the next park's re-check
/// (or that park's wake-up claimed), or the owner blocks forever and loom
/// reports a deadlock.
///
/// Mutation caught: skipping after every park, also when the re-check
/// found messages (`quiet_park = true` in both branches of
/// `Mailbox::park_with`), makes the owner spin without ever draining, and
/// loom fails the model ("exceeded maximum number of branches"; checked on
/// `quiet_park_sees_a_new_lane`). (Skipping after a park whose wake-up was
/// claimed is still safe, only a turn slower: the next park's re-check
/// finds the message.)
#[test]
fn quiet_park_skips_lose_nothing() {
    loom::model(|| {
        let mut mb = Mailbox::with_config(MailboxConfig::new().lane_capacity(2)).unwrap();
        let producers = two_producers(&mut mb);
        let got = owner_skipping(&mut mb, 3);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 2, 3], "each message exactly once");
        let lane1: Vec<_> = got.iter().copied().filter(|&m| m >= 2).collect();
        assert_eq!(lane1, [2, 3]);
        for p in producers {
            p.join().unwrap();
        }
        // Nothing left behind.
        assert_eq!(mb.drain(usize::MAX, |_| panic!("delivered twice")), 0);
    });
}

/// `quiet_park` with a lane opened while the owner may be parking (only
/// the `new_lanes` hint, read by the re-check, shows it).
#[test]
fn quiet_park_sees_a_new_lane() {
    loom::model(|| new_lane(|mb| owner_skipping(mb, 1)));
}
