//! Time on the loop: the ticker, paused listeners coming back, and
//! connection timeouts on the wheel (the earliest deadline of each
//! connection, checked against its real state when it comes due).
//!
//! Owns deadlines only; it must never close a connection whose deadline
//! moved (a stale wheel entry is ignored).

use std::io;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::entry::{ConnEntry, Phase};
use super::{guarded, EventLoop};
use crate::actors::slab::SlotKey;
use crate::error::Error;
use crate::handler::EventHandler;
use crate::options::Timeouts;
use crate::reason::{Action, CloseReason, TimeoutKind};
use crate::stats::bump;
use crate::timer_wheel::TimerWheel;

/// The earliest moment one of `entry`'s timeouts can expire, with its kind.
pub(super) fn next_deadline<S>(
    entry: &ConnEntry<S>,
    defaults: &Timeouts,
    now_ms: u64,
) -> Option<(u64, TimeoutKind)> {
    if let Phase::Connecting(connecting) = &entry.phase {
        return Some((connecting.deadline_ms, TimeoutKind::Connect));
    }
    if let Some(crate::proxy_protocol::ProxyState::Awaiting { deadline_ms, .. }) = entry.proxy() {
        return Some((*deadline_ms, TimeoutKind::Read));
    }
    if let Some(lingering) = entry.phase.closing() {
        // A graceful close past its deadline (reported with its own reason).
        return Some((lingering.deadline_ms, TimeoutKind::Write));
    }
    if let Some(at) = entry.tls.as_ref().and_then(|t| t.handshake_deadline_ms()) {
        return Some((at, TimeoutKind::Handshake));
    }
    // By reference: the common case below must not copy the whole set.
    let t: &Timeouts = match entry.overrides.as_ref().and_then(|o| o.timeouts.as_ref()) {
        Some(t) => t,
        None => defaults,
    };
    // At most u32::MAX ms: a stamp is then exact whenever it is read (a
    // deadline fires before its stamp is 2^32 ms old; see `Stamp`).
    let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u64;
    // The common cases, answered in a few compares: both directions open,
    // no input waiting, no read timeout. Then the incomplete-input and
    // half-closed timeouts do not apply either: only the idle timeout (if
    // set) and, with a queue (a reply in flight: every reply on io_uring,
    // whose sends complete a turn later), the write timeout. (callgrind,
    // on io_uring: the general computation below was 166 instructions per
    // 512-byte echo, 222 per HTTP request, which has an idle timeout.)
    if entry.inbound.is_empty() && !entry.read_closed() && !entry.write_shut() && t.read.is_none() {
        let write = t.write.filter(|_| !entry.outbound.is_empty());
        if t.idle.is_none() && write.is_none() {
            return None;
        }
        let last_write = entry.last_write_ms.ms(now_ms);
        let write = write.map(|d| (last_write + ms(d), TimeoutKind::Write));
        let Some(idle) = t.idle else {
            return write;
        };
        let last_read = entry.last_read_ms.ms(now_ms);
        let idle = (last_read.max(last_write) + ms(idle), TimeoutKind::Idle);
        // The first of equals, as `min_by_key` below picks.
        return Some(match write {
            Some(w) if w.0 < idle.0 => w,
            _ => idle,
        });
    }
    any_deadline(entry, t, now_ms)
}

/// [`next_deadline`]'s general computation, for a connection's timeouts
/// `t`: the earliest of every timeout that applies.
fn any_deadline<S>(entry: &ConnEntry<S>, t: &Timeouts, now_ms: u64) -> Option<(u64, TimeoutKind)> {
    let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u64;
    let last_read = entry.last_read_ms.ms(now_ms);
    let last_write = entry.last_write_ms.ms(now_ms);
    let idle = t
        .idle
        .map(|d| (last_read.max(last_write) + ms(d), TimeoutKind::Idle));
    let read = t.read.map(|d| (last_read + ms(d), TimeoutKind::Read));
    let write = t
        .write
        .filter(|_| !entry.outbound.is_empty())
        .map(|d| (last_write + ms(d), TimeoutKind::Write));
    // Input the handler holds back by pausing (a job in flight) is its
    // choice, not a slow peer's: the clock restarts when it resumes.
    let incomplete = t
        .incomplete
        .filter(|_| !entry.inbound.is_empty() && !entry.user_paused)
        .map(|d| {
            (
                entry.input_since_ms.ms(now_ms) + ms(d),
                TimeoutKind::Incomplete,
            )
        });
    let half_closed = t
        .half_closed
        .filter(|_| entry.read_closed() || entry.write_shut())
        .map(|d| (last_read.max(last_write) + ms(d), TimeoutKind::HalfClosed));
    [idle, read, write, incomplete, half_closed]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

/// Whether `entry`'s deadline `at_ms` needs a wheel entry: it has none, or
/// only a later one (an earlier entry fires first and re-arms from there).
pub(super) fn wants_earlier_entry<S>(wheel: &TimerWheel, entry: &ConnEntry<S>, at_ms: u64) -> bool {
    entry.timer_tick == 0 || wheel.tick_of(at_ms) < entry.timer_tick
}

/// Write timeouts of connections whose queue goes to the io_uring ring:
/// held back for one turn instead of put on the wheel.
///
/// A connection's queued bytes are handed to the ring when it is settled
/// and submitted by the next turn's `io_uring_enter`, in which a send to a
/// socket with room completes at once. Put on the wheel at once (as on
/// epoll, where a queue is what a write left), every reply would leave an
/// entry behind for the whole write timeout (60 s by default): memory per
/// idle connection, and a wake-up to find it stale. So a write deadline
/// that would be scheduled for such a connection is held here instead,
/// and after the turn whose wait submitted the send
/// ([`EventLoop::arm_unsent_ring_sends`]) it goes on the wheel only if
/// bytes are still queued (the peer is not reading): same deadline
/// (counted from the send's submission stamp), just scheduled a turn
/// later. Meanwhile the wheel wakes the loop by the earliest held deadline
/// ([`TimerWheel::wake_at`](crate::timer_wheel::TimerWheel::wake_at)), so
/// a loop with nothing else to do cannot sleep past it.
#[derive(Default)]
pub(super) struct RingSendTimers {
    /// Held this turn (their sends are submitted by the next wait).
    this_turn: Vec<SlotKey>,
    /// The earliest deadline held this turn.
    earliest_ms: Option<u64>,
    /// Held last turn: checked after this turn's wait.
    last_turn: Vec<SlotKey>,
}

impl RingSendTimers {
    /// Holds back `key`'s write deadline `at_ms` (see the type's doc).
    pub(super) fn hold(&mut self, key: SlotKey, at_ms: u64) {
        self.this_turn.push(key);
        self.earliest_ms = Some(self.earliest_ms.map_or(at_ms, |e| e.min(at_ms)));
    }
}

impl<H: EventHandler> EventLoop<H> {
    /// After the wait that submitted the sends held last turn (see
    /// [`RingSendTimers`]): schedules the timeout of every connection with
    /// bytes still unsent; this turn's become the next turn's to check.
    fn arm_unsent_ring_sends(&mut self) {
        let timers = &mut self.ring_send_timers;
        if timers.last_turn.is_empty() && timers.this_turn.is_empty() {
            return;
        }
        let mut keys = mem::take(&mut timers.last_turn);
        for key in keys.drain(..) {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            if entry.outbound.is_empty() {
                continue; // sent (the completion's settle scheduled the rest)
            }
            if let Some((at, _)) = next_deadline(entry, &self.settings.timeouts, self.now_ms) {
                if wants_earlier_entry(&self.wheel, entry, at) {
                    entry.timer_tick = self.wheel.schedule(key, at);
                }
            }
        }
        let timers = &mut self.ring_send_timers;
        timers.last_turn = mem::replace(&mut timers.this_turn, keys);
        self.wheel.wake_at(timers.earliest_ms.take());
    }

    pub(super) fn timers(&mut self) {
        if self.next_tick.is_none() && self.listeners.resume_at().is_none() {
            return; // no clock read on the hot path
        }
        let now = Instant::now();
        if self.listeners.resume_at().is_some() {
            self.resume_listeners(now);
        }
        let Some(due) = self.next_tick else { return };
        if now < due {
            return;
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        let (delay, action) = guarded("on_tick", || handler.on_tick(ctx))
            .unwrap_or((Duration::from_secs(1), Action::None));
        self.next_tick = Some(now + delay);
        if action == Action::Shutdown {
            self.engine.request_stop();
        }
    }

    /// Closes connections whose timeout expired; re-arms the others.
    pub(super) fn expire_timeouts(&mut self) {
        self.arm_unsent_ring_sends();
        if self.wheel.len() == 0 {
            self.publish_timers();
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(self.now_ms, &mut due);
        for (key, tick) in due.drain(..) {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            if entry.timer_tick != tick {
                continue; // superseded by an earlier entry
            }
            entry.timer_tick = 0;
            match next_deadline(entry, &self.settings.timeouts, self.now_ms) {
                Some((at, TimeoutKind::Connect)) if at <= self.now_ms && entry.is_connecting() => {
                    let error = Error::io(
                        "connect",
                        io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                    );
                    self.fail_dial(key, error);
                }
                Some((at, _)) if at <= self.now_ms && entry.awaiting_header() => {
                    self.refuse_header(key, crate::proxy_protocol::ProxyHeaderError::Timeout);
                }
                Some((at, _)) if at <= self.now_ms && entry.phase.closing().is_some() => {
                    let reason = entry.take_lingering_reason();
                    log::debug!(
                        "loop {}: closing with unsent bytes after the drain deadline",
                        self.index
                    );
                    self.close_conn(key, reason);
                }
                Some((at, kind)) if at <= self.now_ms => {
                    bump(&self.engine.slot(self.index).counters().timeouts, 1);
                    self.close_conn(key, CloseReason::Timeout(kind));
                }
                Some((at, _)) => entry.timer_tick = self.wheel.schedule(key, at),
                None => {}
            }
        }
        self.due = due;
        self.publish_timers();
    }

    /// [`LoopStats::timers`](crate::LoopStats::timers): the wheel's entries.
    fn publish_timers(&self) {
        let gauge = &self.engine.slot(self.index).counters().timers;
        let len = self.wheel.len() as u64;
        // Relaxed: a gauge only this loop writes; readers want a recent value.
        if gauge.load(Ordering::Relaxed) != len {
            gauge.store(len, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SockAddr;
    use crate::event_loop::entry::{ReadSide, Stamp, WriteSide};

    /// The common cases [`next_deadline`] answers in a few compares give
    /// what the general computation gives, for every combination of the
    /// timeouts they involve, a queue or none, and the stamps' order.
    #[test]
    fn the_shortcut_agrees_with_the_general_computation() {
        let d = |s: u64| Some(Duration::from_secs(s));
        let now = 1_000_000;
        let mut checked = 0;
        for idle in [None, d(5), d(60), d(120)] {
            for write in [None, d(60)] {
                for read in [None, d(30)] {
                    for queued in [false, true] {
                        for (r, w) in [
                            (now - 100, now - 100),
                            (now - 70_000, now),
                            (now, now - 70_000),
                        ] {
                            for side in 0..3 {
                                let fd = std::fs::File::open("/dev/null").unwrap();
                                let mut e: ConnEntry<()> =
                                    ConnEntry::new(fd.into(), SockAddr::Unix(None), 0, false);
                                e.last_read_ms = Stamp::at(r);
                                e.last_write_ms = Stamp::at(w);
                                if queued {
                                    e.outbound.push(b"reply", 64);
                                }
                                match side {
                                    1 => e.read_side = ReadSide::PeerClosed,
                                    2 => e.write_side = WriteSide::Shut,
                                    _ => {}
                                }
                                let t = Timeouts {
                                    idle,
                                    read,
                                    write,
                                    ..Timeouts::default()
                                };
                                assert_eq!(
                                    next_deadline(&e, &t, now),
                                    any_deadline(&e, &t, now),
                                    "idle {idle:?} write {write:?} read {read:?} queued {queued} stamps {r} {w} side {side}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 2 * 2 * 2 * 3 * 3);
    }
}
