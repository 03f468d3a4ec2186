//! [`Conn`]: a connection as a handler sees it inside a callback, and
//! [`ConnEntry`], the record the event loop keeps for it.
//!
//! Owns the per-connection read view, the write path into the socket and the
//! outbound queue, per-connection state and socket options. A `Conn` exists
//! only for the duration of one callback on the owning loop; it must never be
//! stored or sent elsewhere (use [`Conn::handle`] for that).
//!
//! # Read view
//!
//! ```text
//!   loop read buffer (shared, one per loop)      entry.inbound (only if leftover)
//!   [ fresh bytes of this read ]  --or-->  [ leftover | fresh bytes ]
//!            ^ Conn::peek / next / read_all borrow these without copying
//! ```
//! When a connection has no leftover (the common case) the callback reads the
//! loop's buffer directly. Only the bytes it leaves unconsumed are copied into
//! the connection's own buffer, which is freed again once it is drained.
//!
//! # Write path
//!
//! While nothing is queued, [`Conn::write`] goes straight to the socket. What
//! the socket does not take is queued; the loop then arms write readiness,
//! flushes with `writev` when the socket is writable, and disarms once the
//! queue is empty. Byte order is always preserved.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::actors::slab::SlotKey;
use crate::addr::SockAddr;
use crate::buffer::{OutboundQueue, MAX_IOV};
use crate::engine::EngineShared;
use crate::error::{Error, Result};
use crate::handle::{ConnHandle, ConnId};
use crate::handler::CloseReason;
use crate::options::{KeepAlive, Timeouts, WaterMarks};
use crate::stats::LoopCounters;
use crate::sys;
use std::sync::Arc;

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
    /// Set when the connection must close after the current callback.
    pub(crate) close_reason: Option<CloseReason>,
    /// The peer closed its side: stop reading, close once the queue drains.
    pub(crate) read_closed: bool,
    /// Write readiness is armed in the poller.
    pub(crate) write_armed: bool,
    /// Read readiness is armed in the poller.
    pub(crate) read_armed: bool,
    /// Which listener accepted it.
    pub(crate) listener: u16,
    pub(crate) is_tcp: bool,
    /// Reading is paused by back-pressure (outbound above its high-water mark).
    pub(crate) paused: bool,
    /// Loop time (ms) of the last byte read / written.
    pub(crate) last_read_ms: u64,
    pub(crate) last_write_ms: u64,
    /// Tick of this connection's latest timer-wheel entry (0: none).
    pub(crate) timer_tick: u64,
    /// Per-connection settings that differ from the engine's.
    pub(crate) overrides: Option<Box<ConnOverrides>>,
}

/// Per-connection overrides of engine settings (boxed: most connections have
/// none, and an idle connection should stay small).
#[derive(Debug, Default)]
pub(crate) struct ConnOverrides {
    pub(crate) timeouts: Option<Timeouts>,
    pub(crate) marks: Option<WaterMarks>,
}

impl<S> ConnEntry<S> {
    pub(crate) fn new(fd: OwnedFd, peer: SockAddr, listener: u16, is_tcp: bool) -> Self {
        Self {
            fd,
            inbound: Vec::new(),
            outbound: OutboundQueue::default(),
            state: None,
            peer,
            close_reason: None,
            read_closed: false,
            write_armed: false,
            read_armed: false,
            listener,
            is_tcp,
            paused: false,
            last_read_ms: 0,
            last_write_ms: 0,
            timer_tick: 0,
            overrides: None,
        }
    }

    fn overrides_mut(&mut self) -> &mut ConnOverrides {
        self.overrides.get_or_insert_with(Box::default)
    }

    /// Records `n` bytes written now.
    fn wrote(&mut self, n: usize, lp: &LoopRef<'_>) {
        if n > 0 {
            self.last_write_ms = lp.now_ms;
            crate::stats::bump(&lp.counters.bytes_out, n as u64);
        }
    }

    /// Records why the connection must close; the first reason wins.
    pub(crate) fn close_with(&mut self, reason: CloseReason) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
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
    pub(crate) fn write_bytes(&mut self, data: &[u8], lp: &LoopRef<'_>) -> Result<usize> {
        if self.fd_gone() {
            return Err(Error::ConnectionClosed);
        }
        let mut written = 0;
        if self.outbound.is_empty() {
            match sys::io::write(self.fd.as_fd(), data) {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.fail_write(e)),
            }
        }
        self.wrote(written, lp);
        self.outbound.push(&data[written..], lp.write_cap);
        Ok(data.len())
    }

    /// Vectored form of [`write_bytes`](Self::write_bytes).
    pub(crate) fn writev_bytes(&mut self, bufs: &[&[u8]], lp: &LoopRef<'_>) -> Result<usize> {
        let cap = lp.write_cap;
        if self.fd_gone() {
            return Err(Error::ConnectionClosed);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut skip = 0;
        if self.outbound.is_empty() {
            let slices: Vec<IoSlice<'_>> =
                bufs.iter().take(1024).map(|b| IoSlice::new(b)).collect();
            match sys::io::writev(self.fd.as_fd(), &slices) {
                Ok(n) => skip = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.fail_write(e)),
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
        let cap = lp.write_cap;
        let len = data.len();
        if !self.outbound.is_empty() {
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
    fn fd_gone(&self) -> bool {
        matches!(
            self.close_reason,
            Some(CloseReason::Reset) | Some(CloseReason::Error(_))
        )
    }
}

/// What a [`Conn`] needs from its loop.
pub(crate) struct LoopRef<'a> {
    pub(crate) loop_index: u32,
    pub(crate) write_cap: usize,
    pub(crate) engine: &'a Arc<EngineShared>,
    pub(crate) counters: &'a LoopCounters,
    /// The loop's clock (ms since it started), read once per turn.
    pub(crate) now_ms: u64,
}

/// A datagram as the handler sees it: the loop's UDP socket, the sender, and
/// state that lives only for this callback.
pub(crate) struct Datagram<'a, S> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) peer: SockAddr,
    /// Index of the loop's UDP socket (for handles).
    pub(crate) socket: u32,
    pub(crate) listener: u16,
    pub(crate) state: Option<S>,
}

enum Backing<'a, S> {
    Stream(&'a mut ConnEntry<S>, SlotKey),
    Datagram(Datagram<'a, S>),
}

/// A connection (or, on a UDP address, one datagram's peer), inside a
/// callback on the loop that owns it.
///
/// `S` is the handler's [`State`](crate::EventHandler::State) type.
///
/// For UDP, each datagram is one `on_traffic` call: the input is the
/// datagram, [`write`](Self::write) replies to its sender, bytes left unread
/// are discarded with it, and state set here lasts only for this callback.
pub struct Conn<'a, S> {
    input: &'a [u8],
    consumed: usize,
    backing: Backing<'a, S>,
    lp: &'a LoopRef<'a>,
}

impl<'a, S> Conn<'a, S> {
    pub(crate) fn new(
        input: &'a [u8],
        entry: &'a mut ConnEntry<S>,
        key: SlotKey,
        lp: &'a LoopRef<'a>,
    ) -> Self {
        Self {
            input,
            consumed: 0,
            backing: Backing::Stream(entry, key),
            lp,
        }
    }

    pub(crate) fn datagram(
        input: &'a [u8],
        datagram: Datagram<'a, S>,
        lp: &'a LoopRef<'a>,
    ) -> Self {
        Self {
            input,
            consumed: 0,
            backing: Backing::Datagram(datagram),
            lp,
        }
    }

    /// Bytes consumed by the callback so far.
    pub(crate) fn consumed(&self) -> usize {
        self.consumed
    }

    fn unread(&self) -> &'a [u8] {
        &self.input[self.consumed..]
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.backing {
            Backing::Stream(entry, _) => entry.fd.as_fd(),
            Backing::Datagram(d) => d.fd,
        }
    }

    /// `true` for a UDP datagram, `false` for a stream connection.
    pub fn is_datagram(&self) -> bool {
        matches!(self.backing, Backing::Datagram(_))
    }

    // ----- reading -----

    /// Unread bytes waiting on this connection (leftover plus fresh).
    pub fn inbound_buffered(&self) -> usize {
        self.input.len() - self.consumed
    }

    /// Up to `n` unread bytes, without consuming them. Shorter than `n` when
    /// fewer are buffered.
    pub fn peek(&self, n: usize) -> &'a [u8] {
        let unread = self.unread();
        &unread[..n.min(unread.len())]
    }

    /// Up to `n` unread bytes, consumed. Shorter than `n` when fewer are
    /// buffered. The slice stays valid for the rest of the callback, so it can
    /// be written straight back.
    pub fn next(&mut self, n: usize) -> &'a [u8] {
        let out = self.peek(n);
        self.consumed += out.len();
        out
    }

    /// Every unread byte, consumed.
    pub fn read_all(&mut self) -> &'a [u8] {
        self.next(usize::MAX)
    }

    /// Consumes up to `n` unread bytes without looking at them; returns how
    /// many were discarded.
    pub fn discard(&mut self, n: usize) -> usize {
        self.next(n).len()
    }

    // ----- writing -----

    /// Writes `data`: straight to the socket if nothing is queued, otherwise
    /// (or for what the socket does not take now) into the outbound queue,
    /// flushed when the socket is writable. Returns `data.len()`. Fails if
    /// the socket is broken (the connection then closes after this callback).
    /// On UDP, sends `data` as one datagram to the sender of this one.
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        match &mut self.backing {
            Backing::Stream(entry, _) => entry.write_bytes(data, self.lp),
            Backing::Datagram(d) => send_datagram(d.fd, data, &d.peer),
        }
    }

    /// Writes several buffers with one `writev` (same rules as
    /// [`write`](Self::write)); on UDP they form one datagram.
    pub fn writev(&mut self, bufs: &[&[u8]]) -> Result<usize> {
        match &mut self.backing {
            Backing::Stream(entry, _) => entry.writev_bytes(bufs, self.lp),
            Backing::Datagram(d) => send_datagram(d.fd, &bufs.concat(), &d.peer),
        }
    }

    /// Writes an owned buffer; whatever the socket does not take now is
    /// queued without copying.
    pub fn write_vec(&mut self, data: Vec<u8>) -> Result<usize> {
        match &mut self.backing {
            Backing::Stream(entry, _) => entry.write_owned(data, self.lp),
            Backing::Datagram(d) => send_datagram(d.fd, &data, &d.peer),
        }
    }

    /// Sends one datagram to any address (UDP only).
    pub fn send_to(&mut self, data: &[u8], to: &SockAddr) -> Result<usize> {
        match &self.backing {
            Backing::Datagram(d) => send_datagram(d.fd, data, to),
            Backing::Stream(..) => Err(Error::Unsupported("send_to on a stream connection")),
        }
    }

    /// Tries to write the outbound queue now instead of waiting for the loop.
    pub fn flush(&mut self) -> Result<()> {
        let Backing::Stream(entry, _) = &mut self.backing else {
            return Ok(()); // datagrams are never queued
        };
        match entry.flush_queue(self.lp) {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = Error::io("flush", io::Error::new(e.kind(), e.to_string()));
                entry.close_with(CloseReason::from_io(e));
                Err(err)
            }
        }
    }

    /// Bytes written but not yet taken by the socket.
    pub fn outbound_buffered(&self) -> usize {
        match &self.backing {
            Backing::Stream(entry, _) => entry.outbound.len(),
            Backing::Datagram(_) => 0,
        }
    }

    /// Closes the connection after this callback returns (after flushing what
    /// was written). Same as returning [`Action::Close`](crate::Action::Close).
    /// Does nothing for a datagram.
    pub fn close(&mut self) {
        if let Backing::Stream(entry, _) = &mut self.backing {
            entry.close_with(CloseReason::Local);
        }
    }

    /// Overrides the engine's [`Timeouts`] for this connection (stream only).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        timeouts.check()?;
        match &mut self.backing {
            Backing::Stream(entry, _) => {
                entry.overrides_mut().timeouts = Some(timeouts);
                Ok(())
            }
            Backing::Datagram(_) => Err(Error::Unsupported("timeouts on a datagram")),
        }
    }

    /// Overrides the engine's outbound [`WaterMarks`] for this connection
    /// (stream only).
    pub fn set_write_water_marks(&mut self, marks: WaterMarks) -> Result<()> {
        marks.check()?;
        match &mut self.backing {
            Backing::Stream(entry, _) => {
                entry.overrides_mut().marks = Some(marks);
                Ok(())
            }
            Backing::Datagram(_) => Err(Error::Unsupported("water marks on a datagram")),
        }
    }

    // ----- state -----

    fn state_slot(&mut self) -> &mut Option<S> {
        match &mut self.backing {
            Backing::Stream(entry, _) => &mut entry.state,
            Backing::Datagram(d) => &mut d.state,
        }
    }

    /// This connection's state, if set.
    pub fn state(&self) -> Option<&S> {
        match &self.backing {
            Backing::Stream(entry, _) => entry.state.as_ref(),
            Backing::Datagram(d) => d.state.as_ref(),
        }
    }

    /// This connection's state, mutably, if set.
    pub fn state_mut(&mut self) -> Option<&mut S> {
        self.state_slot().as_mut()
    }

    /// Sets this connection's state, returning the old one.
    pub fn set_state(&mut self, state: S) -> Option<S> {
        self.state_slot().replace(state)
    }

    /// Removes this connection's state.
    pub fn take_state(&mut self) -> Option<S> {
        self.state_slot().take()
    }

    // ----- identity and addresses -----

    /// A `Send + Sync + Clone` handle to this connection, for other threads.
    /// For a datagram, the handle sends datagrams to its sender.
    pub fn handle(&self) -> ConnHandle {
        let engine = self.lp.engine.clone();
        match &self.backing {
            Backing::Stream(_, key) => ConnHandle::new(
                ConnId {
                    loop_index: self.lp.loop_index,
                    slot: key.index,
                    generation: key.generation,
                },
                engine,
            ),
            Backing::Datagram(d) => {
                ConnHandle::datagram(self.lp.loop_index, d.socket, d.peer.clone(), engine)
            }
        }
    }

    /// A handle to the engine: its worker pool ([`Engine::submit`]), stop,
    /// connection count.
    ///
    /// [`Engine::submit`]: crate::Engine::submit
    pub fn engine(&self) -> crate::Engine {
        crate::Engine {
            shared: self.lp.engine.clone(),
        }
    }

    /// Index of the loop that owns this connection.
    pub fn loop_index(&self) -> usize {
        self.lp.loop_index as usize
    }

    /// Index (in the order given to the builder) of the listener that
    /// accepted this connection (or received this datagram).
    pub fn listener_index(&self) -> usize {
        match &self.backing {
            Backing::Stream(entry, _) => usize::from(entry.listener),
            Backing::Datagram(d) => usize::from(d.listener),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &SockAddr {
        match &self.backing {
            Backing::Stream(entry, _) => &entry.peer,
            Backing::Datagram(d) => &d.peer,
        }
    }

    /// This side's address.
    pub fn local_addr(&self) -> Result<SockAddr> {
        sys::socket::local_addr(self.fd()).map_err(|e| Error::io("getsockname", e))
    }

    // ----- socket options -----

    fn tcp_only(&self, what: &'static str) -> Result<()> {
        match &self.backing {
            Backing::Stream(entry, _) if entry.is_tcp => Ok(()),
            _ => Err(Error::Unsupported(what)),
        }
    }

    /// Turns `TCP_NODELAY` on or off (TCP only).
    pub fn set_nodelay(&mut self, on: bool) -> Result<()> {
        self.tcp_only("TCP_NODELAY on a non-TCP connection")?;
        sys::socket::set_nodelay(self.fd(), on).map_err(|e| Error::io("setsockopt TCP_NODELAY", e))
    }

    /// Whether `TCP_NODELAY` is on (TCP only).
    pub fn nodelay(&self) -> Result<bool> {
        self.tcp_only("TCP_NODELAY on a non-TCP connection")?;
        sys::socket::nodelay(self.fd()).map_err(|e| Error::io("getsockopt TCP_NODELAY", e))
    }

    /// Sets TCP keepalive (`None` turns it off). TCP only.
    pub fn set_keepalive(&mut self, keepalive: Option<KeepAlive>) -> Result<()> {
        self.tcp_only("keepalive on a non-TCP connection")?;
        sys::socket::set_keepalive(self.fd(), keepalive.map(KeepAlive::to_sys))
            .map_err(|e| Error::io("setsockopt SO_KEEPALIVE", e))
    }

    /// Sets `SO_RCVBUF` (on UDP: of the loop's socket, shared by all peers).
    pub fn set_recv_buffer_size(&mut self, bytes: usize) -> Result<()> {
        sys::socket::set_recv_buffer_size(self.fd(), bytes)
            .map_err(|e| Error::io("setsockopt SO_RCVBUF", e))
    }

    /// `SO_RCVBUF` as the kernel reports it.
    pub fn recv_buffer_size(&self) -> Result<usize> {
        sys::socket::recv_buffer_size(self.fd()).map_err(|e| Error::io("getsockopt SO_RCVBUF", e))
    }

    /// Sets `SO_SNDBUF` (on UDP: of the loop's socket, shared by all peers).
    pub fn set_send_buffer_size(&mut self, bytes: usize) -> Result<()> {
        sys::socket::set_send_buffer_size(self.fd(), bytes)
            .map_err(|e| Error::io("setsockopt SO_SNDBUF", e))
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub fn send_buffer_size(&self) -> Result<usize> {
        sys::socket::send_buffer_size(self.fd()).map_err(|e| Error::io("getsockopt SO_SNDBUF", e))
    }
}

/// Sends one datagram; a full socket buffer drops it, as UDP may.
pub(crate) fn send_datagram(fd: BorrowedFd<'_>, data: &[u8], to: &SockAddr) -> Result<usize> {
    match sys::io::send_to(fd, data, to) {
        Ok(n) => Ok(n),
        Err(e) => Err(Error::io("sendto", e)),
    }
}

impl<S> io::Read for Conn<'_, S> {
    /// Copies unread bytes out (consuming them).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let src = self.next(buf.len());
        buf[..src.len()].copy_from_slice(src);
        Ok(src.len())
    }
}

impl<S> io::Write for Conn<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Conn::write(self, buf).map_err(|e| io::Error::other(e.to_string()))
    }

    fn flush(&mut self) -> io::Result<()> {
        Conn::flush(self).map_err(|e| io::Error::other(e.to_string()))
    }
}

impl<S> std::fmt::Debug for Conn<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("loop", &self.lp.loop_index)
            .field("datagram", &self.is_datagram())
            .field("peer", self.peer_addr())
            .field("inbound", &self.inbound_buffered())
            .field("outbound", &self.outbound_buffered())
            .finish()
    }
}
