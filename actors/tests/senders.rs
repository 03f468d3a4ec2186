//! `Sender` and `SharedSender`: blocking and timed sends on full lanes, batch
//! sends, per-thread lanes, and the compile-time `Send`/`Sync` guarantees.
// Real threads and real file descriptors: these do not run under loom's
// model types (see `loom_*.rs` for the models).
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{spin_until, within, Tracker, HANG};
use ringloop_actors::{
    DoorbellKind, Mailbox, MailboxConfig, Outbox, SendError, SendTimeoutError, Sender,
    SharedSender, TrySendError,
};

fn mailbox<T>(lane_capacity: usize) -> Mailbox<T> {
    Mailbox::with_config(MailboxConfig::new().lane_capacity(lane_capacity)).unwrap()
}

fn drain_all<T>(mailbox: &mut Mailbox<T>) -> Vec<T> {
    let mut got = Vec::new();
    while mailbox.drain(usize::MAX, |m| got.push(m)) > 0 {}
    got
}

// Compile-time checks: these fail to build, not to run, if a bound is lost.
const _: () = {
    const fn send<T: Send>() {}
    const fn sync<T: Sync>() {}
    const fn clone<T: Clone>() {}
    send::<Sender<String>>();
    send::<SharedSender<String>>();
    sync::<SharedSender<String>>();
    clone::<SharedSender<String>>();
    clone::<Sender<String>>();
    send::<Mailbox<String>>();
    send::<Outbox<String>>();
};

#[test]
fn blocking_send_on_a_tiny_lane_with_a_slow_consumer_delivers_in_order() {
    const N: u32 = 2_000;
    within(HANG, || {
        let mut mb = mailbox::<u32>(2);
        let mut tx = mb.sender();
        assert_eq!(tx.capacity(), 2);
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                tx.send(i).unwrap();
            }
        });
        let mut next = 0;
        let mut turns = 0u32;
        while next < N {
            // Slow: one message per turn, and a nap every few turns, so the
            // producer keeps finding the lane full.
            let n = mb.drain(1, |m| {
                assert_eq!(m, next);
                next += 1;
            });
            turns += 1;
            if turns % 16 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            if n == 0 {
                mb.park(Some(Duration::from_millis(10))).unwrap();
            }
        }
        producer.join().unwrap();
        assert!(mb.try_recv().is_none());
    });
}

#[test]
fn blocking_send_fails_with_the_message_when_the_mailbox_goes_away() {
    within(HANG, || {
        let mut mb = mailbox::<String>(1);
        let mut tx = mb.sender();
        tx.try_send("fills the lane".into()).unwrap();
        let producer = std::thread::spawn(move || tx.send("stuck".into()));
        std::thread::sleep(Duration::from_millis(5));
        mb.close();
        assert_eq!(
            producer.join().unwrap(),
            Err(SendError("stuck".to_string()))
        );
        assert_eq!(drain_all(&mut mb), ["fills the lane"]);
    });
}

#[test]
fn send_timeout_times_out_and_hands_the_message_back() {
    let mut mb = mailbox::<String>(2);
    let mut tx = mb.sender();
    tx.try_send("a".into()).unwrap();
    tx.try_send("b".into()).unwrap();
    match tx.send_timeout("c".into(), Duration::from_millis(20)) {
        Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, "c"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // With room it succeeds at once.
    assert_eq!(mb.try_recv().as_deref(), Some("a"));
    tx.send_timeout("c".into(), Duration::from_millis(20))
        .unwrap();
    assert_eq!(drain_all(&mut mb), ["b", "c"]);
    // Closed beats waiting.
    mb.close();
    match tx.send_timeout("d".into(), HANG) {
        Err(SendTimeoutError::Closed(v)) => assert_eq!(v, "d"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[test]
fn shared_sender_send_timeout_on_a_full_lane() {
    let mut mb = mailbox::<u32>(1);
    let tx = mb.shared_sender();
    tx.try_send(1).unwrap();
    assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    assert_eq!(
        tx.send_timeout(3, Duration::from_millis(10)),
        Err(SendTimeoutError::Timeout(3))
    );
    assert_eq!(mb.try_recv(), Some(1));
    tx.send_timeout(3, Duration::from_millis(10)).unwrap();
    assert_eq!(mb.try_recv(), Some(3));
}

#[test]
fn shared_sender_from_eight_threads_loses_and_duplicates_nothing() {
    const THREADS: usize = 8;
    const EACH: u32 = 20_000;
    within(HANG, || {
        let mut mb = mailbox::<(usize, u32)>(64);
        let tx = mb.shared_sender();
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send((t, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u32; THREADS];
        let mut got = 0;
        let mut max_lanes = 0;
        while got < THREADS * EACH as usize {
            let n = mb.drain(usize::MAX, |(t, i)| {
                // Per-thread FIFO: a gap is a loss, a repeat a duplicate.
                assert_eq!(next[t], i, "thread {t}");
                next[t] += 1;
            });
            got += n;
            max_lanes = max_lanes.max(mb.lane_count());
            if n == 0 {
                mb.park(Some(Duration::from_millis(10))).unwrap();
            }
        }
        assert_eq!(next, [EACH; THREADS]);
        assert!(max_lanes <= THREADS, "one lane per thread, not per send");
        producers.into_iter().for_each(|p| p.join().unwrap());
        assert!(mb.try_recv().is_none());
        // The threads exited: their cached lanes were dropped and, being
        // empty, are reclaimed by the owner.
        spin_until(|| {
            mb.drain(usize::MAX, |_| panic!("nothing left to deliver"));
            mb.lane_count() == 0
        });
    });
}

#[test]
fn shared_sender_reuses_one_lane_per_thread() {
    let mut mb = mailbox::<u32>(16);
    let a = mb.shared_sender();
    let b = a.clone();
    let c = mb.shared_sender();
    for i in 0..3 {
        a.try_send(i).unwrap();
        b.try_send(10 + i).unwrap();
        c.try_send(20 + i).unwrap();
    }
    assert_eq!(drain_all(&mut mb), [0, 10, 20, 1, 11, 21, 2, 12, 22]);
    assert_eq!(
        mb.lane_count(),
        1,
        "all three handles share this thread's lane"
    );
    // Another mailbox gets its own lane on this thread, not this one.
    let mut other = mailbox::<u32>(16);
    other.shared_sender().try_send(5).unwrap();
    assert_eq!(drain_all(&mut other), [5]);
    assert!(mb.try_recv().is_none());
}

#[test]
fn shared_sender_into_a_dropped_mailbox_hands_back_and_forgets_the_lane() {
    let tracker = Tracker::new(3);
    let mb = mailbox(4);
    let tx = mb.shared_sender();
    tx.try_send(tracker.token(0)).unwrap();
    drop(mb);
    // Dropping the mailbox dropped message 0 at once, though this thread's
    // cached lane still holds the ring.
    assert_eq!(tracker.drops_of(0), 1);
    let back = tx.try_send(tracker.token(1)).unwrap_err();
    assert!(back.is_closed());
    assert_eq!(back.into_inner().id, 1);
    // The Closed answer made the thread forget its lane; nothing is dropped twice.
    assert_eq!(tracker.drops_of(0), 1);
    assert_eq!(tx.send(tracker.token(2)).unwrap_err().0.id, 2);
    tracker.assert_each_dropped_once();
}

/// A message whose `Drop` sends through a `SharedSender` (say, a request that
/// tells someone it was cancelled) may be dropped while this thread's lane
/// cache is being updated. That must not panic with a `RefCell` double borrow.
#[test]
fn a_message_dropped_inside_the_lane_cache_may_send() {
    struct Notifies {
        on_drop: SharedSender<&'static str>,
    }
    impl Drop for Notifies {
        fn drop(&mut self) {
            let _ = self.on_drop.try_send("dropped");
        }
    }

    let mut observer = mailbox::<&'static str>(4);
    let dead = mailbox::<Notifies>(4);
    // This thread's cached lane into `dead` holds one message...
    dead.shared_sender()
        .try_send(Notifies {
            on_drop: observer.shared_sender(),
        })
        .unwrap();
    // ...which the dead mailbox cannot drop: the cached lane owns the ring.
    drop(dead);
    // Opening this thread's lane into a third mailbox prunes the dead lane,
    // which drops the message, whose Drop sends on this thread's lanes.
    let third = mailbox::<u8>(4);
    third.shared_sender().try_send(1).unwrap();
    assert_eq!(drain_all(&mut observer), ["dropped"]);
}

#[test]
fn send_batch_publishes_together_and_respects_full_and_closed() {
    let mut mb = mailbox::<u32>(8);
    let mut tx = mb.sender();
    mb.drain(0, |_| ());
    {
        let mut batch = tx.batch();
        assert!(batch.is_empty());
        for i in 0..5 {
            batch.try_send(i).unwrap();
            assert!(
                mb.try_recv().is_none(),
                "message {i} seen before the batch ended"
            );
        }
        assert_eq!(batch.len(), 5);
    }
    assert_eq!(drain_all(&mut mb), [0, 1, 2, 3, 4]);
    {
        let mut batch = tx.batch();
        for i in 0..8 {
            batch.try_send(i).unwrap();
        }
        assert_eq!(batch.try_send(8), Err(TrySendError::Full(8)));
    }
    assert_eq!(drain_all(&mut mb), (0..8).collect::<Vec<_>>());
    mb.close();
    let mut batch = tx.batch();
    assert_eq!(batch.try_send(9), Err(TrySendError::Closed(9)));
    assert!(batch.is_empty());
}

#[test]
fn send_batch_wakes_a_parked_owner() {
    for kind in [DoorbellKind::EventFd, DoorbellKind::Pipe] {
        within(HANG, move || {
            let mut mb =
                Mailbox::with_config(MailboxConfig::new().lane_capacity(8).doorbell(kind)).unwrap();
            let mut tx = mb.sender();
            mb.drain(0, |_| ());
            let producer = std::thread::spawn(move || {
                for round in 0..50u32 {
                    std::thread::sleep(Duration::from_micros(500));
                    let mut i = 0;
                    // A descheduled owner may leave the lane full: publish
                    // what fits and retry the rest (no timing assumption).
                    while i < 3 {
                        let mut batch = tx.batch();
                        while i < 3 && batch.try_send(round * 3 + i).is_ok() {
                            i += 1;
                        }
                        drop(batch);
                        if i < 3 {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                }
            });
            let mut next = 0;
            while next < 150 {
                if mb.drain(usize::MAX, |m| {
                    assert_eq!(m, next);
                    next += 1;
                }) == 0
                {
                    mb.park(None).unwrap();
                }
            }
            producer.join().unwrap();
        });
    }
}

#[test]
fn try_send_from_moves_what_fits() {
    let mut mb = mailbox::<u32>(4);
    let mut tx = mb.sender();
    let mut queue: VecDeque<u32> = (0..10).collect();
    assert_eq!(tx.try_send_from(&mut queue), Ok(4));
    assert_eq!(queue.len(), 6);
    assert_eq!(tx.try_send_from(&mut queue), Ok(0), "lane full");
    let mut got = drain_all(&mut mb);
    assert_eq!(tx.try_send_from(&mut queue), Ok(4));
    got.extend(drain_all(&mut mb));
    assert_eq!(tx.try_send_from(&mut queue), Ok(2));
    assert!(queue.is_empty());
    assert_eq!(tx.try_send_from(&mut queue), Ok(0));
    got.extend(drain_all(&mut mb));
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    queue.extend([10, 11]);
    mb.close();
    assert_eq!(tx.try_send_from(&mut queue), Err(()));
    assert_eq!(queue, [10, 11], "nothing taken once closed");
}

#[test]
fn try_send_from_wakes_a_parked_owner() {
    within(HANG, || {
        let mut mb = mailbox::<u32>(4);
        let mut tx = mb.sender();
        mb.drain(0, |_| ());
        let producer = std::thread::spawn(move || {
            let mut queue: VecDeque<u32> = (0..100).collect();
            while !queue.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
                tx.try_send_from(&mut queue).unwrap();
            }
        });
        let mut next = 0;
        while next < 100 {
            if mb.drain(usize::MAX, |m| {
                assert_eq!(m, next);
                next += 1;
            }) == 0
            {
                mb.park(None).unwrap();
            }
        }
        producer.join().unwrap();
    });
}

/// Causal order across `SharedSender` threads (real threads; the loom models
/// in `loom_causal.rs` use `Sender`s): four threads take turns through an
/// atomic counter, each sending message `i` only after seeing that message
/// `i - 1`'s send returned. The owner must receive `0, 1, 2, …` exactly,
/// although every message travels on the lane of whichever thread sent it.
#[test]
fn shared_sender_threads_taking_turns_arrive_in_turn_order() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    const N: u32 = 4_000;
    within(HANG, || {
        let mut mb = mailbox::<u32>(64);
        let tx = mb.shared_sender();
        let turn = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (tx, turn) = (tx.clone(), turn.clone());
                std::thread::spawn(move || loop {
                    // Acquire: the previous send returned before the store.
                    let i = turn.load(Ordering::Acquire);
                    if i >= N {
                        return;
                    }
                    if i % 4 != t {
                        std::hint::spin_loop();
                        std::thread::yield_now();
                        continue;
                    }
                    tx.send(i).unwrap();
                    // Release: hands "message i was sent" to the next thread.
                    turn.store(i + 1, Ordering::Release);
                })
            })
            .collect();
        let mut next = 0;
        while next < N {
            mb.drain(usize::MAX, |m| {
                assert_eq!(m, next, "a causally later message overtook");
                next += 1;
            });
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}
