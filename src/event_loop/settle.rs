//! Settling a connection after a callback or I/O: apply its action and any
//! close it asked for, back-pressure, its next timeout, and the poller
//! interest it needs now.
//!
//! Owns the reconciliation of a connection's record with the loop; it must
//! never read or write payload bytes itself.

use std::os::fd::AsFd;

use super::entry::Lingering;
use super::timers::next_deadline;
use super::{loop_ref, EventLoop};
use crate::actors::slab::SlotKey;
use crate::handler::{Action, CloseReason, EventHandler};
use crate::options::BackPressure;
use crate::stats::bump;
use crate::sys::poller::Interest;
use crate::sys::socket;

impl<H: EventHandler> EventLoop<H> {
    /// After a callback or I/O: apply the action, close if due, otherwise make
    /// the poller interest match what the connection needs.
    pub(super) fn settle(&mut self, key: SlotKey, action: Action) {
        match action {
            Action::Close => {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.close_with(CloseReason::Local);
                }
            }
            Action::Shutdown => self.engine.request_stop(),
            _ => {}
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(reason) = entry.close_reason.take() {
            let graceful = matches!(
                reason,
                CloseReason::Local | CloseReason::Requested | CloseReason::Protocol(_)
            );
            if graceful && !entry.outbound.is_empty() && entry.lingering.is_none() {
                // Write what is queued first (reading stops), then close; at
                // the drain deadline, close anyway.
                self.timeouts_in_use = true;
                let deadline_ms = self.now_ms + self.engine.drain_timeout().as_millis() as u64;
                entry.lingering = Some(Box::new(Lingering {
                    reason,
                    deadline_ms,
                    draining: false,
                }));
                entry.timer_tick = self.wheel.schedule(key, deadline_ms);
            } else if graceful {
                self.finish_graceful_close(key, reason);
                return;
            } else {
                self.close_conn(key, reason);
                return;
            }
        }
        if entry.lingering.as_ref().is_some_and(|l| !l.draining) && entry.outbound.is_empty() {
            let reason = entry.take_lingering_reason();
            self.finish_graceful_close(key, reason);
            return;
        }
        if entry.shutdown_wanted && !entry.shutdown_done && entry.tls.is_some() {
            // TLS half-close: close_notify goes out before the FIN.
            let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
            entry.tls_close_notify(&lp);
        }
        if entry.shutdown_wanted && !entry.shutdown_done && entry.outbound.is_empty() {
            entry.shutdown_done = true;
            if let Err(e) = socket::shutdown_write(entry.fd.as_fd()) {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let both_done = entry.read_closed && entry.shutdown_done;
        if entry.read_closed && entry.outbound.is_empty() && (!entry.half_open || both_done) {
            self.close_conn(key, CloseReason::Eof);
            return;
        }
        if self.drain_deadline.is_some() && entry.outbound.is_empty() {
            self.close_conn(key, CloseReason::Shutdown);
            return;
        }
        self.account(key);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        // Back-pressure: above the high-water mark hold async-write
        // completions, and pause reading if the connection's own callback
        // queued the output (its replies); resume at or below the low-water
        // mark. Async writes alone never stop the reading: a peer echoing
        // them back would otherwise wait for us while we wait for it.
        let marks = entry
            .overrides
            .as_ref()
            .and_then(|o| o.marks)
            .unwrap_or(self.settings.marks);
        let queued = entry.outbound.len();
        if !entry.paused && queued > marks.high {
            bump(
                &self.engine.loops[self.index].counters.back_pressure_events,
                1,
            );
            if self.settings.back_pressure == BackPressure::Close {
                self.close_conn(key, CloseReason::BackPressure);
                return;
            }
            entry.paused = true;
            entry.replies_paused = self.input_key == Some(key);
            if let Some(feeder) = entry.overrides.as_ref().and_then(|o| o.fed_by) {
                // Stop reading the connection whose bytes fill this one.
                self.settle(feeder, Action::None);
            }
        } else if entry.paused && !entry.replies_paused && self.input_key == Some(key) {
            // Replies to input, queued behind async writes: stop reading too.
            entry.replies_paused = true;
        } else if entry.paused && queued <= marks.low {
            entry.paused = false;
            entry.replies_paused = false;
            if let Some(feeder) = entry.overrides.as_ref().and_then(|o| o.fed_by) {
                if self.settings.edge_triggered {
                    self.continue_io.push_back(feeder);
                }
                self.settle(feeder, Action::None);
            }
            if self.settings.edge_triggered {
                // No new edge will come for bytes already waiting.
                self.continue_io.push_back(key);
            }
            if let Some(held) = self.deferred.remove(&key) {
                for (done, result) in held {
                    done.complete(result);
                }
            }
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if self.timeouts_in_use
            || entry
                .overrides
                .as_ref()
                .is_some_and(|o| o.timeouts.is_some())
        {
            self.timeouts_in_use = true;
            if let Some((at, _)) = next_deadline(entry, &self.settings.timeouts) {
                if entry.timer_tick == 0 || self.wheel.tick_of(at) < entry.timer_tick {
                    entry.timer_tick = self.wheel.schedule(key, at);
                }
            }
        }
        if self.settings.edge_triggered {
            return; // registered once for both directions
        }
        let want_write = !entry.outbound.is_empty();
        let draining = entry.lingering.as_ref().is_some_and(|l| l.draining);
        let want_read = !entry.read_closed
            && (draining
                || (entry.lingering.is_none()
                    && self.drain_deadline.is_none()
                    && !self.reading_blocked(key)));
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if want_write != entry.write_armed || want_read != entry.read_armed {
            let interest = Interest {
                readable: want_read,
                writable: want_write,
                edge: false,
            };
            if let Err(e) = self.poller.modify(entry.fd.as_fd(), key.token(), interest) {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
            entry.write_armed = want_write;
            entry.read_armed = want_read;
        }
    }
}
