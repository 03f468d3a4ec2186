//! The turn: what one pass of the loop does, from deciding how long it may
//! sleep and parking in the poller, through I/O, messages and timers; the
//! drain that starts when the engine stops, and the final shutdown.
//!
//! Owns only the order of the steps of a turn; each step lives in its own
//! file. Must never block anywhere but in the poller's wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{guarded, loop_ref, EventLoop, LoopToken, BUDGET_RETRY, OVERFLOW_RETRY, TRIM_EVERY};
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};

impl<H: EventHandler> EventLoop<H> {
    pub(super) fn serve(&mut self) -> Result<()> {
        loop {
            if !self.upgrade_drain_seen && self.engine.deploy().is_draining() {
                self.begin_upgrade_drain();
            }
            if self.engine.loops_stopping() {
                let deadline = match self.drain_deadline {
                    Some(d) => d,
                    None => self.begin_drain(),
                };
                if self.conns.is_empty() || Instant::now() >= deadline {
                    return Ok(());
                }
            }
            let timeout = if self.overflow_waiting {
                // Nothing wakes a loop when another's lane frees up: retry soon.
                Some(OVERFLOW_RETRY)
            } else if !self.budget.paused.is_empty() {
                // Nor when other loops' connections free buffer budget.
                Some(BUDGET_RETRY)
            } else if self.continue_io.is_empty() {
                // A trim put off (too soon after the last) must still come.
                let trim = self
                    .last_trim
                    .filter(|_| self.trim_due())
                    .map(|t| t + TRIM_EVERY);
                [self.next_tick, self.listeners.resume_at(), trim]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let wheel = self
                .wheel
                .poll_timeout_ms(self.now_ms)
                .map(Duration::from_millis);
            let drain = self
                .drain_deadline
                .map(|t| t.saturating_duration_since(Instant::now()));
            let timeout = [timeout, wheel, drain].into_iter().flatten().min();
            let (driver, ready) = (&mut self.driver, &mut self.ready);
            ready.clear();
            if timeout == Some(Duration::ZERO) {
                // Not going to sleep: poll without announcing a park, which
                // would only make senders ring a doorbell nobody waits on.
                driver
                    .wait(ready, timeout)
                    .map_err(|e| Error::io("wait for events", e))?;
            } else {
                self.mailbox
                    .park_with(|may_block| {
                        driver.wait(
                            ready,
                            if may_block {
                                timeout
                            } else {
                                Some(Duration::ZERO)
                            },
                        )
                    })
                    .map_err(|e| Error::io("wait for events", e))?;
            }
            // The loop's clock: one read per turn (a vDSO call, far cheaper
            // than the epoll_wait before it). Connections are stamped with
            // it, so it must be fresh even before any timeout is set: a
            // per-connection timeout counts from the stamps it finds.
            self.now_ms = self.epoch.elapsed().as_millis() as u64;
            self.process_events();
            self.continue_edge_triggered();
            self.process_messages();
            self.overflow_waiting = self.engine.flush_loop_overflow();
            self.timers();
            self.expire_timeouts();
            self.enforce_budget();
        }
    }

    /// Stop reading from every connection; close the idle ones now and the
    /// others once their queues are flushed (or at the deadline).
    pub(super) fn begin_drain(&mut self) -> Instant {
        // First apply what is already queued (writes sent before the stop
        // must reach their connections, not find them closed). Bounded: a
        // sender that keeps sending does not keep the drain from starting.
        for _ in 0..64 {
            if !self.mailbox.has_messages() {
                break;
            }
            self.process_messages();
        }
        let deadline = Instant::now() + self.engine.drain_timeout();
        self.drain_deadline = Some(deadline);
        for key in self.conns.keys() {
            self.settle(key, Action::None);
        }
        deadline
    }

    pub(super) fn process_events(&mut self) {
        // What decides the fast path's shape is fixed for the turn: ask it
        // once, not per event. It does not apply while draining (the drain
        // starts only between turns), and it has a copy per driver (see
        // `Driver::recv_as`).
        if self.drain_deadline.is_some() {
            self.process_events_as::<false, false>();
        } else if self.driver.completes() {
            self.process_events_as::<true, true>();
        } else {
            self.process_events_as::<true, false>();
        }
    }

    /// [`process_events`](Self::process_events) with the fast path on or
    /// off (`FAST`) for the completion driver or not (`COMPLETES`).
    #[inline(always)]
    fn process_events_as<const FAST: bool, const COMPLETES: bool>(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        // What a callback's `Conn` needs from the loop, made once per turn
        // (the clock is the turn's): its own handle on the engine keeps it
        // apart from the loop, which every event borrows mutably.
        let engine = Arc::clone(&self.engine);
        let lp = loop_ref(self.index, &self.settings, &engine, self.now_ms);
        for event in &ready {
            match LoopToken::decode(event.token()) {
                LoopToken::Conn(key) => self.on_io::<FAST, COMPLETES>(key, event, &lp),
                LoopToken::Doorbell => {
                    if self.mailbox.doorbell().needs_drain() {
                        let _ = self.mailbox.doorbell().drain();
                    }
                }
                LoopToken::Listener(i) => self.accept(i),
                LoopToken::Udp(i) => self.receive_datagrams(i),
            }
        }
        self.ready = ready;
    }

    pub(super) fn shutdown(&mut self) {
        // Apply what was already queued (writes reach their connections before
        // those close); anything sent from now on is refused.
        for message in self.mailbox.close_and_drain() {
            self.handle_message(message);
        }
        let left = self.conns.keys();
        let unflushed = left
            .iter()
            .filter(|k| self.conns.get(**k).is_some_and(|e| !e.outbound.is_empty()))
            .count();
        if unflushed > 0 {
            log::warn!(
                "loop {}: closing {unflushed} connections with unsent bytes after the drain deadline",
                self.index
            );
        }
        for key in left {
            self.close_conn(key, CloseReason::Shutdown);
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        guarded("on_shutdown", || handler.on_shutdown(ctx));
        log::info!(
            "loop {} stopped: {}",
            self.index,
            self.engine.stats_of(self.index)
        );
    }
}
