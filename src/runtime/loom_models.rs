//! loom models of the engine's own concurrency, on the code that ships:
//! the lifecycle (stop request, the coordinator's wait, `EngineHandle::stop`'s
//! wait, the drain time) and routing with its overflow (a loop never waits
//! on a full lane; an overflowed request is ordered from its flush on). The
//! runtime's atomics, locks and condition variables come from
//! `runtime::sync`, and the mailboxes from `ringloop-actors`' own loom shim,
//! so `--cfg loom` turns both into loom's model types.
//!
//! Run with (`scripts/check` does, at its preemption bound):
//! `RUSTFLAGS="--cfg loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=3
//! CARGO_TARGET_DIR=target/loom cargo test -p ringloop --lib --release runtime::loom_models`
//!
//! Not modeled: the worker pool's cancel flag. Its queue is a
//! `crossbeam-channel`, whose atomics loom cannot see or schedule, so a
//! model would check a copy rather than the pool; the flag is set under
//! the queue's write lock before the queue closes, which `lifecycle`-style
//! reasoning covers (see `worker_pool::close_queue`).

use std::time::Duration;

use loom::thread;

use crate::actors::{Mailbox, MailboxConfig};
use crate::runtime::context::EngineId;
use crate::runtime::lifecycle::{Lifecycle, RunState};
use crate::runtime::route::Router;
use crate::runtime::sync::Arc;

/// Two threads ask to stop at once while the coordinator waits: exactly one
/// of them goes on (pokes the actors), and the coordinator always wakes.
///
/// Catches: `request_stop` as a load-then-store (both callers go on), or
/// `announce_stop` notifying without the lock (the coordinator can check
/// the flag, miss the notification and sleep for ever: a deadlock here).
#[test]
fn a_stop_request_always_wakes_the_coordinator_and_one_caller_goes_on() {
    loom::model(|| {
        let life = Arc::new(Lifecycle::new(Duration::ZERO));
        life.start().unwrap();
        let stoppers: Vec<_> = (0..2)
            .map(|_| {
                let life = life.clone();
                thread::spawn(move || {
                    let first = life.request_stop();
                    if first {
                        life.announce_stop();
                    }
                    first
                })
            })
            .collect();
        life.wait_for_stop();
        let firsts = stoppers
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&first| first)
            .count();
        assert_eq!(firsts, 1);
    });
}

/// `EngineHandle::stop` on one thread, the coordinator on another: `stop` returns
/// only once the run finished, and the loops were told to go home before.
#[test]
fn stop_returns_only_after_the_run_finished() {
    loom::model(|| {
        let life = Arc::new(Lifecycle::new(Duration::ZERO));
        life.start().unwrap();
        let coordinator = {
            let life = life.clone();
            thread::spawn(move || {
                life.wait_for_stop();
                life.stop_loops();
                life.finish();
            })
        };
        if life.request_stop() {
            life.announce_stop();
        }
        life.wait_until_finished();
        assert_eq!(life.state(), RunState::Finished);
        assert!(life.loops_stopping());
        coordinator.join().unwrap();
    });
}

/// `stop_with_timeout` sets the drain time (a Relaxed store) and then asks
/// to stop; a loop that sees the stop reads the new drain time.
///
/// Catches: the stop flag written with `Relaxed` or read with `Relaxed`
/// (the loop could see the stop and the old drain time).
#[test]
fn a_loop_that_sees_the_stop_sees_the_drain_time_set_before_it() {
    loom::model(|| {
        let life = Arc::new(Lifecycle::new(Duration::from_millis(10)));
        let stopper = {
            let life = life.clone();
            thread::spawn(move || {
                life.set_drain_timeout(Duration::from_millis(20));
                life.request_stop();
            })
        };
        if life.is_stopping() {
            assert_eq!(life.drain_timeout(), Duration::from_millis(20));
        }
        stopper.join().unwrap();
    });
}

/// A loop thread sends two requests into a 1-slot lane of another loop
/// while that loop drains: neither send waits (the second overflows), the
/// loop flushes until nothing is held, then sends a third request on
/// another lane (as a worker it told would): that one must arrive after
/// both. The owner parks when it finds nothing, so a request left held
/// with nobody to flush it is a deadlock here.
///
/// Catches: a send that waits on a loop thread (loom reports the loop and
/// the owner blocked), an overflow flushed out of order, or a flush that
/// reports "nothing held" before its messages are in the lane (the later
/// request, on the other lane, could then be received first).
#[test]
fn a_loop_never_waits_and_a_flushed_request_keeps_its_causal_place() {
    loom::model(|| {
        let mut target =
            Mailbox::<u32>::with_config(MailboxConfig::new().lane_capacity(1)).expect("a mailbox");
        let other =
            Mailbox::<u32>::with_config(MailboxConfig::new().lane_capacity(1)).expect("a mailbox");
        let router = Arc::new(Router::new(
            EngineId::next(),
            vec![other.shared_sender(), target.shared_sender()],
        ));
        let mut later_lane = target.sender();
        let looper = {
            let router = router.clone();
            thread::spawn(move || {
                let _loop0 = router.enter_loop();
                router.send(1, 1).unwrap();
                router.send(1, 2).unwrap(); // never waits, even on a full lane
                while router.flush_overflow() {
                    thread::yield_now();
                }
                later_lane.send(3).unwrap();
            })
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            if target.drain(usize::MAX, |m| got.push(m)) == 0 {
                target.park(None).unwrap();
            }
        }
        assert_eq!(got, [1, 2, 3]);
        looper.join().unwrap();
        drop(other);
    });
}
