//! The fast path of the commonest event: input alone, on an open
//! connection with nothing waiting either way (and no timer to move). One lookup
//! of the entry says whether it applies; then one receive, `on_traffic`
//! over the received bytes; when the callback only read and wrote through
//! (its `Conn` says whether it touched its connection otherwise), settling
//! would change nothing and the event is done. (A callback that did touch
//! it costs one more lookup to see whether it is still quiet.)
//!
//! On io_uring a reply is never written through: it is queued for the
//! ring (or, an echo, claimed from its received buffer). When that reply
//! is the callback's only change, the steps of settling it would take are
//! known (count the budget, hold the write deadline, hand the queue to
//! the ring) and are done directly (`replied`), not by the general path.
//!
//! Whether it applies is a dozen tests of the entry; a connection that
//! passed them keeps a *mark* in the connection table (see
//! `actors::slab`'s "Marks") until anything reaches any entry mutably —
//! every path but this one and a write straight through — so a busy
//! connection pays for the tests only after something changed.
//!
//! Owns only that shortcut: every other case (and every outcome of the
//! callback that leaves something to do) goes through the general path in
//! `io.rs` and `settle.rs`, which must stay able to handle everything this
//! path declines. It must never decide a connection's state itself.
//!
//! Edge-triggered, a receive that filled the driver's buffer may have left
//! more in the socket: the connection joins the turn's edge-triggered
//! continuation (`continue_io`), which reads on until the socket would
//! block or the per-turn chunk is spent (so this turn may move one buffer
//! more than the chunk).

use std::io;
use std::os::fd::AsFd;

use super::driver::Received;
use super::entry::ConnEntry;
use super::entry::LoopRef;
use super::entry::WriteSide;
use super::forward::{Claim, Forward};
use super::io::Before;
use super::settle::{quiet, still_quiet};
use super::{guarded, EventLoop};
use crate::actors::slab::SlotKey;
use crate::conn::Conn;
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};
use crate::stats::bump;

impl<H: EventHandler> EventLoop<H> {
    /// Handles an input-only readiness event of `key` if the fast path
    /// applies (see the module doc); `false`: it does not, and nothing was
    /// done (the caller takes the general path). Not while draining (the
    /// caller asks once per turn), and in one copy per driver (`COMPLETES`:
    /// the completion driver's; see `Driver::recv_as`), chosen once per
    /// turn too.
    ///
    /// `lp`: the turn's [`LoopRef`] (made once per turn, not per event).
    #[inline(always)]
    pub(super) fn read_fast<const COMPLETES: bool>(
        &mut self,
        key: SlotKey,
        lp: &LoopRef<'_>,
    ) -> bool {
        debug_assert!(self.drain_deadline.is_none());
        let edge = self.settings.edge_triggered;
        let quiet_timeouts = self.settings.quiet_timeouts;
        let fits = |e: &ConnEntry<H::State>| fast_path_fits(e, edge, quiet_timeouts);
        // A connection that fitted at its last event and that nothing has
        // reached mutably since (but writes straight through) still fits:
        // its mark says so without the dozen tests.
        let Some((entry, fit)) = self.conns.get_mut_vouched(key, fits) else {
            return true; // an event for a connection closed earlier this turn
        };
        debug_assert!(
            !fit || fits(entry),
            "a connection changed without voiding the marks"
        );
        if !fit {
            return false;
        }
        let got = match self.driver.recv_as::<COMPLETES>(entry.fd.as_fd()) {
            Ok(got) if !got.is_empty() => got,
            Ok(got) => {
                // (Given back here, not by `end_of_stream`: passed to a
                // call, the receive would be kept in memory on every path.)
                self.driver.release_as::<COMPLETES>(got);
                self.stream_ended(key);
                return true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                self.close_conn(key, CloseReason::from_io(e));
                return true;
            }
        };
        // Read now; and with nothing queued (it is quiet), a stall of
        // queued output cannot have begun before now either: the write
        // side's stamp moves too, so that a write straight through need
        // not stamp it (see `Conn::new_straight`).
        let now = super::entry::Stamp::at(lp.now_ms);
        entry.last_read_ms = now;
        entry.last_write_ms = now;
        // Only the completion driver sends through the ring.
        debug_assert!(COMPLETES || !entry.ring_sends);
        let ring_sends = COMPLETES && entry.ring_sends;
        let n = got.len();
        bump(&lp.counters.bytes_in, n as u64);
        if edge && got.filled_as::<COMPLETES>(&self.driver) {
            self.continue_io.push_back(key);
        }
        let handler = &mut self.handler;
        let input = self.driver.bytes_as::<COMPLETES>(&got);
        let provided = self.driver.offers_as::<COMPLETES>(&got);
        if provided {
            // io_uring: an echo is sent from the received buffer (forward.rs).
            Forward::offer(&lp.forward, input);
        }
        // Quiet and without TLS (see `fast_path_fits`): its writes may go
        // straight to the socket unless it sends through the ring (a claim
        // of the received buffer is a ring send: never straight).
        let mut conn = if ring_sends {
            Conn::new(input, &mut self.conns, key, lp)
        } else {
            Conn::new_straight(input, &mut self.conns, key, lp)
        };
        let action = guarded("on_traffic", || handler.on_traffic(&mut conn));
        let claim = if provided {
            Forward::take(&lp.forward)
        } else {
            None
        };
        if conn.unchanged_and_drained() && matches!(action, Some(Action::None)) {
            // It read everything, at most wrote straight through, and
            // asked nothing else (see `Conn::own_changed`): still quiet,
            // without a second lookup; settling would change nothing (and
            // its mark, if it has one, stays valid).
            conn.finish_unchanged();
            debug_assert!(
                self.conns.get(key).is_some_and(|e| still_quiet(e, edge)),
                "a callback changed its connection without saying so"
            );
            self.driver.release_as::<COMPLETES>(got);
            return true;
        }
        let (unread, side) = conn.finish();
        if unread == 0
            && matches!(action, Some(Action::None))
            && side.is_none()
            && self.conns.get(key).is_some_and(|e| still_quiet(e, edge))
        {
            // Changed, but quiet still (looked up): as above.
            // (`side` is `None`: forgetting it saves a drop call.)
            std::mem::forget(side);
            self.driver.release_as::<COMPLETES>(got);
            return true;
        }
        if ring_sends
            && unread == 0
            && matches!(action, Some(Action::None))
            && side.is_none()
            && self.reply_fits(key, claim)
        {
            // A reply for the ring (or an echo sent from its received
            // buffer), nothing else.
            std::mem::forget(side);
            self.replied(key, got, claim);
            return true;
        }
        // Something to do: what it left unread is kept, then the general
        // path settles it. (A change the marks did not see: void them.)
        self.conns.void_marks();
        let consumed = n - unread;
        let rest = (unread > 0).then(|| input[consumed..].to_vec());
        if COMPLETES {
            self.send_claimed(key, got, claim);
        } else {
            // Nothing lent, nothing claimed: the readiness driver's copy
            // need not keep `got` past the callback.
            debug_assert!(claim.is_none());
            self.driver.release_as::<false>(got);
        }
        if let Some(rest) = rest {
            self.keep_unread(key, rest, consumed, false);
        }
        let before = Before {
            queued: 0,
            user_paused: false,
        };
        self.after_traffic(key, action, side, before);
        true
    }
}

impl<H: EventHandler> EventLoop<H> {
    /// Whether the only change an input callback of `key` (quiet before
    /// it, see [`fast_path_fits`]; its sends go through the ring) made is
    /// its reply: bytes queued, or the write that claimed its received
    /// buffer (`claim`, `forward.rs`) with nothing else queued; under the
    /// high-water mark, and level-triggered (an edge-triggered connection
    /// is settled as before). Then [`replied`](Self::replied) does all
    /// that settling would.
    #[inline(always)]
    fn reply_fits(&self, key: SlotKey, claim: Option<Claim>) -> bool {
        !self.settings.edge_triggered
            && self.conns.get(key).is_some_and(|e| {
                let queued = e.outbound.len();
                e.close_reason.is_none()
                    && e.write_side == WriteSide::Open
                    && !e.user_paused
                    && e.overrides.is_none()
                    && queued > 0
                    && queued <= self.settings.marks.high
                    && claim.map_or(true, |c| queued == c.len)
            })
    }

    /// After an input callback that [`reply_fits`](Self::reply_fits):
    /// sends the claimed bytes from the received buffer (or gives it
    /// back), then does what `settle` would do for such a connection,
    /// without its general steps (io_uring; callgrind, 50 x 512 B echo:
    /// `settle` and `after_callback` were ~270 instructions per message,
    /// HTTP likewise). Of those steps: nothing closes it (open both ways,
    /// no close asked, not draining); the budget counts the queued bytes
    /// (`account`); the pressure stays clear (it was, and the queue is
    /// under the high-water mark); the write timeout is held for the turn
    /// (`schedule_timer`); the interest stays as it is (reading; a ring
    /// connection has no write side); the queue goes to the ring
    /// (`submit_sends`, as `rearm_interest` does; a claimed echo is in
    /// it already). If the budget paused its reading, the general path
    /// does the rest.
    #[inline(never)]
    fn replied(&mut self, key: SlotKey, got: Received, claim: Option<Claim>) {
        // The queue changed behind the marks' back (see the general path).
        self.conns.void_marks();
        self.send_claimed(key, got, claim);
        self.account(key);
        match self.conns.get(key) {
            None => return, // the send failed: closed
            Some(e) if e.budget_paused || e.close_reason.is_some() => {
                self.settle(key, Action::None);
                return;
            }
            Some(_) => {}
        }
        self.schedule_timer(key);
        if claim.is_some() {
            return;
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        match self
            .driver
            .submit_sends(entry.fd.as_fd(), &mut entry.outbound)
        {
            Ok(false) => {}
            // As a write straight to the socket would, it stamps the
            // connection: the write timeout counts from here.
            Ok(true) => entry.last_write_ms = super::entry::Stamp::at(self.now_ms),
            Err(e) => self.close_conn(key, CloseReason::from_io(e)),
        }
    }

    /// A completed ring send of `key` (its writable event, without an
    /// error; io_uring only): takes what the ring sent off the queue and,
    /// if that empties it and leaves the connection as quiet as the fast
    /// path wants it (see [`fast_path_fits`]), only counts the freed
    /// budget: settling would change nothing else (no close waits for the
    /// queue, no pressure to lift, no write deadline once nothing is
    /// queued, the interest of a ring connection has no write side). `false`:
    /// the general path (`flush`, which finds nothing more to take, then
    /// `settle`) does the rest, as for any other writable event.
    #[inline(always)]
    pub(super) fn sent_fast(&mut self, key: SlotKey, lp: &LoopRef<'_>) -> bool {
        debug_assert!(self.drain_deadline.is_none());
        let Some(entry) = self.conns.get_mut(key) else {
            return true; // an event for a connection closed earlier this turn
        };
        if !entry.ring_sends {
            return false;
        }
        let sent = self.driver.take_sent(entry.fd.as_fd());
        entry.outbound.consume(sent);
        entry.wrote(sent, lp);
        // What the budget counts is settled below (`account`): judge the
        // rest as it will be then.
        let held = std::mem::replace(&mut entry.budget_held, 0);
        let fits = fast_path_fits(
            entry,
            self.settings.edge_triggered,
            self.settings.quiet_timeouts,
        );
        entry.budget_held = held;
        if !fits {
            return false;
        }
        self.account(key);
        debug_assert!(self
            .conns
            .get(key)
            .is_some_and(|e| e.budget_held == 0 && quiet(e, self.settings.edge_triggered)));
        true
    }
}

/// Whether an input event of `entry` can take the fast path: it is
/// [`quiet`] (open both ways, no leftover (the input is what arrives now),
/// nothing queued, no pause, pressure, budget hold or per-connection
/// settings, so no relay link blocks the reading), a stream without TLS,
/// and no timeout applies to it, or its entry on the wheel is already
/// there. (A quiet connection's deadlines are the idle and read timeouts,
/// counted from stamps that reading and writing only move later: an entry
/// already on the wheel is never later than they are, and `schedule_timer`
/// would do nothing.)
#[inline(always)]
fn fast_path_fits<S>(entry: &ConnEntry<S>, edge: bool, quiet_timeouts: bool) -> bool {
    quiet(entry, edge)
        && !entry.is_datagram
        // `quiet` admits an open TLS session (nothing to settle after its
        // callback), but its input must go through the session.
        && entry.tls.is_none()
        && (quiet_timeouts || entry.timer_tick != 0)
}
