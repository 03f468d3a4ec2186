//! The engine-wide budget for buffered bytes: what every connection of every
//! loop holds in memory on behalf of its peer — input its handler left
//! unconsumed (counted by capacity, the memory it really takes) and output
//! queued for a peer that has not taken it yet.
//!
//! Owns the shared total ([`SharedBudget`], one atomic) and each loop's part
//! of it ([`LoopBudget`]): the loop's own total, its share of the limit and
//! the connections it paused. It decides; the event loop acts (pauses,
//! resumes, closes). It must never touch a socket and never make a loop wait.
//!
//! # Policy (as Redis's `maxmemory-clients`, Envoy's overload manager)
//!
//! * Below [`PAUSE_AT`] of the limit nothing happens.
//! * Above it, every connection that holds at least [`PAUSE_MIN`] bytes (the
//!   ones holding the most; small ones carry on) stops being read — checked
//!   before each read, so one turn of reads cannot jump far past it — until
//!   the total falls back to [`RESUME_AT`] of the limit.
//! * Above the limit, a loop holding more than its share (limit / loops)
//!   closes its largest connections, with
//!   [`CloseReason::BufferBudget`](crate::CloseReason::BufferBudget), until
//!   the total is within the limit or the loop within its share. As long as
//!   every loop stays within its share the total is within the limit, so a
//!   connection is only ever closed when the engine as a whole is over it:
//!   nothing inside the budget is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::actors::slab::SlotKey;
use crate::actors::CachePadded;

/// Pausing starts at this fraction of the limit (3/4).
const PAUSE_AT: (usize, usize) = (3, 4);
/// Paused connections resume at or below this fraction (1/2).
const RESUME_AT: (usize, usize) = (1, 2);
/// A connection holding less than this is never paused for the budget.
pub(crate) const PAUSE_MIN: usize = 64 * 1024;

fn fraction(limit: usize, (num, den): (usize, usize)) -> usize {
    limit / den * num
}

/// The total every loop adds to, and the limit.
#[derive(Debug)]
pub(crate) struct SharedBudget {
    limit: usize,
    used: CachePadded<AtomicUsize>,
}

impl SharedBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes buffered by every loop now.
    pub(crate) fn used(&self) -> usize {
        // Relaxed: an estimate that decisions tolerate being a turn old.
        self.used.load(Ordering::Relaxed)
    }

    fn apply(&self, old: usize, new: usize) {
        // Relaxed: a counter; no other memory is published through it.
        if new > old {
            self.used.fetch_add(new - old, Ordering::Relaxed);
        } else if old > new {
            self.used.fetch_sub(old - new, Ordering::Relaxed);
        }
    }
}

/// One loop's part of the budget.
pub(crate) struct LoopBudget {
    /// Bytes this loop's connections hold.
    held: usize,
    /// limit / loops.
    share: usize,
    /// Connections paused for the budget (some may have closed since).
    pub(crate) paused: Vec<SlotKey>,
    /// The total passed the limit: look for connections to close this turn.
    pub(crate) over: bool,
}

impl LoopBudget {
    pub(crate) fn new(shared: &SharedBudget, loops: usize) -> Self {
        Self {
            held: 0,
            share: shared.limit / loops.max(1),
            paused: Vec::new(),
            over: false,
        }
    }

    /// Records that a connection that held `old` bytes now holds `new`.
    /// Returns whether it should stop being read (see the module docs).
    pub(crate) fn update(&mut self, shared: &SharedBudget, old: usize, new: usize) -> bool {
        if old != new {
            self.held = self.held - old + new;
            shared.apply(old, new);
        }
        let used = shared.used();
        if used > shared.limit && self.held > self.share {
            self.over = true;
        }
        Self::should_pause(shared, new)
    }

    /// Whether a connection holding `held` bytes should not be read now.
    #[inline]
    pub(crate) fn should_pause(shared: &SharedBudget, held: usize) -> bool {
        held >= PAUSE_MIN && shared.used() > fraction(shared.limit, PAUSE_AT)
    }

    /// Bytes this loop's connections hold.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Whether paused connections may be read again.
    pub(crate) fn may_resume(&self, shared: &SharedBudget) -> bool {
        shared.used() <= fraction(shared.limit, RESUME_AT)
    }

    /// Whether this loop must still close connections to get back within
    /// the budget.
    pub(crate) fn must_shed(&self, shared: &SharedBudget) -> bool {
        shared.used() > shared.limit && self.held > self.share
    }
}
