//! Settling a connection after a callback or I/O: apply its action and any
//! close it asked for, back-pressure, its next timeout, and the poller
//! interest it needs now.
//!
//! Owns the reconciliation of a connection's record with the loop; it must
//! never read or write payload bytes itself.
//!
//! Settling is a sequence of named steps, each of which may end the
//! connection (and then the rest is skipped):
//!
//! ```text
//!   apply_close_state ─▶ account ─▶ apply_back_pressure ─▶ schedule_timer ─▶ rearm_interest
//! ```
//!
//! A step that changes what another connection may do (a relay's feeder
//! that must stop or resume reading, the feeder of a connection that
//! closed) queues that connection; [`EventLoop::settle`] settles the queue
//! one connection at a time, never recursively.

use std::ops::ControlFlow::{self, Break, Continue};
use std::os::fd::AsFd;

use super::entry::{ConnEntry, Lingering, Phase, Pressure, ReadSide, Stamp, WriteSide};
use super::timers::{next_deadline, wants_earlier_entry};
use super::{loop_ref, EventLoop, LoopToken};
use crate::actors::slab::SlotKey;
use crate::handler::EventHandler;
use crate::options::{BackPressure, WaterMarks};
use crate::reason::{Action, CloseReason, TimeoutKind};
use crate::stats::bump;
use crate::sys::io as sysio;
use crate::sys::poller::Interest;
use crate::sys::socket;

/// Whether a connection keeps going after a step (`Break`: it closed).
type Step = ControlFlow<()>;

/// What the back-pressure step decided, given the queue length now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PressureChange {
    None,
    /// Went above the high-water mark.
    Rose,
    /// Already above it from async writes; replies are queued too now.
    RepliesToo,
    /// Back at or below the low-water mark.
    Fell,
}

/// The back-pressure transition for a queue of `queued` bytes, from
/// `pressure`, when the bytes just queued are (`replies`) or are not the
/// connection's own callback's replies. Pure: the loop applies the effects.
pub(super) fn pressure_change(
    pressure: Pressure,
    queued: usize,
    marks: WaterMarks,
    replies: bool,
) -> (Pressure, PressureChange) {
    match pressure {
        Pressure::Clear if queued > marks.high => {
            let to = if replies {
                Pressure::HighFromReplies
            } else {
                Pressure::High
            };
            (to, PressureChange::Rose)
        }
        Pressure::High if replies => (Pressure::HighFromReplies, PressureChange::RepliesToo),
        Pressure::High | Pressure::HighFromReplies if queued <= marks.low => {
            (Pressure::Clear, PressureChange::Fell)
        }
        other => (other, PressureChange::None),
    }
}

/// Whether the connection's read side says it is done: the peer ended and
/// (unless kept half-open until our side is shut too) nothing is left to
/// write.
pub(super) fn ends_now<S>(entry: &ConnEntry<S>) -> bool {
    let over = match entry.read_side {
        ReadSide::Open => false,
        ReadSide::PeerClosed => true,
        ReadSide::HalfOpen => entry.write_side == WriteSide::Shut,
    };
    over && entry.outbound.is_empty()
}

/// The poller interest `entry` needs (level-triggered), given whether the
/// loop is draining for a stop and whether its reading is blocked.
pub(super) fn wanted_interest<S>(entry: &ConnEntry<S>, draining: bool, blocked: bool) -> Interest {
    if let Phase::Connecting(_) = entry.phase {
        // The connect's completion is reported as writability.
        return Interest::WRITABLE;
    }
    let readable = !entry.read_closed()
        && match entry.phase {
            // Reading and discarding the peer's input until its end.
            Phase::Lingering(_) => true,
            // Writing the queue before closing: nothing more is read.
            Phase::Closing(_) => false,
            _ => !draining && !blocked,
        };
    Interest {
        readable,
        writable: !entry.outbound.is_empty(),
        edge: false,
    }
}

/// Whether settling `entry` would change nothing, as far as the entry
/// itself tells (the loop adds its own conditions, see
/// [`EventLoop::is_settled`]): open both ways, nothing to close or shut,
/// nothing queued or buffered either way, no back-pressure or pause, no
/// per-connection settings, and the interest armed that an open reader
/// needs. Conservative: any doubt means "settle it".
#[inline(always)]
pub(super) fn quiet<S>(entry: &ConnEntry<S>, edge_triggered: bool) -> bool {
    matches!(entry.phase, Phase::Open)
        && entry.close_reason.is_none()
        && entry.read_side == ReadSide::Open
        && entry.write_side == WriteSide::Open
        && entry.pressure == Pressure::Clear
        && !entry.budget_paused
        && !entry.user_paused
        && entry.outbound.is_empty()
        && entry.inbound.capacity() == 0
        && entry.budget_held == 0
        && entry.overrides.is_none()
        // An open TLS session holds nothing to settle: its records went to
        // the socket or the queue as they were made.
        && (edge_triggered || entry.armed == Interest::READABLE)
}

/// [`quiet`] again after a callback on a connection that was quiet before
/// it, checking only what a callback can change: a `Conn` never touches
/// the fields the loop keeps (phase, read side, pressure, budget, inbound,
/// armed interest, TLS); it can close, shut its side, pause, queue output
/// and give the connection its own settings.
#[inline(always)]
pub(super) fn still_quiet<S>(entry: &ConnEntry<S>, edge_triggered: bool) -> bool {
    let quiet_after = entry.close_reason.is_none()
        && entry.write_side == WriteSide::Open
        && !entry.user_paused
        && entry.outbound.is_empty()
        && entry.overrides.is_none();
    debug_assert!(
        !quiet_after || quiet(entry, edge_triggered),
        "a callback changed a field the loop keeps"
    );
    quiet_after
}

impl<H: EventHandler> EventLoop<H> {
    /// Whether `settle` would change nothing for `entry`: it is [`quiet`],
    /// the engine is not stopping, and no default timeout applies to an
    /// idle open connection (so none is to be scheduled).
    pub(super) fn is_settled(&self, entry: &ConnEntry<H::State>) -> bool {
        self.drain_deadline.is_none()
            && self.settings.quiet_timeouts
            && quiet(entry, self.settings.edge_triggered)
    }

    /// After a callback or I/O: apply the action, then settle the
    /// connection (see the module doc) and every connection that queues up
    /// on the way, one at a time.
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
        if self.settling {
            // From inside a step (a close that frees a relay's feeder):
            // settled once the current one is done, not recursively.
            self.unsettled.push(key);
            return;
        }
        self.settling = true;
        let mut next = Some(key);
        while let Some(key) = next.take().or_else(|| self.unsettled.pop()) {
            let _ = self.settle_one(key);
        }
        self.settling = false;
    }

    fn settle_one(&mut self, key: SlotKey) -> Step {
        self.apply_close_state(key)?;
        self.account(key);
        self.apply_back_pressure(key)?;
        self.schedule_timer(key);
        self.rearm_interest(key)
    }

    /// Closes what must close now: a close the handler (or an error) asked
    /// for, at once or, graceful with bytes queued, once they are written;
    /// a `Closing` connection whose queue is written; a connection whose
    /// peer ended and whose queue is written; any connection with nothing
    /// queued once the engine is stopping. Carries out a wanted write-side
    /// shutdown once the queue is written.
    fn apply_close_state(&mut self, key: SlotKey) -> Step {
        let Some(entry) = self.conns.get_mut(key) else {
            return Break(());
        };
        if let Some(reason) = entry.close_reason.take().map(|r| *r) {
            let graceful = match reason {
                CloseReason::Local | CloseReason::Requested | CloseReason::Protocol(_) => {
                    entry.phase.has_opened()
                }
                // Only from `close_for_tls_error`: its alert is queued
                // behind bytes not written yet (a failed handshake's too).
                CloseReason::Tls(_) => entry.tls_alert_waits(),
                _ => false,
            };
            if !graceful {
                self.close_conn(key, reason);
                return Break(());
            }
            if entry.outbound.is_empty() || entry.phase.closing().is_some() {
                self.finish_graceful_close(key, reason);
                return Break(());
            }
            // Write what is queued first (reading stops), then close; at
            // the drain deadline, close anyway (a failed handshake at its
            // own deadline, if earlier).
            self.timeouts_in_use = true;
            let drained_ms = self.now_ms + self.engine.drain_timeout().as_millis() as u64;
            let handshake = entry.phase.handshaking();
            let deadline_ms = match entry.tls.as_ref().and_then(|t| t.handshake_deadline_ms()) {
                Some(at) if handshake => drained_ms.min(at),
                _ => drained_ms,
            };
            entry.phase = Phase::Closing(Box::new(Lingering {
                reason,
                deadline_ms,
                handshake,
            }));
            entry.timer_tick = self.wheel.schedule(key, deadline_ms);
        }
        if matches!(entry.phase, Phase::Closing(_)) && entry.outbound.is_empty() {
            let reason = entry.take_lingering_reason();
            self.finish_graceful_close(key, reason);
            return Break(());
        }
        if entry.write_side == WriteSide::ShutdownWanted {
            if entry.tls.is_some() {
                // TLS half-close: close_notify goes out before the FIN.
                let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
                entry.tls_close_notify(&lp);
            }
            if entry.outbound.is_empty() {
                entry.write_side = WriteSide::Shut;
                if let Err(e) = socket::shutdown_write(entry.fd.as_fd()) {
                    self.close_conn(key, CloseReason::from_io(e));
                    return Break(());
                }
            }
        }
        if ends_now(entry) {
            self.close_conn(key, CloseReason::Eof);
            return Break(());
        }
        if self.drain_deadline.is_some() && entry.outbound.is_empty() {
            // Input never read (a paused connection's next requests) makes a
            // close send a reset, and a reset throws away the replies the
            // peer has not read yet: discard that input first, so the peer
            // reads every reply and then the end of stream.
            self.driver.discard_unread(entry.fd.as_fd());
            for _ in 0..16 {
                match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
            self.close_conn(key, CloseReason::Shutdown);
            return Break(());
        }
        Continue(())
    }

    /// Back-pressure: above the high-water mark hold async-write
    /// completions, and pause reading if the connection's own callback
    /// queued the output (its replies); resume at or below the low-water
    /// mark. Async writes alone never stop the reading: a peer echoing them
    /// back would otherwise wait for us while we wait for it.
    fn apply_back_pressure(&mut self, key: SlotKey) -> Step {
        let Some(entry) = self.conns.get_mut(key) else {
            return Break(());
        };
        let links = entry.overrides.as_ref();
        let marks = links.and_then(|o| o.marks).unwrap_or(self.settings.marks);
        let feeder = links.and_then(|o| o.fed_by);
        let replies = self.input_key == Some(key);
        let (pressure, change) =
            pressure_change(entry.pressure, entry.outbound.len(), marks, replies);
        match change {
            PressureChange::None => {}
            PressureChange::RepliesToo => entry.pressure = pressure,
            PressureChange::Rose => {
                bump(
                    &self.engine.slot(self.index).counters().back_pressure_events,
                    1,
                );
                if self.settings.back_pressure == BackPressure::Close {
                    self.close_conn(key, CloseReason::BackPressure);
                    return Break(());
                }
                entry.pressure = pressure;
                if let Some(feeder) = feeder {
                    // Stop reading the connection whose bytes fill this one.
                    self.unsettled.push(feeder);
                }
            }
            PressureChange::Fell => {
                entry.pressure = pressure;
                if let Some(feeder) = feeder {
                    if self.settings.edge_triggered {
                        self.continue_io.push_back(feeder);
                    }
                    self.unsettled.push(feeder);
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
        }
        Continue(())
    }

    /// Puts the connection's earliest deadline on the wheel, unless an
    /// entry at least as early is there already (a later one that comes
    /// due first is re-armed then).
    pub(super) fn schedule_timer(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if !self.timeouts_in_use
            && !entry
                .overrides
                .as_ref()
                .is_some_and(|o| o.timeouts.is_some())
        {
            return;
        }
        self.timeouts_in_use = true;
        if let Some((at, kind)) = next_deadline(entry, &self.settings.timeouts, self.now_ms) {
            if wants_earlier_entry(&self.wheel, entry, at) {
                if kind == TimeoutKind::Write && entry.ring_sends {
                    // io_uring: the queue goes out with the turn's submit,
                    // where a send usually completes; armed only if not.
                    self.ring_send_timers.hold(key, at);
                } else {
                    entry.timer_tick = self.wheel.schedule(key, at);
                }
            }
        }
    }

    /// Makes the poller interest match what the connection needs
    /// (level-triggered; an edge-triggered connection is registered once
    /// for both directions).
    fn rearm_interest(&mut self, key: SlotKey) -> Step {
        if self.settings.edge_triggered {
            return Continue(());
        }
        if let Some(entry) = self.conns.get_mut(key).filter(|e| e.ring_sends) {
            if !entry.outbound.is_empty() {
                // io_uring: the queue goes out with the turn's one submit.
                match self
                    .driver
                    .submit_sends(entry.fd.as_fd(), &mut entry.outbound)
                {
                    Ok(false) => {}
                    // As a write straight to the socket would, it stamps
                    // the connection: the write timeout counts from here.
                    Ok(true) => entry.last_write_ms = Stamp::at(self.now_ms),
                    Err(e) => {
                        self.close_conn(key, CloseReason::from_io(e));
                        return Break(());
                    }
                }
            }
        }
        let Some(entry) = self.conns.get(key) else {
            return Break(());
        };
        let mut want = wanted_interest(
            entry,
            self.drain_deadline.is_some(),
            self.read_blocked(entry),
        );
        if entry.ring_sends && !matches!(entry.phase, Phase::Connecting(_)) {
            // io_uring: its sends' completions come through the ring, the
            // driver watches no write readiness for it (the interest
            // would only be armed and disarmed at every reply).
            want.writable = false;
        }
        if want == entry.armed {
            return Continue(());
        }
        if let Err(e) = self
            .driver
            .reregister(entry.fd.as_fd(), LoopToken::Conn(key), want)
        {
            self.close_conn(key, CloseReason::from_io(e));
            return Break(());
        }
        if let Some(entry) = self.conns.get_mut(key) {
            entry.armed = want;
        }
        Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SockAddr;

    const MARKS: WaterMarks = WaterMarks { high: 100, low: 10 };

    /// An entry over a descriptor nothing reads (these tests use no socket
    /// calls: the descriptor only gives the record an owner).
    fn entry() -> ConnEntry<()> {
        let fd = std::fs::File::open("/dev/null").unwrap();
        ConnEntry::new(fd.into(), SockAddr::Unix(None), 0, false)
    }

    #[test]
    fn pressure_rises_above_high_and_falls_at_low() {
        use PressureChange as C;
        let p = Pressure::Clear;
        assert_eq!(pressure_change(p, 100, MARKS, false), (p, C::None));
        assert_eq!(
            pressure_change(p, 101, MARKS, false),
            (Pressure::High, C::Rose)
        );
        assert_eq!(
            pressure_change(p, 101, MARKS, true),
            (Pressure::HighFromReplies, C::Rose)
        );
        // Between the marks nothing changes either way.
        for from in [Pressure::High, Pressure::HighFromReplies] {
            assert_eq!(pressure_change(from, 50, MARKS, false), (from, C::None));
            assert_eq!(
                pressure_change(from, 10, MARKS, false),
                (Pressure::Clear, C::Fell)
            );
        }
        // Replies queued behind async writes stop the reading too, even at
        // the low-water mark (the replies are what just got queued).
        assert_eq!(
            pressure_change(Pressure::High, 5, MARKS, true),
            (Pressure::HighFromReplies, C::RepliesToo)
        );
        assert_eq!(
            pressure_change(Pressure::HighFromReplies, 5, MARKS, true),
            (Pressure::Clear, C::Fell)
        );
    }

    #[test]
    fn a_peer_end_closes_once_written_unless_kept_half_open() {
        let mut e = entry();
        assert!(!ends_now(&e));
        e.peer_closed();
        assert_eq!(e.read_side, ReadSide::PeerClosed);
        assert!(ends_now(&e));
        e.outbound.push(b"last words", 64);
        assert!(!ends_now(&e), "the queue is written first");
        e.outbound.consume(10);
        // The handler keeps it half-open: it ends once our side is shut too.
        e.read_side = ReadSide::HalfOpen;
        assert!(!ends_now(&e));
        e.write_side = WriteSide::ShutdownWanted;
        assert!(!ends_now(&e));
        e.write_side = WriteSide::Shut;
        assert!(ends_now(&e));
        // A second end of stream does not undo the half-open choice.
        e.read_side = ReadSide::HalfOpen;
        e.peer_closed();
        assert_eq!(e.read_side, ReadSide::HalfOpen);
    }

    #[test]
    fn interest_follows_phase_queue_and_blocks() {
        let mut e = entry();
        let want = |e: &ConnEntry<()>, draining, blocked| {
            let i = wanted_interest(e, draining, blocked);
            (i.readable, i.writable)
        };
        assert_eq!(want(&e, false, false), (true, false));
        assert_eq!(
            want(&e, true, false),
            (false, false),
            "a stop stops reading"
        );
        assert_eq!(want(&e, false, true), (false, false), "blocked by pressure");
        e.outbound.push(b"x", 64);
        assert_eq!(want(&e, false, false), (true, true));
        let closing = || {
            Box::new(Lingering {
                reason: CloseReason::Local,
                deadline_ms: 0,
                handshake: false,
            })
        };
        e.phase = Phase::Closing(closing());
        assert_eq!(want(&e, false, false), (false, true), "closing: write only");
        e.outbound.consume(1);
        e.phase = Phase::Lingering(closing());
        assert_eq!(
            want(&e, true, true),
            (true, false),
            "lingering reads the peer's rest whatever else holds"
        );
        e.peer_closed();
        assert_eq!(want(&e, false, false), (false, false));
        // A connect in progress waits for writability, whatever else holds.
        let mut e = entry();
        e.phase = Phase::Connecting(Box::new(super::super::entry::Connecting {
            deadline_ms: 0,
            done: None,
        }));
        assert_eq!(want(&e, false, true), (false, true));
    }

    #[test]
    fn quiet_means_every_step_would_do_nothing() {
        let mut e = entry();
        e.armed = Interest::READABLE;
        assert!(quiet(&e, false));
        assert!(!wanted_interest(&e, false, false).writable);
        assert_eq!(wanted_interest(&e, false, false), e.armed);
        assert!(!ends_now(&e));
        // Each of these leaves something for a step to do.
        let changes: [fn(&mut ConnEntry<()>); 10] = [
            |e| e.close_with(CloseReason::Local),
            |e| e.peer_closed(),
            |e| e.want_shutdown(),
            |e| e.pressure = Pressure::High,
            |e| e.budget_paused = true,
            |e| e.user_paused = true,
            |e| e.outbound.push(b"queued", 64),
            |e| e.inbound = b"unread".to_vec(),
            |e| e.budget_held = 1,
            |e| e.armed = Interest::BOTH,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut e = entry();
            e.armed = Interest::READABLE;
            change(&mut e);
            assert!(!quiet(&e, false), "change {i} left it quiet");
        }
        // Edge-triggered connections are registered once for both ways.
        e.armed = Interest::BOTH.edge_triggered();
        assert!(quiet(&e, true) && !quiet(&e, false));
        e.phase = Phase::Handshaking;
        assert!(!quiet(&e, true));
    }

    #[test]
    fn still_quiet_sees_every_change_a_callback_can_make() {
        let mut e = entry();
        e.armed = Interest::READABLE;
        assert!(still_quiet(&e, false));
        // What `Conn` can do to its own connection: each leaves a step to do.
        let changes: [fn(&mut ConnEntry<()>); 5] = [
            |e| e.close_with(CloseReason::Local),
            |e| e.want_shutdown(),
            |e| e.user_paused = true,
            |e| e.outbound.push(b"queued", 64),
            |e| e.overrides_mut().marks = Some(MARKS),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut e = entry();
            e.armed = Interest::READABLE;
            change(&mut e);
            assert!(!still_quiet(&e, false), "change {i} left it quiet");
            assert!(!quiet(&e, false), "change {i}: quiet disagrees");
        }
    }

    #[test]
    fn lifecycle_phases() {
        let mut e = entry();
        assert!(e.phase.has_opened(), "a new record is open unless told");
        e.phase = Phase::AwaitingHeader;
        assert!(e.awaiting_header() && !e.phase.has_opened());
        e.phase = Phase::Handshaking;
        assert!(!e.phase.has_opened() && !e.awaiting_header());
        e.phase = Phase::Closing(Box::new(Lingering {
            reason: CloseReason::Requested,
            deadline_ms: 7,
            handshake: false,
        }));
        assert!(e.phase.has_opened());
        assert_eq!(e.phase.closing().map(|l| l.deadline_ms), Some(7));
        assert!(matches!(e.take_lingering_reason(), CloseReason::Requested));
        assert!(matches!(e.phase, Phase::Open));
        // Nothing was closing: the reason is a local close, the phase stays.
        e.phase = Phase::Handshaking;
        assert!(matches!(e.take_lingering_reason(), CloseReason::Local));
        assert!(matches!(e.phase, Phase::Handshaking));
        // A failed handshake writing its alert never opened, and is a
        // handshake again once written.
        e.phase = Phase::Closing(Box::new(Lingering {
            reason: CloseReason::Eof,
            deadline_ms: 7,
            handshake: true,
        }));
        assert!(!e.phase.has_opened() && e.phase.handshaking());
        assert!(matches!(e.take_lingering_reason(), CloseReason::Eof));
        assert!(matches!(e.phase, Phase::Handshaking) && e.phase.handshaking());
        // The first close reason wins.
        e.close_with(CloseReason::Eof);
        e.close_with(CloseReason::Local);
        assert!(matches!(e.close_reason.as_deref(), Some(CloseReason::Eof)));
    }
}
