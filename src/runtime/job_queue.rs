//! The worker pool's job queue: bounded, many producers and many consumers,
//! with the pool's shutdown built in — closing (queued jobs still run),
//! cancelling (queued jobs come back to the canceller, unrun) and the
//! workers' attendance (how many are still running, so a shutdown can wait
//! for them with a deadline).
//!
//! One lock guards the jobs, the phase and the counts, so every decision —
//! "queue this job or refuse it", "run this job or exit", "cancel what is
//! queued" — is taken against one consistent state: no flag can be seen
//! late. Its lock and condition variables come from `runtime::sync`, so
//! under `--cfg loom` the models in `runtime::loom_models` check this code.
//!
//! It must never run a job (the worker does, after `pop` released the lock),
//! never drop one under its lock (a job's captures may run user code on
//! drop: `cancel` hands them back), and never make a `try_push` wait for
//! anything but the lock, which no one holds across a job or a wait.

use std::collections::VecDeque;
use std::time::Instant;

use crate::runtime::sync::{thread, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// Where the queue is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Taking jobs.
    Open,
    /// Refusing jobs; the queued ones still run, then the workers exit.
    Closed,
    /// Refusing jobs; the queued ones were handed back unrun and no worker
    /// takes another.
    Cancelled,
}

/// How many times an idle worker looks for a job again (spinning, then
/// yielding) before it sleeps. One under loom: the looks are only a delay,
/// and each would multiply the interleavings.
#[cfg(not(loom))]
const LOOKS_BEFORE_SLEEP: u32 = 10;
#[cfg(loom)]
const LOOKS_BEFORE_SLEEP: u32 = 1;

/// The pause before look `n`: a short spin that doubles, then a yield.
fn pause(n: u32) {
    if n < 6 && !cfg!(loom) {
        for _ in 0..(1u32 << n) {
            std::hint::spin_loop();
        }
    } else {
        thread::yield_now();
    }
}

/// Why a job was refused; the job is handed back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds `capacity` jobs.
    Full,
    /// The queue is closed or cancelled.
    Closed,
}

struct State<T> {
    jobs: VecDeque<T>,
    phase: Phase,
    /// Workers asleep in `pop`: a push wakes one only if there is one (a
    /// wake is a system call even with nobody waiting).
    idle_workers: usize,
    /// `push_wait` callers asleep for room.
    waiting_pushers: usize,
    /// Workers registered and not yet exited.
    live_workers: usize,
}

/// See the module docs.
pub(crate) struct JobQueue<T> {
    state: Mutex<State<T>>,
    /// Workers wait here for a job or the close.
    job_ready: Condvar,
    /// `push_wait` waits here for room or the close.
    room_ready: Condvar,
    /// A shutdown waits here for the last worker to exit.
    all_exited: Condvar,
    /// The number of queued jobs, for idle workers to watch without the
    /// lock; written under it.
    queued_hint: AtomicUsize,
    capacity: usize,
}

impl<T> JobQueue<T> {
    /// An open queue of at most `capacity` jobs (at least 1). Its storage
    /// grows with use, up to `capacity` jobs, and no further.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                phase: Phase::Open,
                idle_workers: 0,
                waiting_pushers: 0,
                live_workers: 0,
            }),
            job_ready: Condvar::new(),
            room_ready: Condvar::new(),
            all_exited: Condvar::new(),
            queued_hint: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding it (jobs run outside), so a poisoned
        // lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` if the queue is open and has room; never waits for room.
    pub(crate) fn try_push(&self, job: T) -> Result<(), (T, Refused)> {
        let state = self.lock();
        if state.phase != Phase::Open {
            return Err((job, Refused::Closed));
        }
        if state.jobs.len() >= self.capacity {
            return Err((job, Refused::Full));
        }
        self.push_locked(state, job);
        Ok(())
    }

    /// Queues `job`, waiting for room while the queue is full; hands it back
    /// if the queue is (or gets) closed first.
    pub(crate) fn push_wait(&self, job: T) -> Result<(), T> {
        let mut state = self.lock();
        loop {
            if state.phase != Phase::Open {
                return Err(job);
            }
            if state.jobs.len() < self.capacity {
                self.push_locked(state, job);
                return Ok(());
            }
            state.waiting_pushers += 1;
            state = self
                .room_ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            state.waiting_pushers -= 1;
        }
    }

    fn push_locked(&self, mut state: MutexGuard<'_, State<T>>, job: T) {
        state.jobs.push_back(job);
        // Relaxed: a hint for looking workers; the lock orders the jobs.
        self.queued_hint.store(state.jobs.len(), Ordering::Relaxed);
        let wake = state.idle_workers > 0;
        drop(state);
        if wake {
            self.job_ready.notify_one();
        }
    }

    /// A worker's next job, waiting for one; `None` once the queue is closed
    /// and empty, or cancelled: the worker then exits.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        let mut looks = 0;
        loop {
            if state.phase == Phase::Cancelled {
                return None;
            }
            if let Some(job) = state.jobs.pop_front() {
                // Relaxed: as in `push_locked`.
                self.queued_hint.store(state.jobs.len(), Ordering::Relaxed);
                let wake = state.waiting_pushers > 0;
                drop(state);
                if wake {
                    self.room_ready.notify_one();
                }
                return Some(job);
            }
            if state.phase == Phase::Closed {
                return None;
            }
            if looks < LOOKS_BEFORE_SLEEP {
                // Look again before sleeping, without the lock: a busy
                // submitter's next job is often on its way, and waking a
                // sleeper costs it a system call (benches/pool.rs).
                drop(state);
                while looks < LOOKS_BEFORE_SLEEP {
                    pause(looks);
                    looks += 1;
                    // Relaxed: a hint; the lock decides.
                    if self.queued_hint.load(Ordering::Relaxed) > 0 {
                        break;
                    }
                }
                state = self.lock();
                continue;
            }
            looks = 0;
            state.idle_workers += 1;
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            state.idle_workers -= 1;
        }
    }

    /// Refuses every job from now on (waiting `push_wait`s get theirs back);
    /// the queued ones still run. Idempotent; does not undo a cancel.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Open {
            state.phase = Phase::Closed;
        }
        drop(state);
        self.job_ready.notify_all();
        self.room_ready.notify_all();
    }

    /// Refuses every job from now on and takes the queued ones out, unrun,
    /// for the caller to drop (outside the lock); no worker starts another
    /// job. Jobs already taken by a worker are not affected.
    pub(crate) fn cancel(&self) -> VecDeque<T> {
        let mut state = self.lock();
        state.phase = Phase::Cancelled;
        let unrun = std::mem::take(&mut state.jobs);
        // Relaxed: as in `push_locked`.
        self.queued_hint.store(0, Ordering::Relaxed);
        drop(state);
        self.job_ready.notify_all();
        self.room_ready.notify_all();
        unrun
    }

    /// Jobs waiting to be taken.
    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Counts a worker in; call before starting its thread, so a shutdown
    /// racing the start still waits for it.
    pub(crate) fn worker_started(&self) {
        self.lock().live_workers += 1;
    }

    /// Counts a worker out (its last act before its thread ends).
    pub(crate) fn worker_exited(&self) {
        let mut state = self.lock();
        state.live_workers -= 1;
        let last = state.live_workers == 0;
        drop(state);
        if last {
            self.all_exited.notify_all();
        }
    }

    /// Waits until every worker counted in has exited, or `deadline`
    /// passes; returns how many are still running (0: all exited). Under
    /// loom a wait never times out, so models pass a deadline already past
    /// or wait for good.
    pub(crate) fn wait_for_workers(&self, deadline: Option<Instant>) -> usize {
        let mut state = self.lock();
        while state.live_workers > 0 {
            state = match deadline {
                None => self
                    .all_exited
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.all_exited
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        state.live_workers
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_hands_the_job_back() {
        let q = JobQueue::new(2);
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert_eq!(q.try_push(3), Err((3, Refused::Full)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(1)); // first in, first out
        q.try_push(3).unwrap();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_closed_queue_refuses_but_hands_out_what_it_holds() {
        let q = JobQueue::new(4);
        q.try_push(1).unwrap();
        q.close();
        assert_eq!(q.try_push(2), Err((2, Refused::Closed)));
        assert_eq!(q.push_wait(3), Err(3));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), None); // closed and empty: the worker exits
        q.close(); // idempotent
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_cancel_hands_the_queued_jobs_back_and_no_worker_takes_more() {
        let q = JobQueue::new(4);
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert_eq!(Vec::from(q.cancel()), [1, 2]);
        assert_eq!(q.pop(), None);
        assert_eq!(q.try_push(3), Err((3, Refused::Closed)));
        q.close(); // does not undo the cancel
        assert_eq!(q.try_push(4), Err((4, Refused::Closed)));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn waiting_for_workers_counts_those_not_yet_out() {
        let q = JobQueue::<u8>::new(1);
        q.worker_started();
        q.worker_started();
        assert_eq!(q.wait_for_workers(Some(Instant::now())), 2);
        q.worker_exited();
        q.worker_exited();
        assert_eq!(q.wait_for_workers(None), 0);
    }
}
