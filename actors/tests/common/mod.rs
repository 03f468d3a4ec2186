//! Helpers shared by the integration tests: a drop-counting message type and a
//! watchdog that turns a hang (lost wake-up, deadlock) into a test failure.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// A generous bound for anything that should finish in milliseconds. It only
/// exists so that a broken protocol fails the test instead of hanging CI; no
/// test asserts anything about how long something took.
pub const HANG: Duration = Duration::from_secs(60);

/// Counts, per message id, how many times a [`Token`] with that id was dropped.
pub struct Tracker {
    drops: Vec<AtomicUsize>,
}

impl Tracker {
    pub fn new(ids: usize) -> Arc<Self> {
        Arc::new(Self {
            drops: (0..ids).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    pub fn token(self: &Arc<Self>, id: usize) -> Token {
        Token {
            id,
            tracker: self.clone(),
        }
    }

    pub fn drops_of(&self, id: usize) -> usize {
        self.drops[id].load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.drops.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }

    /// Panics unless every id was dropped exactly once.
    pub fn assert_each_dropped_once(&self) {
        for (id, d) in self.drops.iter().enumerate() {
            let d = d.load(Ordering::SeqCst);
            assert_eq!(d, 1, "message {id} dropped {d} times");
        }
    }
}

/// A message whose drops are counted by its [`Tracker`].
pub struct Token {
    pub id: usize,
    tracker: Arc<Tracker>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.id)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.tracker.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `f` on its own thread and returns its result; fails the test if it
/// has not finished within `limit` (the thread is then leaked: it is stuck).
/// A panic inside `f` is propagated as is.
pub fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let result = f();
        let _ = done_tx.send(());
        result
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("still running after {limit:?}: a lost wake-up or a deadlock")
        }
    }
}

/// Spins (yielding) until `ready` returns true; fails the test on a hang.
pub fn spin_until(mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + HANG;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "spun for {HANG:?}");
        std::thread::yield_now();
    }
}
