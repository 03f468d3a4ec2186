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
//! The worker pool (its queue, `runtime::job_queue`, and the shutdown
//! policies) is modeled through `WorkerPool` itself, with loom threads as
//! its workers and each job's reply sent through the real router into a
//! loop's mailbox: what users rely on is that every job the pool took runs
//! once and its reply arrives once, or is dropped unrun once (never both,
//! never neither), that nothing is taken after a stop, that a full queue
//! refuses instead of waiting, and that at most `capacity + workers` jobs
//! are held at once.

use std::time::Duration;

use loom::thread;

use crate::actors::{Mailbox, MailboxConfig};
use crate::options::PoolShutdown;
use crate::runtime::context::EngineId;
use crate::runtime::lifecycle::{Lifecycle, RunState};
use crate::runtime::route::Router;
use crate::runtime::sync::{Arc, AtomicBool, Ordering};
use crate::runtime::worker_pool::{SubmitErrorKind, WorkerPool};

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

// ----- the worker pool -----

/// The fate of a pool model's jobs, by id. Plain `std` atomics on purpose:
/// this is the models' bookkeeping, not the protocol under test, and loom
/// runs its threads one at a time, so they add no interleavings.
#[derive(Default)]
struct Ledger {
    ran: [std::sync::atomic::AtomicUsize; 4],
    dropped_unrun: [std::sync::atomic::AtomicUsize; 4],
    /// Jobs made and not yet finished or dropped.
    live: std::sync::atomic::AtomicUsize,
    /// Jobs whose body started after `stopped` was set.
    started_after_stop: std::sync::atomic::AtomicUsize,
    stopped: std::sync::atomic::AtomicBool,
}

impl Ledger {
    fn ran(&self, id: usize) -> usize {
        self.ran[id].load(std::sync::atomic::Ordering::SeqCst)
    }
    fn dropped_unrun(&self, id: usize) -> usize {
        self.dropped_unrun[id].load(std::sync::atomic::Ordering::SeqCst)
    }
    fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A job's captures: counts its drop as "unrun" unless the job ran.
struct Tracked {
    id: usize,
    ran: bool,
    ledger: std::sync::Arc<Ledger>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.ran {
            self.ledger.dropped_unrun[self.id].fetch_add(1, SeqCst);
        }
        self.ledger.live.fetch_sub(1, SeqCst);
    }
}

/// Holds a job in its body until opened, and tells when it got there.
#[derive(Default)]
struct Gate {
    entered: AtomicBool,
    open: AtomicBool,
}

impl Gate {
    fn wait_entered(&self) {
        // Acquire: pairs with the job's Release on entering.
        while !self.entered.load(Ordering::Acquire) {
            thread::yield_now();
        }
    }
    fn open(&self) {
        // Release: the held job's Acquire sees it.
        self.open.store(true, Ordering::Release);
    }
}

/// Job `id`: records that it ran (and whether after the stop), waits at
/// `gate` if it has one, then sends its id as its reply to loop 0 through the
/// router, as `ConnHandle::async_write` does.
fn job(
    id: usize,
    ledger: &std::sync::Arc<Ledger>,
    router: &Arc<Router<usize>>,
    gate: Option<Arc<Gate>>,
) -> impl FnOnce() + Send + 'static {
    use std::sync::atomic::Ordering::SeqCst;
    ledger.live.fetch_add(1, SeqCst);
    let mut tracked = Tracked {
        id,
        ran: false,
        ledger: ledger.clone(),
    };
    let router = router.clone();
    move || {
        tracked.ran = true;
        let ledger = &tracked.ledger;
        ledger.ran[id].fetch_add(1, SeqCst);
        if ledger.stopped.load(SeqCst) {
            ledger.started_after_stop.fetch_add(1, SeqCst);
        }
        if let Some(gate) = gate {
            // Release: `wait_entered`'s Acquire.
            gate.entered.store(true, Ordering::Release);
            // Acquire: pairs with `Gate::open`'s Release.
            while !gate.open.load(Ordering::Acquire) {
                thread::yield_now();
            }
        }
        router.send(0, id).expect("loop 0 takes the reply");
    }
}

/// The replies loop 0 received, sorted, once the pool is done (an engine
/// stops its pool before its loops drain and close).
fn replies(inbox: &mut Mailbox<usize>) -> Vec<usize> {
    let mut got = Vec::new();
    while let Some(id) = inbox.try_recv() {
        got.push(id);
    }
    got.sort_unstable();
    got
}

/// A loop's mailbox (room for every reply) and a router to it.
fn reply_path() -> (Mailbox<usize>, Arc<Router<usize>>) {
    let inbox =
        Mailbox::<usize>::with_config(MailboxConfig::new().lane_capacity(4)).expect("a mailbox");
    let router = Arc::new(Router::new(EngineId::next(), vec![inbox.shared_sender()]));
    (inbox, router)
}

/// A thread submits two jobs while another shuts the pool down
/// (`PoolShutdown::Finish`): every job the pool took runs exactly once and
/// its reply arrives exactly once; every job it refused comes back unrun;
/// a submit after the shutdown is refused as stopped; and the pool never
/// holds more than `capacity + workers` jobs.
///
/// Catches: a shutdown that lets the worker exit with a job still queued
/// (a reply lost at stop), a push after the close (a job taken and never
/// run), a push that ignores the capacity, or a lost wake-up (a worker
/// asleep with a job queued: a deadlock here).
#[test]
fn a_stopping_pool_runs_every_job_it_took_once_and_takes_none_after() {
    loom::model(|| stop_racing_submits(1, 2));
}

/// As above with two workers racing each other for the one job and its
/// wake-up (one job: two would multiply the interleavings past what CI
/// can afford).
///
/// Catches, besides: a wake-up that reaches a worker which does not take
/// the job while the other sleeps on (a deadlock here).
#[test]
fn two_workers_racing_a_stop_run_a_job_once() {
    loom::model(|| stop_racing_submits(2, 1));
}

/// The models above: `jobs` submits on one thread, a shutdown on another,
/// `workers` workers, room for one job.
fn stop_racing_submits(workers: usize, jobs: usize) {
    const CAPACITY: usize = 1;
    let ledger = std::sync::Arc::new(Ledger::default());
    let (mut inbox, router) = reply_path();
    let pool = WorkerPool::new(workers, CAPACITY, PoolShutdown::Finish).unwrap();
    let submitter = {
        let (pool, ledger, router) = (pool.clone(), ledger.clone(), router.clone());
        thread::spawn(move || {
            let mut taken = Vec::new();
            for id in 0..jobs {
                match pool.submit(job(id, &ledger, &router, None)) {
                    Ok(()) => taken.push(id),
                    Err(refused) => drop(refused.into_job()),
                }
                assert!(ledger.live() <= CAPACITY + workers, "memory unbounded");
            }
            taken
        })
    };
    pool.shutdown();
    let late = pool.submit(job(jobs, &ledger, &router, None)).unwrap_err();
    assert_eq!(late.kind(), SubmitErrorKind::Stopped);
    drop(late);
    let taken = submitter.join().unwrap();
    assert_eq!(replies(&mut inbox), taken, "each reply exactly once");
    for id in 0..=jobs {
        let took = usize::from(taken.contains(&id));
        assert_eq!(
            ledger.ran(id),
            took,
            "job {id} ran {} times",
            ledger.ran(id)
        );
        assert_eq!(ledger.dropped_unrun(id), 1 - took, "job {id}");
    }
    assert_eq!(ledger.live(), 0);
}

/// A shutdown whose wait runs out (`shutdown_timeout` with no time left)
/// while the worker is in its first job with a second queued: the queued
/// job is dropped unrun, at most the one job a worker had already taken
/// starts after the shutdown returned, and every job ends exactly once —
/// run with its reply delivered once, or dropped unrun.
///
/// Catches: a cancel that leaves queued jobs for the worker to take (one
/// would start after the shutdown returned), a job both run and dropped,
/// or one neither (still held when the workers are gone).
#[test]
fn a_timed_out_shutdown_drops_what_is_queued_and_each_job_ends_once() {
    loom::model(|| {
        let ledger = std::sync::Arc::new(Ledger::default());
        let (mut inbox, router) = reply_path();
        let pool = WorkerPool::new(1, 2, PoolShutdown::Finish).unwrap();
        for id in 0..2 {
            pool.submit(job(id, &ledger, &router, None)).unwrap();
        }
        let joined = pool.shutdown_timeout(Duration::ZERO);
        ledger
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        pool.wait_for_workers();
        let ran: Vec<usize> = (0..2).filter(|&id| ledger.ran(id) == 1).collect();
        assert_eq!(replies(&mut inbox), ran, "each reply exactly once");
        for id in 0..2 {
            assert_eq!(ledger.ran(id) + ledger.dropped_unrun(id), 1, "job {id}");
        }
        if joined {
            assert_eq!(ran, [0, 1], "a shutdown in time finishes the queue");
        }
        assert!(
            ledger
                .started_after_stop
                .load(std::sync::atomic::Ordering::SeqCst)
                <= 1
        );
        assert_eq!(ledger.live(), 0);
    });
}

/// The worker is held in its first job; a loop thread
/// fills the one-job queue, then both `submit` and `submit_wait` are
/// refused as full at once (a loop never waits for room; a wait here
/// deadlocks the model, since only this thread lets the worker go).
/// `PoolShutdown::Cancel` then drops what is still queued: each job ends
/// once, run or dropped, and the refused ones never run.
///
/// Catches: a full queue that waits, a push past the capacity, or a cancel
/// that runs a job it dropped.
#[test]
fn a_full_queue_refuses_on_a_loop_thread_and_never_waits() {
    loom::model(|| {
        let ledger = std::sync::Arc::new(Ledger::default());
        let (mut inbox, router) = reply_path();
        let pool = WorkerPool::new(1, 1, PoolShutdown::Cancel).unwrap();
        let gate = Arc::new(Gate::default());
        pool.submit(job(0, &ledger, &router, Some(gate.clone())))
            .unwrap();
        gate.wait_entered();
        {
            let _loop = router.enter_loop();
            pool.submit(job(1, &ledger, &router, None)).unwrap();
            let full = pool.submit(job(2, &ledger, &router, None)).unwrap_err();
            assert_eq!(full.kind(), SubmitErrorKind::Full);
            let waited = pool
                .submit_wait(job(3, &ledger, &router, None))
                .unwrap_err();
            assert_eq!(waited.kind(), SubmitErrorKind::Full);
        }
        assert_eq!(ledger.live(), 2, "only the taken jobs are held");
        gate.open();
        pool.shutdown();
        assert_eq!(ledger.ran(0), 1);
        assert_eq!(ledger.ran(1) + ledger.dropped_unrun(1), 1);
        for id in 2..4 {
            assert_eq!((ledger.ran(id), ledger.dropped_unrun(id)), (0, 1));
        }
        let ran: Vec<usize> = (0..2).filter(|&id| ledger.ran(id) == 1).collect();
        assert_eq!(replies(&mut inbox), ran);
        assert_eq!(ledger.live(), 0);
    });
}

/// A thread waits in `submit_wait` for room while the pool shuts down: it
/// gets in (and its job runs once) or gets its job back as stopped; it is
/// never left waiting, and never loses the job.
///
/// Catches: a close that does not wake the waiters (a deadlock here), or a
/// waiter that pushes after the close (its job held and never run).
#[test]
fn a_submit_waiting_for_room_gets_in_or_its_job_back_at_a_stop() {
    loom::model(|| submit_wait_at_a_stop(PoolShutdown::Finish));
}

/// As above under `PoolShutdown::Cancel`, where the waiter is woken by the
/// cancel, not by a worker taking a job: a job it got in runs once or is
/// dropped unrun once.
///
/// Catches: a cancel that does not wake the waiters (a deadlock here).
#[test]
fn a_submit_waiting_for_room_at_a_cancel_is_woken_and_keeps_its_job() {
    loom::model(|| submit_wait_at_a_stop(PoolShutdown::Cancel));
}

fn submit_wait_at_a_stop(policy: PoolShutdown) {
    let ledger = std::sync::Arc::new(Ledger::default());
    let (mut inbox, router) = reply_path();
    let pool = WorkerPool::new(1, 1, policy).unwrap();
    let gate = Arc::new(Gate::default());
    pool.submit(job(0, &ledger, &router, Some(gate.clone())))
        .unwrap();
    let waiter = {
        let (pool, ledger, router) = (pool.clone(), ledger.clone(), router.clone());
        thread::spawn(move || {
            let mut taken = Vec::new();
            for id in 1..3 {
                match pool.submit_wait(job(id, &ledger, &router, None)) {
                    Ok(()) => taken.push(id),
                    Err(e) => {
                        assert_eq!(e.kind(), SubmitErrorKind::Stopped);
                        drop(e.into_job());
                    }
                }
            }
            taken
        })
    };
    gate.open();
    pool.shutdown();
    let mut taken = waiter.join().unwrap();
    taken.insert(0, 0);
    let ran: Vec<usize> = (0..3).filter(|&id| ledger.ran(id) == 1).collect();
    assert_eq!(replies(&mut inbox), ran, "each reply exactly once");
    for id in 0..3 {
        let (runs, drops) = (ledger.ran(id), ledger.dropped_unrun(id));
        if !taken.contains(&id) {
            assert_eq!((runs, drops), (0, 1), "job {id} was refused");
        } else if policy == PoolShutdown::Finish {
            assert_eq!((runs, drops), (1, 0), "job {id} was taken");
        } else {
            assert_eq!(runs + drops, 1, "job {id} was taken");
        }
    }
    assert_eq!(ledger.live(), 0);
}
