//! The engine's lifecycle as one type: built → running → finished, the stop
//! request that ends the running phase, the second flag that sends the
//! loops home, the first fatal error, and how long loops may drain.
//!
//! Owns only these flags and the waiting on them; it knows nothing of
//! actors or messages (the engine pokes them after asking this type). It
//! must never block a loop: the only waits are [`Lifecycle::wait_for_stop`]
//! (the thread in `Engine::run`) and [`Lifecycle::wait_until_finished`]
//! (a thread in `EngineHandle::stop`, never a loop or a worker).
//!
//! # Phases
//!
//! `Built` (bound, no thread yet) → [`start`](Lifecycle::start) →
//! `Running` → [`request_stop`](Lifecycle::request_stop) (any thread, any
//! number of times; the first wins) → the coordinator stops the actors in
//! order, raising [`stop_loops`](Lifecycle::stop_loops) for the last phase →
//! [`finish`](Lifecycle::finish) → `Finished`. A stop requested before
//! `start` is remembered: the run that follows ends at once.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::runtime::sync::{AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// Where the engine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Bound, not started.
    Built,
    /// [`Lifecycle::start`] was called; not finished yet.
    Running,
    /// Every actor has stopped.
    Finished,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// A stop was requested (phase 1 and 2 start).
    stopping: AtomicBool,
    /// The loops must close their connections and exit (phase 3).
    loops_stopping: AtomicBool,
    /// Guards the run state; `finished` and `stop_requested` wait on it.
    state: Mutex<RunState>,
    stop_requested: Condvar,
    finished: Condvar,
    first_error: Mutex<Option<Error>>,
    /// How long loops may spend flushing at stop (ms; set before the stop).
    drain_timeout_ms: AtomicU64,
}

impl Lifecycle {
    /// A built engine's lifecycle; loops get `drain` to flush at stop.
    pub(crate) fn new(drain: Duration) -> Self {
        Self {
            stopping: AtomicBool::new(false),
            loops_stopping: AtomicBool::new(false),
            state: Mutex::new(RunState::Built),
            stop_requested: Condvar::new(),
            finished: Condvar::new(),
            first_error: Mutex::new(None),
            drain_timeout_ms: AtomicU64::new(millis(drain)),
        }
    }

    fn lock_state(&self) -> crate::runtime::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` once a stop was requested.
    pub(crate) fn is_stopping(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `request_stop`.
        self.stopping.load(Ordering::Acquire)
    }

    /// `true` once the loops must close their connections and exit.
    pub(crate) fn loops_stopping(&self) -> bool {
        // Acquire: pairs with the Release in `stop_loops`.
        self.loops_stopping.load(Ordering::Acquire)
    }

    /// Raises the stop flag. Returns `true` for the first caller only, who
    /// must then poke the actors and call [`announce_stop`](Self::announce_stop).
    /// Never waits.
    pub(crate) fn request_stop(&self) -> bool {
        // AcqRel: only the first caller goes on; everything before it is
        // seen by actors that see the flag.
        !self.stopping.swap(true, Ordering::AcqRel)
    }

    /// Wakes the thread in [`wait_for_stop`](Self::wait_for_stop).
    pub(crate) fn announce_stop(&self) {
        // Under the lock: a waiter that saw no stop is already waiting.
        let _state = self.lock_state();
        self.stop_requested.notify_all();
    }

    /// Phase 3 of shutdown: the loops must close up and exit.
    pub(crate) fn stop_loops(&self) {
        // Release: a loop that sees it (Acquire) also sees the stop flag.
        self.loops_stopping.store(true, Ordering::Release);
    }

    /// Keeps `error` if it is the first one (later ones are only logged).
    pub(crate) fn record_error(&self, error: Error) {
        log::error!("{error}");
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }

    /// The first error recorded, taken out.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// How long loops may spend flushing queued bytes at stop.
    pub(crate) fn drain_timeout(&self) -> Duration {
        // Relaxed: written before the stop request, whose AcqRel orders it.
        Duration::from_millis(self.drain_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets the drain time, unless a stop was already requested (the loops
    /// may be draining with the old one).
    pub(crate) fn set_drain_timeout(&self, drain: Duration) {
        if !self.is_stopping() {
            // Relaxed: published by the stop request's AcqRel swap.
            self.drain_timeout_ms
                .store(millis(drain), Ordering::Relaxed);
        }
    }

    /// Built → Running; an engine runs once.
    pub(crate) fn start(&self) -> Result<()> {
        let mut state = self.lock_state();
        if *state != RunState::Built {
            return Err(Error::EngineStopped);
        }
        *state = RunState::Running;
        Ok(())
    }

    /// Where the engine is now.
    pub(crate) fn state(&self) -> RunState {
        *self.lock_state()
    }

    /// Waits until a stop is requested (the coordinator, in `Engine::run`).
    pub(crate) fn wait_for_stop(&self) {
        let mut state = self.lock_state();
        while !self.is_stopping() {
            state = self
                .stop_requested
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Running → Finished; wakes every thread waiting for it.
    pub(crate) fn finish(&self) {
        let mut state = self.lock_state();
        *state = RunState::Finished;
        self.finished.notify_all();
    }

    /// Waits while the engine runs (returns at once if it never started).
    pub(crate) fn wait_until_finished(&self) {
        let mut state = self.lock_state();
        while *state == RunState::Running {
            state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    #[test]
    fn the_first_stop_request_wins_and_wakes_the_coordinator() {
        let life = Arc::new(Lifecycle::new(Duration::from_millis(5)));
        life.start().unwrap();
        assert!(
            matches!(life.start(), Err(Error::EngineStopped)),
            "runs once"
        );
        let coordinator = {
            let life = life.clone();
            thread::spawn(move || life.wait_for_stop())
        };
        assert!(life.request_stop());
        assert!(!life.request_stop(), "only the first caller goes on");
        life.announce_stop();
        coordinator.join().unwrap();
        assert!(life.is_stopping() && !life.loops_stopping());
        life.stop_loops();
        assert!(life.loops_stopping());
    }

    #[test]
    fn stop_waits_for_finish_and_keeps_the_first_error() {
        let life = Arc::new(Lifecycle::new(Duration::ZERO));
        life.wait_until_finished(); // never started: no wait
        life.start().unwrap();
        let waiter = {
            let life = life.clone();
            thread::spawn(move || {
                life.wait_until_finished();
                life.state()
            })
        };
        life.record_error(Error::MailboxFull);
        life.record_error(Error::EngineStopped);
        life.finish();
        assert_eq!(waiter.join().unwrap(), RunState::Finished);
        assert!(matches!(life.take_error(), Some(Error::MailboxFull)));
        assert!(life.take_error().is_none());
    }

    #[test]
    fn the_drain_time_is_frozen_once_stopping() {
        let life = Lifecycle::new(Duration::from_millis(10));
        life.set_drain_timeout(Duration::from_millis(20));
        assert_eq!(life.drain_timeout(), Duration::from_millis(20));
        assert!(life.request_stop());
        life.set_drain_timeout(Duration::from_millis(30));
        assert_eq!(life.drain_timeout(), Duration::from_millis(20));
    }
}
