//! [`ConnEntry`]: the loop's record of one connection, and its write path
//! (straight to the socket while nothing is queued, otherwise into the
//! outbound queue, flushed with `writev` when the socket is writable).
//!
//! Owns the per-connection fields the loop reconciles in `settle` and the
//! bytes on their way out; byte order is always preserved. It must never run
//! a handler callback nor touch the poller; the user's view of an entry is
//! `Conn` (conn.rs).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::actors::slab::SlotKey;
use crate::addr::SockAddr;
use crate::buffer::{OutboundQueue, MAX_IOV};
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::options::{Timeouts, WaterMarks};
use crate::reason::CloseReason;
use crate::runtime::message::Completion;
use crate::runtime::EngineShared;
use crate::stats::LoopCounters;
use crate::sys;
use crate::sys::poller::Interest;
use crate::tls::TlsSession;

/// How far a flush got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// The queue is empty.
    Drained,
    /// The socket took no more.
    WouldBlock,
    /// The byte budget ran out with the socket still writable.
    BudgetSpent,
}

/// The loop's record of one connection.
pub(crate) struct ConnEntry<S> {
    pub(crate) fd: OwnedFd,
    pub(crate) inbound: Vec<u8>,
    pub(crate) outbound: OutboundQueue,
    pub(crate) state: Option<S>,
    pub(crate) peer: SockAddr,
    /// Where it is in its life (see [`Phase`]).
    pub(crate) phase: Phase,
    /// The peer's direction: open, ended, or ended and kept half-open.
    pub(crate) read_side: ReadSide,
    /// Our direction: open, to be shut once the queue is written, or shut.
    pub(crate) write_side: WriteSide,
    /// Set when the connection must close after the current callback
    /// (boxed: a `CloseReason` is 64 bytes, and only a closing connection
    /// has one).
    pub(crate) close_reason: Option<Box<CloseReason>>,
    /// What is registered in the poller now (`settle` keeps it matching
    /// what the connection needs).
    pub(crate) armed: Interest,
    /// Which listener accepted it.
    pub(crate) listener: u16,
    pub(crate) is_tcp: bool,
    /// Back-pressure: the outbound queue against its high-water mark.
    pub(crate) pressure: Pressure,
    /// Loop time of the last byte read.
    pub(crate) last_read_ms: Stamp,
    /// Loop time of the last byte written, or of a later moment at which
    /// nothing was queued (the fast path's input events stamp it): a write
    /// timeout counts a stall of queued bytes, which cannot have begun
    /// before either, and the idle and half-closed timeouts count from the
    /// later of this and `last_read_ms`.
    pub(crate) last_write_ms: Stamp,
    /// When the input the handler leaves unconsumed began (or it last
    /// consumed some); meaningful while `inbound` is not empty.
    pub(crate) input_since_ms: Stamp,
    /// Bytes last counted against the engine's buffer budget.
    pub(crate) budget_held: usize,
    /// Not read while the engine is near its buffer budget (independent
    /// of everything else: the loop resumes it when the total falls).
    pub(crate) budget_paused: bool,
    /// Not read because the handler paused it (`Conn::pause_reading`).
    pub(crate) user_paused: bool,
    /// Tick of this connection's latest timer-wheel entry (0: none).
    pub(crate) timer_tick: u64,
    /// Per-connection settings that differ from the engine's.
    pub(crate) overrides: Option<Box<ConnOverrides>>,
    /// A connected UDP socket: a zero-length read is a datagram, not EOF.
    pub(crate) is_datagram: bool,
    /// Its sends go through the io_uring driver: every write is queued and
    /// the loop hands the queue to the driver when it settles.
    pub(crate) ring_sends: bool,
    /// Its place under the engine's limits and its PROXY header, if it has
    /// either (one box for both: most connections have neither).
    pub(crate) admitted: Option<Box<Admitted>>,
    /// A `tls://` connection's session: reads are decrypted and writes
    /// encrypted through it (see [`crate::tls`]).
    pub(crate) tls: Option<Box<TlsSession>>,
}

/// A moment of loop time (ms since the loop started) in 32 bits: every
/// connection keeps three, for its timeouts, and 4 bytes instead of 8 each
/// is part of keeping an idle connection small. [`Stamp::ms`] gives the full
/// time back, exactly while the stamp is less than 2^32 ms (49.7 days)
/// old; timeouts are capped below that, so a stamp whose deadline matters
/// is always read in time (one older than that only ever belongs to a
/// connection without a timeout of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp(u32);

impl Stamp {
    /// The stamp of loop time `now_ms`.
    #[inline(always)]
    pub(crate) fn at(now_ms: u64) -> Stamp {
        Stamp(now_ms as u32) // the low 32 bits (see `ms`)
    }

    /// The loop time it stamped, given the loop time now.
    #[inline]
    pub(crate) fn ms(self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(u64::from((now_ms as u32).wrapping_sub(self.0)))
    }
}

/// Where a connection is in its life.
///
/// ```text
///   Connecting ──▶ (adopted) ─┬─▶ AwaitingHeader ─┬─▶ Handshaking ─┬─▶ Open
///   (accepted, enrolled) ─────┘                   └────────────────┴─▶ Open
///   Open ──(graceful close, bytes queued)──▶ Closing ──(written)──┐
///   Open ──(graceful close, nothing queued)───────────────────────┴─▶ Lingering
///   Handshaking ──(TLS error, bytes queued)──▶ Closing ──(written)──▶ Handshaking ──▶ (failed)
///   (or closed at once, without lingering; any phase may close on an error)
/// ```
///
/// Only an `Open`, `Closing` or `Lingering` connection has had `on_open`
/// (but for a failed handshake's `Closing`), so only those get `on_close`;
/// the others fail their dial, are refused, or fail their handshake
/// instead. The two directions of an open
/// connection are [`ReadSide`] and [`WriteSide`].
pub(crate) enum Phase {
    /// A dial in progress: the connect has not completed.
    Connecting(Box<Connecting>),
    /// Accepted on a PROXY-protocol listener; its header is not whole yet.
    AwaitingHeader,
    /// A `tls://` connection whose handshake is under way.
    Handshaking,
    /// Opened: its handler sees it.
    Open,
    /// A graceful close writing its queue first (reading stopped); closes
    /// once the queue is written, or at the deadline.
    Closing(Box<Lingering>),
    /// Written and write side shut: reading and discarding the peer's input
    /// until its end of stream (a lingering close, so the peer gets what
    /// was written instead of a reset), or the deadline.
    Lingering(Box<Lingering>),
}

impl Phase {
    /// `on_open` ran: the handler knows this connection (and hears of its
    /// end through `on_close`).
    pub(crate) fn has_opened(&self) -> bool {
        match self {
            Phase::Open | Phase::Lingering(_) => true,
            Phase::Closing(l) => !l.handshake,
            _ => false,
        }
    }

    /// A TLS handshake under way, or one that failed and whose alert is
    /// going out behind the rest of its flight (a `Closing` from
    /// `Handshaking`): never opened, it ends through a failed handshake.
    pub(crate) fn handshaking(&self) -> bool {
        match self {
            Phase::Handshaking => true,
            Phase::Closing(l) => l.handshake,
            _ => false,
        }
    }

    /// The close under way, if any: its reason and deadline.
    pub(crate) fn closing(&self) -> Option<&Lingering> {
        match self {
            Phase::Closing(l) | Phase::Lingering(l) => Some(l),
            _ => None,
        }
    }
}

/// The peer's direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadSide {
    Open,
    /// The peer ended its side: nothing more to read; the connection
    /// closes once its queue is written.
    PeerClosed,
    /// The peer ended its side and the handler keeps writing (its
    /// `on_read_closed` said so) until it closes or shuts its own side.
    HalfOpen,
}

/// Our direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteSide {
    Open,
    /// `shutdown(SHUT_WR)` once the queue is written (`Conn::shutdown_write`).
    ShutdownWanted,
    /// Shut: the peer got our end of stream.
    Shut,
}

/// Back-pressure on a connection: its outbound queue against its water
/// marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pressure {
    /// At or below the low-water mark, or not yet above the high one.
    Clear,
    /// Above the high-water mark because of async writes: their completions
    /// are held, but reading goes on (a peer that echoes them must be able
    /// to make progress).
    High,
    /// Above the high-water mark with its own callbacks' replies: reading
    /// stops too, until the queue is back at the low-water mark.
    HighFromReplies,
}

/// A close that waits: for the outbound queue to be written (`Closing`), or
/// for the peer's end of stream (`Lingering`).
pub(crate) struct Lingering {
    pub(crate) reason: CloseReason,
    /// Loop time (ms) at which it closes anyway.
    pub(crate) deadline_ms: u64,
    /// A failed handshake writing its flight's rest and its alert: back to
    /// `Handshaking` when the close ends (never opened: no `on_close`).
    pub(crate) handshake: bool,
}

/// A dial in progress.
pub(crate) struct Connecting {
    /// Loop time (ms) at which it fails with a timeout.
    pub(crate) deadline_ms: u64,
    /// Told the outcome, for dials made through the engine.
    pub(crate) done: Option<Completion<ConnId>>,
}

/// How a connection was admitted, when there is something to keep.
#[derive(Default)]
pub(crate) struct Admitted {
    /// Its place under the engine's connection limits (given back when it
    /// drops).
    pub(crate) ticket: Option<crate::admission::Ticket>,
    /// PROXY protocol: the header awaited, or what it said.
    pub(crate) proxy: Option<Box<crate::proxy_protocol::ProxyState>>,
}

/// Per-connection overrides of engine settings (boxed: most connections have
/// none, and an idle connection should stay small).
#[derive(Debug, Default)]
pub(crate) struct ConnOverrides {
    pub(crate) timeouts: Option<Timeouts>,
    pub(crate) marks: Option<WaterMarks>,
    /// This connection's bytes are relayed to `feeds`: do not read it while
    /// `feeds` is over its high-water mark.
    pub(crate) feeds: Option<SlotKey>,
    /// The connection that feeds this one (to resume it when this drains).
    pub(crate) fed_by: Option<SlotKey>,
}

impl<S> ConnEntry<S> {
    pub(crate) fn new(fd: OwnedFd, peer: SockAddr, listener: u16, is_tcp: bool) -> Self {
        Self {
            fd,
            inbound: Vec::new(),
            outbound: OutboundQueue::default(),
            state: None,
            peer,
            phase: Phase::Open,
            read_side: ReadSide::Open,
            write_side: WriteSide::Open,
            close_reason: None,
            armed: Interest::NONE,
            listener,
            is_tcp,
            pressure: Pressure::Clear,
            last_read_ms: Stamp::default(),
            last_write_ms: Stamp::default(),
            input_since_ms: Stamp::default(),
            budget_held: 0,
            budget_paused: false,
            user_paused: false,
            timer_tick: 0,
            overrides: None,
            is_datagram: false,
            ring_sends: false,
            admitted: None,
            tls: None,
        }
    }

    /// PROXY protocol: the header awaited, or what it said.
    pub(crate) fn proxy(&self) -> Option<&crate::proxy_protocol::ProxyState> {
        self.admitted.as_ref()?.proxy.as_deref()
    }

    pub(crate) fn set_proxy(&mut self, state: crate::proxy_protocol::ProxyState) {
        self.admitted.get_or_insert_with(Box::default).proxy = Some(Box::new(state));
    }

    pub(crate) fn overrides_mut(&mut self) -> &mut ConnOverrides {
        self.overrides.get_or_insert_with(Box::default)
    }

    /// Records `n` bytes written now.
    pub(crate) fn wrote(&mut self, n: usize, lp: &LoopRef<'_>) {
        if n > 0 {
            self.last_write_ms = Stamp::at(lp.now_ms);
            crate::stats::bump(&lp.counters.bytes_out, n as u64);
        }
    }

    /// A close for a TLS error must wait for what is queued before it
    /// ends: the alert it owes the peer is behind those bytes, and the
    /// connection is open or in its handshake (whose flight they may be).
    pub(crate) fn tls_alert_waits(&self) -> bool {
        !self.outbound.is_empty() && (self.phase.has_opened() || self.phase.handshaking())
    }

    /// Ends a graceful or lingering close; returns the reason it was
    /// closing for. A failed handshake's close is `Handshaking` again.
    pub(crate) fn take_lingering_reason(&mut self) -> CloseReason {
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Closing(l) | Phase::Lingering(l) => {
                if l.handshake {
                    self.phase = Phase::Handshaking;
                }
                l.reason
            }
            other => {
                self.phase = other;
                CloseReason::Local
            }
        }
    }

    /// The peer ended its side (end of stream, `close_notify`).
    pub(crate) fn peer_closed(&mut self) {
        if self.read_side == ReadSide::Open {
            self.read_side = ReadSide::PeerClosed;
        }
    }

    /// The peer's side is over: nothing more will be read.
    pub(crate) fn read_closed(&self) -> bool {
        self.read_side != ReadSide::Open
    }

    /// Our write side is shut.
    pub(crate) fn write_shut(&self) -> bool {
        self.write_side == WriteSide::Shut
    }

    /// Above the high-water mark (async-write completions are held).
    pub(crate) fn under_pressure(&self) -> bool {
        self.pressure != Pressure::Clear
    }

    /// A dial in progress.
    pub(crate) fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting(_))
    }

    /// Ends a dial in progress (the connect completed or failed): returns
    /// whom to tell, for a dial made through the engine.
    pub(crate) fn take_connecting(&mut self) -> Option<Completion<ConnId>> {
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Connecting(c) => c.done,
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// `Conn::shutdown_write`: shut our side once the queue is written.
    pub(crate) fn want_shutdown(&mut self) {
        if self.write_side == WriteSide::Open {
            self.write_side = WriteSide::ShutdownWanted;
        }
    }

    /// Waiting for its PROXY header (registered, not open).
    pub(crate) fn awaiting_header(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHeader)
    }

    /// Records why the connection must close; the first reason wins.
    pub(crate) fn close_with(&mut self, reason: CloseReason) {
        if self.close_reason.is_none() {
            self.close_reason = Some(Box::new(reason));
        }
    }

    /// Writes as much of the queue as the socket takes now. Returns `Ok(true)`
    /// when the queue is empty afterwards.
    pub(crate) fn flush_queue(&mut self, lp: &LoopRef<'_>) -> io::Result<bool> {
        self.flush_limited(usize::MAX, lp)
            .map(|f| f == Flushed::Drained)
    }

    /// Writes at most about `budget` bytes of the queue (whole `writev`s:
    /// stops once the budget is spent).
    pub(crate) fn flush_limited(&mut self, budget: usize, lp: &LoopRef<'_>) -> io::Result<Flushed> {
        if self.ring_sends {
            // The driver sends the queue (see `ring_sends`); writing it here
            // could overtake a send in flight.
            return Ok(Flushed::WouldBlock);
        }
        let mut written_total = 0;
        while !self.outbound.is_empty() {
            if written_total >= budget {
                return Ok(Flushed::BudgetSpent);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self.outbound.slices(&mut slices);
            match sys::io::writev(self.fd.as_fd(), &slices[..n]) {
                Ok(0) => return Ok(Flushed::WouldBlock),
                Ok(written) => {
                    self.outbound.consume(written);
                    self.wrote(written, lp);
                    written_total += written;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::WouldBlock),
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::Drained)
    }

    /// The write path: straight to the socket while nothing is queued,
    /// otherwise (or for what the socket did not take) into the queue.
    /// Inlined into `Conn::write`: the common case (nothing queued, the
    /// socket takes it all) is one system call and a counter.
    #[inline]
    pub(crate) fn write_bytes(&mut self, data: &[u8], lp: &LoopRef<'_>) -> Result<usize> {
        if self.outbound.is_empty() && self.tls.is_none() && !self.ring_sends && !self.fd_gone() {
            match self.send_straight(data) {
                Ok(n) if n == data.len() => {
                    self.wrote(n, lp);
                    return Ok(n);
                }
                sent => return self.write_rest(data, sent, lp),
            }
        }
        self.write_bytes_slow(data, lp)
    }

    /// The send of a write straight to the socket, for a caller that
    /// knows [`write_bytes`](Self::write_bytes)' checks hold (nothing
    /// queued, no TLS, no sends through the ring, no write error yet);
    /// then [`wrote`](Self::wrote) if it took everything, else
    /// [`write_rest`](Self::write_rest).
    #[inline(always)]
    pub(crate) fn send_straight(&self, data: &[u8]) -> io::Result<usize> {
        sys::io::write(self.fd.as_fd(), data)
    }

    /// After a send straight to the socket that did not take all of
    /// `data`: what it did not take goes into the queue (a failure other
    /// than `WouldBlock` fails the write).
    #[cold]
    #[inline(never)]
    pub(crate) fn write_rest(
        &mut self,
        data: &[u8],
        sent: io::Result<usize>,
        lp: &LoopRef<'_>,
    ) -> Result<usize> {
        let written = match sent {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(self.fail_write(e)),
        };
        self.wrote(written, lp);
        if written < data.len() {
            self.outbound.push(&data[written..], lp.write_cap);
        }
        Ok(data.len())
    }

    /// [`write_bytes`](Self::write_bytes) when it cannot go straight
    /// through: a closed descriptor, TLS, or bytes already queued.
    #[cold]
    #[inline(never)]
    fn write_bytes_slow(&mut self, data: &[u8], lp: &LoopRef<'_>) -> Result<usize> {
        if self.fd_gone() {
            return Err(Error::ConnectionClosed);
        }
        if self.tls.is_some() {
            return self.tls_write(&[data], lp);
        }
        if self.outbound.is_empty() && !self.ring_sends {
            let sent = sys::io::write(self.fd.as_fd(), data);
            return self.write_rest(data, sent, lp);
        }
        if self.outbound.is_empty() && super::forward::Forward::claim(&lp.forward, data) {
            // io_uring, nothing queued or in flight, and `data` is in the
            // callback's received buffer: sent from there after the
            // callback (`event_loop/forward.rs`), no copy. Stamped as a
            // send handed to the ring is.
            let counted = self.outbound.push_lent(data.len());
            debug_assert!(counted, "an empty queue counts a received buffer's bytes");
            self.last_write_ms = Stamp::at(lp.now_ms);
            return Ok(data.len());
        }
        // Behind what is queued: all of it waits its turn.
        self.write_rest(data, Ok(0), lp)
    }

    /// Vectored form of [`write_bytes`](Self::write_bytes).
    pub(crate) fn writev_bytes(&mut self, bufs: &[&[u8]], lp: &LoopRef<'_>) -> Result<usize> {
        let cap = lp.write_cap;
        if self.fd_gone() {
            return Err(Error::ConnectionClosed);
        }
        if self.tls.is_some() {
            return self.tls_write(bufs, lp);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut skip = 0;
        if self.outbound.is_empty() && !self.ring_sends {
            // One writev per IOV_MAX (1,024) buffers while the socket takes
            // each whole: what is queued waits for the socket to be
            // writable again, and an edge-triggered socket that stayed
            // writable reports no new edge for it.
            const IOV_MAX: usize = 1024; // Linux's UIO_MAXIOV
            for batch in bufs.chunks(IOV_MAX) {
                let slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
                let whole: usize = batch.iter().map(|b| b.len()).sum();
                match sys::io::writev(self.fd.as_fd(), &slices) {
                    Ok(n) => {
                        skip += n;
                        if n < whole {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(self.fail_write(e)),
                }
            }
        }
        self.wrote(skip, lp);
        for buf in bufs {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            self.outbound.push(&buf[skip..], cap);
            skip = 0;
        }
        Ok(total)
    }

    /// Queues an owned buffer (no copy when nothing could be written now).
    pub(crate) fn write_owned(&mut self, data: Vec<u8>, lp: &LoopRef<'_>) -> Result<usize> {
        if self.fd_gone() {
            return Err(Error::ConnectionClosed);
        }
        if self.tls.is_some() {
            return self.tls_write(&[&data], lp);
        }
        let cap = lp.write_cap;
        let len = data.len();
        if !self.outbound.is_empty() || self.ring_sends {
            self.outbound.push_owned(data);
            return Ok(len);
        }
        let written = sys::io::write(self.fd.as_fd(), &data);
        if let Ok(n) = written {
            self.wrote(n, lp);
        }
        match written {
            Ok(n) if n == len => {}
            Ok(n) if len - n <= cap => self.outbound.push(&data[n..], cap),
            Ok(n) => {
                let mut rest = data;
                rest.drain(..n);
                self.outbound.push_owned(rest);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.outbound.push_owned(data),
            Err(e) => return Err(self.fail_write(e)),
        }
        Ok(len)
    }

    fn fail_write(&mut self, e: io::Error) -> Error {
        let err = Error::io("write", io::Error::new(e.kind(), e.to_string()));
        self.close_with(CloseReason::from_io(e));
        err
    }

    /// A write error already doomed this connection.
    pub(crate) fn fd_gone(&self) -> bool {
        matches!(
            self.close_reason.as_deref(),
            Some(CloseReason::Reset) | Some(CloseReason::Error(_))
        )
    }
}

/// What a `Conn` (the user's view) needs from its loop.
pub(crate) struct LoopRef<'a> {
    pub(crate) loop_index: u32,
    pub(crate) write_cap: usize,
    pub(crate) engine: &'a Arc<EngineShared>,
    pub(crate) counters: &'a LoopCounters,
    /// The loop's clock (ms since it started), read once per turn.
    pub(crate) now_ms: u64,
    /// io_uring: the input callback's received buffer, offered to its
    /// writes (see `event_loop/forward.rs`).
    pub(crate) forward: std::cell::Cell<super::forward::Forward>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: at most 256 bytes of memory per idle connection on io_uring
    /// (and less on epoll), everything included (benches/uring.sh measures
    /// it). Every connection pays for its `ConnEntry` (plus the slab's 4-byte
    /// generation), and an idle one uses none of what is boxed: its close
    /// reason, queue bookkeeping, overrides, TLS, PROXY and admission state.
    /// Growing it needs a reason and a new measurement.
    #[test]
    fn an_idle_connection_record_stays_small() {
        let size = std::mem::size_of::<ConnEntry<()>>();
        assert!(size <= 160, "ConnEntry<()> grew to {size} bytes");
    }

    #[test]
    fn a_stamp_gives_the_time_back_across_the_32_bit_wrap() {
        for &then in &[0u64, 1_000, u64::from(u32::MAX) - 5, 5 << 32, (7 << 32) + 9] {
            let stamp = Stamp::at(then);
            for &later in &[0u64, 1, 60_000, u64::from(u32::MAX)] {
                assert_eq!(stamp.ms(then + later), then, "{then} read {later} ms later");
            }
        }
    }
}
