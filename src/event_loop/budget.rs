//! The loop's side of the engine's buffer budget (see [`crate::budget`]):
//! counting what each connection holds, pausing the largest readers, shedding
//! connections when over budget, and trimming freed memory.
//!
//! Owns only the accounting; it must never block or read a socket.

use std::time::Instant;

use super::{EventLoop, TRIM_AFTER, TRIM_EVERY};
use crate::actors::slab::SlotKey;
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};
use crate::stats::bump;

impl<H: EventHandler> EventLoop<H> {
    /// Counts what connection `key` holds now against the budget, and
    /// pauses its reading if the engine is near the budget and it holds
    /// the most.
    pub(super) fn account(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let held = entry.inbound.capacity() + entry.outbound.len();
        if held == entry.budget_held && held < crate::budget::PAUSE_MIN {
            return; // nothing changed and too small to pause: the common case
        }
        let old = std::mem::replace(&mut entry.budget_held, held);
        if old >= held + (1 << 20) {
            // A large input buffer went (output blocks are reused at once).
            self.released += old - held;
        }
        let pause = self.budget.update(self.engine.budget(), old, held);
        if old != held {
            self.publish_buffered();
        }
        if pause {
            self.pause_for_budget(key);
        }
    }

    /// Stops reading `key` until the engine's total falls back (see
    /// `enforce_budget`). Returns whether it was newly paused.
    pub(super) fn pause_for_budget(&mut self, key: SlotKey) -> bool {
        let Some(entry) = self.conns.get_mut(key) else {
            return false;
        };
        if entry.budget_paused {
            return false;
        }
        entry.budget_paused = true;
        self.budget.paused.push(key);
        bump(&self.engine.slot(self.index).counters().budget_pauses, 1);
        true
    }

    /// A closed connection's bytes leave the budget.
    pub(super) fn count_buffered(&mut self, old: usize, new: usize) {
        self.released += old.saturating_sub(new);
        let _ = self.budget.update(self.engine.budget(), old, new);
        self.publish_buffered();
    }

    pub(super) fn publish_buffered(&self) {
        // Relaxed: a gauge with one writer (this loop), read as a snapshot.
        self.engine.slot(self.index).counters().buffered.store(
            self.budget.held() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether freed buffers should go back to the system: after a large
    /// release, or once the loop has no connections left (the end of a
    /// burst; without it up to `TRIM_AFTER` per loop would stay with the
    /// allocator for good).
    pub(super) fn trim_due(&self) -> bool {
        self.released >= TRIM_AFTER || (self.released > 0 && self.conns.is_empty())
    }

    /// Once a turn: closes this loop's largest connections while the engine
    /// is over its budget and this loop over its share; reads paused
    /// connections again once the total fell back.
    pub(super) fn enforce_budget(&mut self) {
        if self.trim_due() && !matches!(self.last_trim, Some(t) if t.elapsed() < TRIM_EVERY) {
            // After a burst: give the freed buffers back to the system, not
            // only to the allocator (RSS would otherwise stay at its peak).
            self.released = 0;
            self.last_trim = Some(Instant::now());
            crate::sys::memory::release_free_memory();
        }
        // Also without a change of its own this turn: another loop's growth
        // may have put the engine over while this loop, quiet or with its
        // connections paused (it then polls), holds more than its share.
        if self.budget.over || self.budget.must_shed(self.engine.budget()) {
            self.budget.over = false;
            while self.budget.must_shed(self.engine.budget()) {
                let largest = self
                    .conns
                    .keys()
                    .into_iter()
                    .filter_map(|k| self.conns.get(k).map(|e| (k, e.budget_held)))
                    .filter(|&(_, held)| held > 0)
                    .max_by_key(|&(_, held)| held);
                let Some((key, held)) = largest else {
                    break;
                };
                log::warn!(
                    "loop {}: buffered bytes over the engine's budget ({} in all); closing a connection holding {held}",
                    self.index,
                    self.engine.budget().used()
                );
                bump(&self.engine.slot(self.index).counters().budget_closes, 1);
                self.close_conn(key, CloseReason::BufferBudget);
            }
        }
        if !self.budget.paused.is_empty() && self.budget.may_resume(self.engine.budget()) {
            for key in std::mem::take(&mut self.budget.paused) {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.budget_paused = false;
                    if self.settings.edge_triggered {
                        self.continue_io.push_back(key);
                    }
                    self.settle(key, Action::None);
                }
            }
        }
    }
}
