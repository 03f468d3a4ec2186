//! The mailbox with real threads and real doorbells: lanes, round-robin
//! fairness, lane reclaim, close, and the park/wake protocol.
// Real threads and real file descriptors: these do not run under loom's
// model types (see `loom_*.rs` for the models).
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{spin_until, within, Tracker, HANG};
use ringloop_actors::{
    DoorbellKind, Mailbox, MailboxConfig, SendError, TrySendError, DEFAULT_LANE_CAPACITY,
};

const KINDS: [DoorbellKind; 2] = [DoorbellKind::EventFd, DoorbellKind::Pipe];

fn mailbox<T>(lane_capacity: usize, kind: DoorbellKind) -> Mailbox<T> {
    Mailbox::with_config(
        MailboxConfig::new()
            .lane_capacity(lane_capacity)
            .doorbell(kind),
    )
    .unwrap()
}

/// Drains until a drain hands over nothing.
fn drain_all<T>(mailbox: &mut Mailbox<T>) -> Vec<T> {
    let mut got = Vec::new();
    while mailbox.drain(usize::MAX, |m| got.push(m)) > 0 {}
    got
}

#[test]
fn config_defaults_and_rejections() {
    let mb = Mailbox::<u8>::new().unwrap();
    assert_eq!(mb.lane_capacity(), DEFAULT_LANE_CAPACITY);
    assert_eq!(mb.lane_count(), 0);
    assert!(!mb.is_closed());
    assert_eq!(mb.doorbell_rings(), 0);

    let mb = mailbox::<u8>(3, DoorbellKind::Pipe);
    assert_eq!(mb.lane_capacity(), 4, "rounded up to a power of two");
    assert_eq!(mb.sender().capacity(), 4);
    assert_eq!(mb.doorbell().kind(), DoorbellKind::Pipe);

    for bad in [0, ringloop_actors::ring::MAX_CAPACITY + 1] {
        let err = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(bad)).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "capacity {bad}"
        );
    }
}

#[test]
fn every_sender_and_clone_is_a_lane() {
    let mut mb = mailbox::<(u8, u32)>(16, DoorbellKind::EventFd);
    let mut a = mb.sender();
    let mut b = a.clone();
    let mut c = mb.sender();
    let mut d = c.clone();
    // Lanes are adopted by the owner's next drain.
    assert_eq!(mb.lane_count(), 0);
    assert_eq!(mb.drain(usize::MAX, |_| ()), 0);
    assert_eq!(mb.lane_count(), 4);
    // Each lane is independent: filling one does not fill the others.
    for i in 0..16 {
        a.try_send((0, i)).unwrap();
    }
    assert!(a.try_send((0, 16)).unwrap_err().is_full());
    for (tag, tx) in [(1, &mut b), (2, &mut c), (3, &mut d)] {
        for i in 0..3 {
            tx.try_send((tag, i)).unwrap();
        }
    }
    let got = drain_all(&mut mb);
    assert_eq!(got.len(), 16 + 9);
    for tag in 0..4 {
        let seq: Vec<u32> = got.iter().filter(|m| m.0 == tag).map(|m| m.1).collect();
        let want: Vec<u32> = (0..if tag == 0 { 16 } else { 3 }).collect();
        assert_eq!(seq, want, "lane {tag} out of order");
    }
}

#[test]
fn a_flooding_lane_cannot_starve_another() {
    let mut mb = mailbox::<(char, u32)>(1024, DoorbellKind::EventFd);
    let mut flood = mb.sender();
    let mut quiet = mb.sender();
    // The flood's first 500, then the quiet lane's 10, then 500 more floods.
    for i in 0..500 {
        flood.try_send(('f', i)).unwrap();
    }
    for i in 0..10 {
        quiet.try_send(('q', i)).unwrap();
    }
    for i in 500..1000 {
        flood.try_send(('f', i)).unwrap();
    }
    // With max 4 per call, the quiet lane's messages come as soon as the
    // older flood messages are through: the oldest message goes first, so
    // the 500 newer floods cannot push them back.
    let mut got = Vec::new();
    while got.len() < 520 {
        assert_eq!(mb.drain(4, |m| got.push(m)), 4);
    }
    let quiet_got: Vec<u32> = got.iter().filter(|m| m.0 == 'q').map(|m| m.1).collect();
    assert_eq!(quiet_got, (0..10).collect::<Vec<_>>());
    let flood_got: Vec<u32> = got.iter().filter(|m| m.0 == 'f').map(|m| m.1).collect();
    assert_eq!(flood_got, (0..flood_got.len() as u32).collect::<Vec<_>>());
    assert!(flood_got.len() >= 500, "the flooding lane progressed too");
    assert_eq!(got[500..510], (0..10).map(|i| ('q', i)).collect::<Vec<_>>());
    mb.drain(usize::MAX, drop);

    // drain(1) alternates between the two lanes when their sends alternated.
    for i in 0..2 {
        quiet.try_send(('q', 10 + i)).unwrap();
        flood.try_send(('f', 1000 + i)).unwrap();
    }
    let mut tags = Vec::new();
    for _ in 0..4 {
        mb.drain(1, |m| tags.push(m.0));
    }
    assert_eq!(tags, ['q', 'f', 'q', 'f']);
}

#[test]
fn drain_honours_max_across_lanes() {
    let mut mb = mailbox::<u32>(64, DoorbellKind::EventFd);
    let mut txs: Vec<_> = (0..3).map(|_| mb.sender()).collect();
    for tx in &mut txs {
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
    }
    let mut total = 0;
    for max in [0, 1, 7, 13] {
        let n = mb.drain(max, |_| ());
        assert_eq!(n, max);
        total += n;
    }
    total += drain_all(&mut mb).len();
    assert_eq!(total, 30);
}

#[test]
fn a_dropped_senders_lane_is_reclaimed_after_its_last_messages() {
    let mut mb = mailbox::<u32>(8, DoorbellKind::EventFd);
    let keep = mb.sender();
    let mut gone = mb.sender();
    for i in 0..5 {
        gone.try_send(i).unwrap();
    }
    drop(gone);
    mb.drain(0, |_| ());
    assert_eq!(mb.lane_count(), 2, "the lane stays while it holds messages");
    assert_eq!(drain_all(&mut mb), [0, 1, 2, 3, 4]);
    assert_eq!(mb.lane_count(), 1, "then it is reclaimed");
    assert!(!keep.is_closed());
    drop(keep);
    mb.drain(usize::MAX, |_| ());
    assert_eq!(mb.lane_count(), 0);
}

/// Two senders gone, one lane empty and one still holding messages, drained
/// one message per call: the empty lane's death triggers the reclaim pass,
/// which must keep the other lane until its last message is out.
#[test]
fn reclaim_keeps_a_closed_lane_until_it_is_empty() {
    let mut mb = mailbox::<u32>(8, DoorbellKind::EventFd);
    let empty = mb.sender();
    let mut full = mb.sender();
    for i in 0..3 {
        full.try_send(i).unwrap();
    }
    drop(empty);
    drop(full);
    let mut got = Vec::new();
    for _ in 0..10 {
        mb.drain(1, |m| got.push(m));
        if mb.lane_count() == 0 {
            break;
        }
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(mb.lane_count(), 0);
}

/// The producer sends and drops its sender while the owner drains: the lane
/// may only be reclaimed after its last message was delivered.
#[test]
fn lane_reclaim_races_the_last_messages() {
    const N: u32 = 20_000;
    for round in 0..20 {
        within(HANG, move || {
            let mut mb = mailbox::<u32>(4, DoorbellKind::EventFd);
            let mut tx = mb.sender();
            mb.drain(0, |_| ()); // adopt the lane
            assert_eq!(mb.lane_count(), 1);
            let count = if round == 0 { N } else { 1 + round * 7 };
            let producer = std::thread::spawn(move || {
                for i in 0..count {
                    tx.send(i).unwrap();
                }
                // tx dropped here, possibly while the owner is mid-drain.
            });
            let mut next = 0;
            while mb.lane_count() > 0 {
                mb.drain(usize::MAX, |m| {
                    assert_eq!(m, next);
                    next += 1;
                });
            }
            assert_eq!(next, count, "lane reclaimed with messages still in it");
            producer.join().unwrap();
        });
    }
}

#[test]
fn sends_after_close_or_drop_hand_the_message_back() {
    let mut mb = mailbox::<String>(8, DoorbellKind::EventFd);
    let mut tx = mb.sender();
    let shared = mb.shared_sender();
    tx.try_send("before".into()).unwrap();
    mb.close();
    assert!(mb.is_closed());
    assert!(tx.is_closed());
    assert!(shared.is_closed());
    match tx.try_send("after".into()) {
        Err(TrySendError::Closed(v)) => assert_eq!(v, "after"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(
        tx.send("blocking".into()),
        Err(SendError("blocking".into()))
    );
    assert_eq!(
        shared.try_send("shared".into()),
        Err(TrySendError::Closed("shared".into()))
    );
    // A sender opened after close is born closed.
    let mut late = mb.sender();
    assert!(late.is_closed());
    assert_eq!(
        late.try_send("late".into()),
        Err(TrySendError::Closed("late".into()))
    );
    // What was queued before close is still there to drain.
    assert_eq!(drain_all(&mut mb), ["before"]);
    mb.close(); // idempotent
    assert!(mb.is_closed());

    let mb = mailbox::<String>(8, DoorbellKind::Pipe);
    let mut tx = mb.sender();
    drop(mb);
    assert!(tx.is_closed());
    assert_eq!(
        tx.try_send("x".into()),
        Err(TrySendError::Closed("x".into()))
    );
}

#[test]
fn close_and_drain_returns_everything_queued() {
    let mut mb = mailbox::<(u8, u32)>(8, DoorbellKind::EventFd);
    let mut adopted = mb.sender();
    mb.drain(0, |_| ());
    assert_eq!(mb.lane_count(), 1);
    // This lane is never adopted before close: close must still find it.
    let mut unadopted = mb.sender();
    let mut dropped = mb.sender();
    for i in 0..8 {
        adopted.try_send((0, i)).unwrap();
    }
    for i in 0..5 {
        unadopted.try_send((1, i)).unwrap();
        dropped.try_send((2, i)).unwrap();
    }
    drop(dropped);
    let left: VecDeque<(u8, u32)> = mb.close_and_drain();
    assert_eq!(left.len(), 8 + 5 + 5);
    for (tag, n) in [(0, 8), (1, 5), (2, 5)] {
        let seq: Vec<u32> = left.iter().filter(|m| m.0 == tag).map(|m| m.1).collect();
        assert_eq!(seq, (0..n).collect::<Vec<_>>(), "lane {tag}");
    }
    assert!(adopted.try_send((0, 99)).unwrap_err().is_closed());
    assert!(mb.close_and_drain().is_empty());
}

#[test]
fn dropping_the_mailbox_drops_queued_messages_exactly_once() {
    let tracker = Tracker::new(7);
    let mb = mailbox(4, DoorbellKind::EventFd);
    let mut alive = mb.sender();
    let mut gone = mb.sender();
    for id in 0..3 {
        alive.try_send(tracker.token(id)).unwrap();
    }
    for id in 3..6 {
        gone.try_send(tracker.token(id)).unwrap();
    }
    drop(gone);
    drop(mb);
    // Dropping the mailbox drops every queued message at once, including
    // those of a lane whose sender is still alive.
    for id in 0..6 {
        assert_eq!(tracker.drops_of(id), 1, "message {id}");
    }
    // A send after the drop is refused with the message handed back.
    let back = alive.try_send(tracker.token(6)).unwrap_err().into_inner();
    assert_eq!(back.id, 6);
    drop(back);
    assert_eq!(tracker.total(), 7);
    drop(alive);
    tracker.assert_each_dropped_once();
}

#[test]
fn park_with_says_whether_blocking_is_allowed() {
    let mut mb = mailbox::<u8>(4, DoorbellKind::EventFd);
    assert!(
        mb.park_with(|may_block| may_block),
        "empty mailbox: may block"
    );
    // A new lane (not adopted yet) counts as work: its messages may be there.
    let mut tx = mb.sender();
    assert!(mb.has_messages());
    assert!(!mb.park_with(|may_block| may_block));
    mb.drain(usize::MAX, |_| ());
    assert!(mb.park_with(|may_block| may_block));
    tx.try_send(1).unwrap();
    assert!(!mb.park_with(|may_block| may_block));
    assert_eq!(mb.try_recv(), Some(1));
    assert_eq!(mb.try_recv(), None);
    // Parking on an empty mailbox with a timeout returns.
    mb.park(Some(Duration::from_millis(1))).unwrap();
    assert_eq!(mb.recv_timeout(Duration::from_millis(5)), None);
}

/// The owner parks with no timeout; a producer sends after a short sleep.
/// Only the doorbell can wake the owner, so a lost wake-up hangs (and the
/// watchdog fails the test).
#[test]
fn a_parked_owner_is_woken_by_a_send() {
    for kind in KINDS {
        within(HANG, move || {
            let mut mb = mailbox::<u32>(4, kind);
            let mut tx = mb.sender();
            mb.drain(0, |_| ());
            let producer = std::thread::spawn(move || {
                for i in 0..20 {
                    std::thread::sleep(Duration::from_millis(2));
                    tx.send(i).unwrap();
                }
            });
            let mut next = 0;
            while next < 20 {
                if mb.drain(usize::MAX, |m| {
                    assert_eq!(m, next);
                    next += 1;
                }) == 0
                {
                    mb.park(None).unwrap();
                }
            }
            producer.join().unwrap();
            assert!(
                mb.doorbell_rings() >= 1,
                "{kind:?}: the owner slept at least once"
            );
        });
    }
}

/// Two owners ping-pong through each other's mailbox, both parking with no
/// timeout whenever they have nothing to do: every round trip needs a
/// wake-up, so thousands of rounds exercise the announce/re-check/notify race
/// from both sides.
#[test]
fn ping_pong_with_parking_loses_no_wake_up() {
    const ROUNDS: u32 = 5_000;
    for kind in KINDS {
        within(HANG, move || {
            let mut ping_box = mailbox::<u32>(2, kind);
            let mut pong_box = mailbox::<u32>(2, kind);
            let mut to_pong = pong_box.sender();
            let mut to_ping = ping_box.sender();
            let recv = |mb: &mut Mailbox<u32>| loop {
                if let Some(m) = mb.try_recv() {
                    return m;
                }
                mb.park(None).unwrap();
            };
            let ponger = std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    assert_eq!(recv(&mut pong_box), i);
                    to_ping.send(i).unwrap();
                }
            });
            for i in 0..ROUNDS {
                to_pong.send(i).unwrap();
                assert_eq!(recv(&mut ping_box), i);
            }
            ponger.join().unwrap();
        });
    }
}

/// While the owner never parks, producers must not touch the doorbell at
/// all: the wake word stays "awake", so notify is one fence and one load.
#[test]
fn a_busy_owner_costs_producers_no_doorbell_writes() {
    const SENDS: u64 = 200_000;
    for kind in KINDS {
        within(HANG, move || {
            let mut mb = mailbox::<u64>(64, kind);
            let mut txs: Vec<_> = (0..2).map(|_| mb.sender()).collect();
            let producers: Vec<_> = txs
                .drain(..)
                .map(|mut tx| {
                    std::thread::spawn(move || {
                        for i in 0..SENDS / 2 {
                            tx.send(i).unwrap();
                        }
                    })
                })
                .collect();
            let mut got = 0;
            while got < SENDS {
                got += mb.drain(usize::MAX, |_| ()) as u64;
            }
            producers.into_iter().for_each(|p| p.join().unwrap());
            // The owner never parked, so there was never anyone to wake: any
            // ring at all (let alone one per send) means producers ring
            // without reading the wake word.
            assert_eq!(mb.doorbell_rings(), 0, "{kind:?}");
            assert!(!mb.doorbell().wait(Some(Duration::ZERO)).unwrap());
        });
    }
}

/// With several producers and an owner that parks whenever it runs dry,
/// each park can be ended by at most one doorbell write (the producers race
/// for the wake word with a swap; only the winner rings).
#[test]
fn at_most_one_ring_per_park() {
    const PRODUCERS: u32 = 4;
    const EACH: u32 = 20_000;
    for kind in KINDS {
        within(HANG, move || {
            let mut mb = mailbox::<(u32, u32)>(8, kind);
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let mut tx = mb.sender();
                    std::thread::spawn(move || {
                        for i in 0..EACH {
                            tx.send((p, i)).unwrap();
                            if i % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let mut next = vec![0; PRODUCERS as usize];
            let mut got = 0;
            let mut parks = 0u64;
            while got < PRODUCERS * EACH {
                let n = mb.drain(usize::MAX, |(p, i)| {
                    assert_eq!(next[p as usize], i);
                    next[p as usize] += 1;
                });
                got += n as u32;
                if n == 0 {
                    parks += 1;
                    mb.park(None).unwrap();
                }
            }
            producers.into_iter().for_each(|p| p.join().unwrap());
            let rings = mb.doorbell_rings();
            assert!(rings <= parks, "{kind:?}: {rings} rings for {parks} parks");
        });
    }
}

#[test]
fn recv_timeout_gets_a_message_from_another_thread() {
    for kind in KINDS {
        within(HANG, move || {
            let mut mb = mailbox::<String>(4, kind);
            let mut tx = mb.sender();
            let producer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                tx.send("hello".to_string()).unwrap();
            });
            assert_eq!(mb.recv_timeout(HANG).as_deref(), Some("hello"));
            producer.join().unwrap();
        });
    }
}

#[test]
fn new_lanes_opened_while_parked_wake_the_owner() {
    // The sender is created on the producer thread after the owner parked:
    // the new-lane hint plus the wake word must still get the message seen.
    for kind in KINDS {
        within(HANG, move || {
            let mut mb = mailbox::<u32>(4, kind);
            let shared = mb.shared_sender();
            let producer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                shared.send(7).unwrap();
            });
            let mut got = None;
            while got.is_none() {
                got = mb.try_recv();
                if got.is_none() {
                    mb.park(None).unwrap();
                }
            }
            assert_eq!(got, Some(7));
            producer.join().unwrap();
            // The producer thread has exited: its lane goes once drained.
            spin_until(|| {
                mb.drain(usize::MAX, |_| ());
                mb.lane_count() == 0
            });
        });
    }
}
