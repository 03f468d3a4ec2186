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
//!   the total falls back to [`RESUME_AT`] of the limit. Near it, a growing
//!   input buffer grows by what it must hold rather than doubling
//!   ([`LoopBudget::may_double`]): its capacity is what is counted.
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

    /// Whether a buffer holding `capacity` bytes may double: only while
    /// the doubling keeps the total at or below the pause point. Past it a
    /// buffer grows by what it must hold and no more, since its capacity is
    /// what the budget counts and one doubling of a large buffer would
    /// otherwise jump from below the pause point to past the limit.
    #[inline]
    pub(crate) fn may_double(shared: &SharedBudget, capacity: usize) -> bool {
        shared.used().saturating_add(capacity) <= fraction(shared.limit, PAUSE_AT)
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
    #[inline]
    pub(crate) fn must_shed(&self, shared: &SharedBudget) -> bool {
        // This loop's own count first: the shared total is only read when
        // this loop holds more than its share.
        self.held > self.share && shared.used() > shared.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// The failure this prevents: two connections at 2 MiB and 1 MiB of
    /// capacity under a 4 MiB limit sat just below the 3 MiB pause point,
    /// so the smaller one was read, doubled to 2 MiB, and the engine was
    /// over its limit with nothing but unconsumed input of 2 MiB.
    #[test]
    fn a_buffer_doubles_only_while_the_doubling_stays_below_the_pause_point() {
        let shared = SharedBudget::new(4 * MIB);
        let mut budget = LoopBudget::new(&shared, 1);
        assert!(LoopBudget::may_double(&shared, MIB));
        budget.update(&shared, 0, 2 * MIB);
        assert!(
            LoopBudget::may_double(&shared, MIB),
            "2 + 1 MiB is the pause point"
        );
        budget.update(&shared, 0, MIB - 1300);
        assert!(!LoopBudget::may_double(&shared, MIB - 1300));
        assert!(
            !LoopBudget::should_pause(&shared, MIB - 1300),
            "still below it"
        );
        assert!(
            LoopBudget::may_double(&shared, 1000),
            "a small one still doubles"
        );
    }

    /// The other failure: loop 1 held more than its share while loop 0's
    /// growth put the engine over; loop 1 had no change of its own to
    /// notice it by, and the engine stayed over its limit. A loop checks
    /// `must_shed` every turn, whatever changed.
    #[test]
    fn a_loop_over_its_share_must_shed_when_another_puts_the_engine_over() {
        let shared = SharedBudget::new(8 * MIB);
        let mut quiet = LoopBudget::new(&shared, 2);
        let mut growing = LoopBudget::new(&shared, 2);
        quiet.update(&shared, 0, 4 * MIB + 512 * 1024);
        assert!(
            !quiet.over && !quiet.must_shed(&shared),
            "the engine is within"
        );
        growing.update(&shared, 0, 4 * MIB);
        assert!(!growing.over, "the growing loop is within its share");
        assert!(!quiet.over, "nothing told the quiet loop");
        assert!(quiet.must_shed(&shared));
        assert!(!growing.must_shed(&shared));
    }
}
