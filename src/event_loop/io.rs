//! Reading and writing connections: readiness events, the read path into the
//! loop's buffer and on to `on_traffic`/`on_read_closed`, flushing queues,
//! edge-triggered continuation, and what a callback asked of the loop.
//!
//! Owns the moment bytes move between a socket and a handler; it must never
//! decide a connection's state (that is `settle`'s job) beyond recording
//! what the socket said (end of stream, an error).

use std::io;
use std::os::fd::AsFd;

use super::driver::Received;
use super::entry::{ConnEntry, Flushed, LoopRef, Phase, Pressure, ReadSide, Stamp};
use super::forward::{Claim, Forward};
use super::{guarded, handler_panicked, loop_ref, EventLoop, Outcome};
use crate::actors::slab::SlotKey;
use crate::budget::LoopBudget;
use crate::conn::{Conn, SideEffects};
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};
use crate::stats::bump;
use crate::sys::poller::Event;
use crate::sys::socket;

/// A connection's outbound queue and user pause before its input callback.
#[derive(Clone, Copy, Debug)]
pub(super) struct Before {
    pub(super) queued: usize,
    pub(super) user_paused: bool,
}

/// Where a callback's fresh input is.
pub(super) enum Fresh {
    /// `n` bytes at the start of the loop's scratch buffer (TLS plaintext;
    /// 0 for a wake, or input already waiting in the connection).
    Scratch(usize),
    /// What the driver received (handed back once the callback ran).
    Received(Received),
}

impl<H: EventHandler> EventLoop<H> {
    /// A readiness event of connection `key`; `lp` is the turn's
    /// [`LoopRef`]; the fast path may apply (`FAST`: not draining), in the
    /// completion driver's copy or not (`COMPLETES`).
    #[inline(always)]
    pub(super) fn on_io<const FAST: bool, const COMPLETES: bool>(
        &mut self,
        key: SlotKey,
        event: &Event,
        lp: &LoopRef<'_>,
    ) {
        // (Masks of epoll's own flags word: no branch per flag.)
        if event.plain_input() {
            // The common event, input: the fast path if it applies (also
            // when writable: a quiet connection has nothing to flush).
            // (Not edge-triggered with the peer's end in the event: the
            // fast path stops at a short read, and no new edge would come
            // for the end of the stream.)
            let edge_end = event.read_closed() && self.settings.edge_triggered;
            if FAST && !edge_end && self.read_fast::<COMPLETES>(key, lp) {
                return;
            }
            if !event.writable() {
                // Input alone: `read_input` makes the checks below with its
                // own lookup of the entry (one, not two).
                self.read_input(key, true, event.read_closed());
                return;
            }
        } else if COMPLETES && FAST && event.plain_output() && self.sent_fast(key, lp) {
            // io_uring: a send completed (see `sent_fast`).
            return;
        }
        let Some(entry) = self.conns.get(key) else {
            return; // an event for a connection closed earlier this turn
        };
        match entry.phase {
            Phase::Connecting(_) => {
                if event.writable() || event.error() || event.hangup() {
                    self.finish_connect(key);
                }
                return;
            }
            Phase::AwaitingHeader => {
                self.read_proxy_header(key);
                return;
            }
            _ => {}
        }
        if event.error() {
            // io_uring: a failed send carries its error (it consumed the
            // socket's, so `SO_ERROR` would report none).
            let failed = self
                .driver
                .send_error(entry.fd.as_fd())
                .map(|e| Ok(Some(e)));
            let reason = match failed.unwrap_or_else(|| socket::take_error(entry.fd.as_fd())) {
                Ok(Some(e)) => CloseReason::from_io(e),
                Ok(None) => CloseReason::Error(io::Error::other("socket error")),
                Err(e) => CloseReason::from_io(e),
            };
            self.close_conn(key, reason);
            return;
        }
        let read_closed = entry.read_closed();
        if event.writable() && !self.flush(key) {
            return;
        }
        if (event.readable() || event.read_closed()) && !read_closed {
            self.read_input(key, false, event.read_closed());
            return;
        }
        if event.hangup() {
            // Both directions are gone: nothing queued can be delivered.
            let queued = self.conns.get(key).is_some_and(|e| !e.outbound.is_empty());
            let reason = if queued {
                CloseReason::Reset
            } else {
                CloseReason::Eof
            };
            self.close_conn(key, reason);
            return;
        }
        self.settle(key, Action::None);
    }

    /// Writes the queue (within the budget in edge-triggered mode). Returns
    /// `false` if the connection was closed.
    pub(super) fn flush(&mut self, key: SlotKey) -> bool {
        let budget = if self.settings.edge_triggered {
            self.settings.chunk
        } else {
            usize::MAX
        };
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return false;
        };
        if entry.ring_sends {
            // io_uring: a send completed; what it sent leaves the queue
            // (settling hands the rest to the driver).
            let sent = self.driver.take_sent(entry.fd.as_fd());
            entry.outbound.consume(sent);
            entry.wrote(sent, &lp);
        }
        if entry.outbound.is_empty() {
            return true;
        }
        match entry.flush_limited(budget, &lp) {
            Ok(Flushed::BudgetSpent) => self.continue_io.push_back(key),
            Ok(_) => {}
            Err(e) => {
                self.close_conn(key, CloseReason::from_io(e));
                return false;
            }
        }
        if entry.under_pressure() {
            // Back under the low-water mark: resume before the caller reads
            // (an edge-triggered connection gets no new event for it).
            self.settle(key, Action::None);
            return self.conns.get(key).is_some();
        }
        true
    }

    /// Reads into the loop buffer and hands the bytes to the handler: once
    /// (level-triggered), or until the socket is drained or the per-turn
    /// budget is spent (edge-triggered).
    ///
    /// `from_event`: called by `on_io` for an event that reports input
    /// alone, so first do what `on_io` does for one (a dial waits, a PROXY
    /// header is read first, a connection whose read side is closed is
    /// settled). `peer_done`: the event also said the peer will send
    /// nothing more (`EPOLLRDHUP`); edge-triggered, a short read then does
    /// not mean drained: the end of the stream is still to be read, and no
    /// new edge will say so.
    #[inline]
    fn read_input(&mut self, key: SlotKey, mut from_event: bool, peer_done: bool) {
        let mut moved = 0;
        loop {
            let Some(entry) = self.conns.get(key) else {
                return; // (for an event: a connection closed earlier this turn)
            };
            if std::mem::take(&mut from_event) {
                match entry.phase {
                    Phase::Connecting(_) => return,
                    Phase::AwaitingHeader => {
                        self.read_proxy_header(key);
                        return;
                    }
                    _ if entry.read_closed() => {
                        self.settle(key, Action::None);
                        return;
                    }
                    _ => {}
                }
            }
            match entry.phase {
                Phase::Lingering(_) => {
                    self.drain_lingering(key);
                    return;
                }
                Phase::Closing(_) => return,
                _ => {}
            }
            if entry.read_closed() || self.drain_deadline.is_some() || self.read_blocked(entry) {
                return;
            }
            if LoopBudget::should_pause(self.engine.budget(), entry.budget_held) {
                // Near the budget: no more reads into a connection holding
                // this much (checked before the read, not after).
                if self.pause_for_budget(key) {
                    self.settle(key, Action::None);
                }
                return;
            }
            if entry.tls.is_some() {
                // As below, with the session between the socket and on_traffic
                // (on io_uring, between the ring's completion and on_traffic).
                let read = if entry.ring_sends {
                    self.read_tls_completed(key)
                } else {
                    self.read_tls(key)
                };
                let Some(n) = read else {
                    return;
                };
                moved += n;
                if !self.settings.edge_triggered || (n < self.tls_in.len() && !peer_done) {
                    return;
                }
                if moved >= self.settings.chunk {
                    self.continue_io.push_back(key);
                    return;
                }
                continue;
            }
            match self.driver.recv(entry.fd.as_fd()) {
                Ok(got) if got.is_empty() && entry.is_datagram => {
                    // An empty datagram on a connected UDP socket.
                    self.deliver(key, Fresh::Received(got));
                    return;
                }
                Ok(got) if got.is_empty() => {
                    self.end_of_stream(key, got);
                    return;
                }
                Ok(got) => {
                    // (The connection is stamped as read by `run_on_input`.)
                    let (n, filled) = (got.len(), got.filled(&self.driver));
                    bump(&self.engine.slot(self.index).counters().bytes_in, n as u64);
                    self.deliver(key, Fresh::Received(got));
                    moved += n;
                    // A short read drained the socket; new bytes make a new
                    // edge (but the peer's end, reported already, makes none).
                    if !self.settings.edge_triggered || (!filled && !peer_done) {
                        return;
                    }
                    if moved >= self.settings.chunk {
                        self.continue_io.push_back(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close_conn(key, CloseReason::from_io(e));
                    return;
                }
            }
        }
    }

    /// Edge-triggered connections that spent their budget last turn carry on.
    pub(super) fn continue_edge_triggered(&mut self) {
        for _ in 0..self.continue_io.len() {
            let Some(key) = self.continue_io.pop_front() else {
                break;
            };
            if !self.flush(key) {
                continue;
            }
            // Until the socket says it is drained: whether the event that
            // started this had the peer's end in it is not kept, and a
            // connection that spent a whole budget has more to read anyway.
            self.read_input(key, false, true);
            if let Some(entry) = self.conns.get(key) {
                if entry.read_closed() && entry.outbound.is_empty() {
                    self.settle(key, Action::None);
                }
            }
        }
    }

    /// Runs `on_traffic` over leftover + `fresh` bytes of the loop's scratch
    /// buffer (TLS plaintext; 0 for a wake or input already waiting).
    pub(super) fn traffic(&mut self, key: SlotKey, fresh: usize) {
        self.deliver(key, Fresh::Scratch(fresh));
    }

    /// Runs `on_traffic` over leftover + `fresh` bytes.
    pub(super) fn deliver(&mut self, key: SlotKey, fresh: Fresh) {
        let Some((action, side, before)) =
            self.run_on_input(key, fresh, "on_traffic", |h, conn| h.on_traffic(conn))
        else {
            return;
        };
        self.after_traffic(key, action, side, before);
    }

    /// The peer ended its side (a receive of 0 bytes, handed back here):
    /// ask the handler whether to close (once flushed) or to keep writing.
    /// The end of stream counts as input (the half-closed clock starts).
    pub(super) fn end_of_stream(&mut self, key: SlotKey, got: Received) {
        self.driver.release(got);
        self.stream_ended(key);
    }

    /// [`end_of_stream`](Self::end_of_stream) once its receive is given
    /// back.
    pub(super) fn stream_ended(&mut self, key: SlotKey) {
        if let Some(entry) = self.conns.get_mut(key) {
            entry.peer_closed();
            entry.last_read_ms = Stamp::at(self.now_ms);
        }
        self.read_closed(key);
    }

    /// After `on_traffic` (`before`: how the connection stood before it):
    /// settles the connection unless nothing about it changed. (Inlined:
    /// its early return is the general path's common case.)
    #[inline(always)]
    pub(super) fn after_traffic(
        &mut self,
        key: SlotKey,
        action: Option<Action>,
        side: Option<Box<SideEffects<H::State>>>,
        before: Before,
    ) {
        if let Some(entry) = self.conns.get(key) {
            if before.user_paused && !entry.user_paused && self.settings.edge_triggered {
                // Resumed: no new edge will come for bytes already waiting.
                self.continue_io.push_back(key);
            }
            if entry.outbound.len() > before.queued {
                // Output the callback queued answers this input: past the
                // high-water mark it stops the reading (see `settle`).
                self.input_key = Some(key);
            } else if matches!(action, Some(Action::None))
                && side.is_none()
                && self.is_settled(entry)
            {
                // The common case: it read and wrote through, and settling
                // would change nothing. (`side` is `None`: nothing to drop,
                // and forgetting it saves an out-of-line drop call.)
                std::mem::forget(side);
                return;
            }
        }
        self.after_callback(key, action, side);
        self.input_key = None;
    }

    /// Runs `on_read_closed` (over what `on_traffic` left unread): `Close`
    /// (the default) closes once flushed, `None` keeps the connection
    /// half-open.
    pub(super) fn read_closed(&mut self, key: SlotKey) {
        let Some((action, side, _)) =
            self.run_on_input(key, Fresh::Scratch(0), "on_read_closed", |h, conn| {
                h.on_read_closed(conn)
            })
        else {
            return;
        };
        let action = match action {
            Some(Action::None) => {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.read_side = ReadSide::HalfOpen;
                }
                Some(Action::None)
            }
            // Close once flushed: settle does that for a read-closed peer.
            Some(Action::Close) => Some(Action::None),
            other => other,
        };
        self.after_callback(key, action, side);
    }

    /// Runs a callback whose input is the connection's leftover plus `fresh`
    /// bytes (zero-copy when there is no leftover), and keeps what it leaves
    /// unread (never for a datagram: its unread bytes go with it); hands
    /// received memory back to the driver. Returns `None` if the connection
    /// is gone.
    pub(super) fn run_on_input(
        &mut self,
        key: SlotKey,
        fresh: Fresh,
        what: &str,
        call: impl FnOnce(&mut H, &mut Conn<'_, H::State>) -> Action,
    ) -> Option<Outcome<H::State>> {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            if let Fresh::Received(got) = fresh {
                self.driver.release(got);
            }
            return None;
        };
        let before = Before {
            queued: entry.outbound.len(),
            user_paused: entry.user_paused,
        };
        if matches!(&fresh, Fresh::Received(got) if !got.is_empty()) {
            entry.last_read_ms = Stamp::at(self.now_ms);
        }
        let keeps_unread = !entry.is_datagram;
        let leftover = std::mem::take(&mut entry.inbound);
        let had_leftover = !leftover.is_empty();
        let handler = &mut self.handler;
        let input = match &fresh {
            Fresh::Scratch(n) => &self.read_buf[..*n],
            Fresh::Received(got) => self.driver.bytes(got),
        };
        let (action, side, rest, consumed) = if leftover.is_empty() {
            if matches!(&fresh, Fresh::Received(got) if self.driver.offers(got)) {
                Forward::offer(&lp.forward, input);
            }
            let mut conn = Conn::new(input, &mut self.conns, key, &lp);
            let action = guarded(what, || call(handler, &mut conn));
            let (unread, side) = conn.finish();
            let consumed = input.len() - unread;
            let rest = (keeps_unread && consumed < input.len()).then(|| input[consumed..].to_vec());
            (action, side, rest, consumed)
        } else {
            let mut buf = leftover;
            if buf.capacity() - buf.len() < input.len()
                && !LoopBudget::may_double(self.engine.budget(), buf.capacity())
            {
                // Near the budget, doubling a large leftover could jump
                // past it in one read (its capacity is what it counts).
                buf.reserve_exact(input.len());
            }
            buf.extend_from_slice(input);
            let mut conn = Conn::new(&buf, &mut self.conns, key, &lp);
            let action = guarded(what, || call(handler, &mut conn));
            let (unread, side) = conn.finish();
            let consumed = buf.len() - unread;
            let rest = (keeps_unread && consumed < buf.len()).then(|| {
                buf.drain(..consumed);
                buf
            });
            (action, side, rest, consumed)
        };
        if let Fresh::Received(got) = fresh {
            // What the handler left unread was copied above; what it
            // echoed is sent from the buffer (`forward.rs`).
            let claim = Forward::take(&lp.forward);
            self.send_claimed(key, got, claim);
        }
        if let Some(rest) = rest {
            self.keep_unread(key, rest, consumed, had_leftover);
        }
        Some((action, side, before))
    }

    /// Keeps what an input callback left unread (`rest`) as the
    /// connection's leftover, after it consumed `consumed` bytes of its
    /// input (`had_leftover`: which began with an earlier leftover).
    pub(super) fn keep_unread(
        &mut self,
        key: SlotKey,
        rest: Vec<u8>,
        consumed: usize,
        had_leftover: bool,
    ) {
        if let Some(entry) = self.conns.get_mut(key) {
            // Unfinished input starts (or restarts, after progress) the
            // incomplete-input clock; a callback that consumes nothing
            // of what was already waiting leaves it running.
            if consumed > 0 || !had_leftover {
                entry.input_since_ms = Stamp::at(self.now_ms);
            }
            if rest.len() > self.settings.max_inbound {
                entry.close_with(CloseReason::InboundLimit);
            }
            entry.inbound = rest;
        }
    }

    /// After a connection's callback: its action (a panic closes it), then
    /// what it did to the loop's other connections and the dials it asked for.
    pub(super) fn after_callback(
        &mut self,
        key: SlotKey,
        action: Option<Action>,
        side: Option<Box<SideEffects<H::State>>>,
    ) {
        match action {
            Some(action) => self.settle(key, action),
            None => self.close_conn(key, handler_panicked()),
        }
        self.apply_side_effects(key, side);
    }

    /// Syncs the other connections a callback of `key` wrote to or closed,
    /// and starts the dials it asked for.
    pub(super) fn apply_side_effects(
        &mut self,
        key: SlotKey,
        side: Option<Box<SideEffects<H::State>>>,
    ) {
        let Some(side) = side else {
            return;
        };
        let SideEffects { touched, dials } = *side;
        for other in touched {
            if other != key {
                self.settle(other, Action::None);
            }
        }
        for (addr, state, tls) in dials {
            self.start_dial(addr, Some(state), None, tls);
        }
    }

    /// `true` while reading `entry` must wait: its own queue, or the queue of
    /// the connection it feeds, is over the high-water mark, or the budget
    /// or its handler paused it.
    pub(super) fn read_blocked(&self, entry: &ConnEntry<H::State>) -> bool {
        let links = entry.overrides.as_ref();
        // A connection fed by another (a relay's side) fills up with the
        // *other* side's bytes: not reading it would not drain it, and would
        // stall a relay whose peer is blocked writing to it. Its fullness
        // stops the feeder instead (the `target` check below).
        let own = (entry.pressure == Pressure::HighFromReplies
            && links.and_then(|o| o.fed_by).is_none())
            || entry.budget_paused
            || entry.user_paused;
        own || links
            .and_then(|o| o.feeds)
            .and_then(|target| self.conns.get(target))
            .is_some_and(|target| target.under_pressure())
    }
}

impl<H: EventHandler> EventLoop<H> {
    /// After an input callback of `key` whose write claimed part of its
    /// input (`claim`; `None`: gives `got` back): sends that part from the
    /// received buffer itself. A failure closes the connection as a failed
    /// send would (the lent bytes will never be consumed).
    #[inline(always)]
    pub(super) fn send_claimed(&mut self, key: SlotKey, got: Received, claim: Option<Claim>) {
        match claim {
            None => self.driver.release(got),
            Some(claim) => self.send_claimed_slow(key, got, claim),
        }
    }

    #[cold]
    #[inline(never)]
    fn send_claimed_slow(&mut self, key: SlotKey, got: Received, claim: Claim) {
        let Some(entry) = self.conns.get_mut(key) else {
            self.driver.release(got);
            return;
        };
        let sent = self.driver.send_received(entry.fd.as_fd(), got, claim);
        if let Err(e) = sent {
            entry.outbound.abandon_lent();
            self.close_conn(key, CloseReason::from_io(e));
        }
    }
}
