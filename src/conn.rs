//! [`Conn`]: a connection as a handler sees it inside a callback. The
//! record the event loop keeps for it, and its write path, live in
//! `event_loop/entry.rs`.
//!
//! Owns the per-connection read view and what a handler may ask of its
//! connection (writes, which go through the entry's write path; pauses,
//! closes, relays, state, socket options). A `Conn` exists
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

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::actors::slab::Slab;
use crate::actors::slab::SlotKey;
use crate::addr::{ListenAddr, SockAddr};
use crate::error::{Error, Result};
use crate::event_loop::entry::{ConnEntry, LoopRef};
use crate::event_loop::forward::Forward;
use crate::handle::ConnHandle;
use crate::id::ConnId;
use crate::options::{Timeouts, WaterMarks};
use crate::reason::CloseReason;
use crate::sys;
use crate::tls::{TlsConnector, TlsInfo, TlsSession};
use crate::to_addr::ToAddr;

enum Backing<'a, S> {
    /// A stream connection: the loop's whole table, so that a handler can
    /// also reach the other connections of its loop (a proxy's backend).
    Stream {
        conns: &'a mut Slab<ConnEntry<S>>,
        key: SlotKey,
    },
}

/// What a callback asked of its loop beyond its own connection, applied by
/// the loop once the callback returns.
pub(crate) struct SideEffects<S> {
    /// Other connections written to or closed (their interest must be synced).
    pub(crate) touched: Vec<SlotKey>,
    /// Connections to dial onto this loop, with their initial state (and,
    /// for `tls://`, how to verify the server if not the engine's way).
    pub(crate) dials: Vec<(ListenAddr, S, Option<Box<TlsConnector>>)>,
}

/// A stream connection (or a dialled, connected `udp://` socket), inside a
/// callback on the loop that owns it. (Datagrams of `udp://` listeners come
/// as a [`Datagram`](crate::Datagram) to
/// [`on_datagram`](crate::EventHandler::on_datagram) instead.)
///
/// `S` is the handler's [`State`](crate::EventHandler::State) type.
///
/// On a dialled `udp://` connection, each datagram is one `on_traffic`
/// call, [`write`](Self::write) sends one datagram, and bytes left unread
/// are discarded with their datagram.
///
/// ```
/// use ringloop::{Action, Conn, Engine, EventHandler};
/// use std::io::{Read, Write};
///
/// /// Echoes every byte back.
/// struct Echo;
/// impl EventHandler for Echo {
///     type State = ();
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         let data = conn.read_all();
///         match conn.write(data) {
///             Ok(_) => Action::None,
///             Err(_) => Action::Close,
///         }
///     }
/// }
///
/// let server = Engine::builder(|_| Echo).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// client.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// client.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// drop(client);
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Conn<'a, S> {
    /// What the callback has not consumed yet: the tail of its input (kept
    /// as the slice itself, so reading needs no bounds check against a
    /// separate count; the loop knows the input's length).
    unread: &'a [u8],
    backing: Backing<'a, S>,
    lp: &'a LoopRef<'a>,
    side: Option<Box<SideEffects<S>>>,
    /// The callback may have changed something of its own connection that
    /// settling acts on (a close, a shutdown, a pause, queued output, its
    /// own settings): every mutable access to the entry sets it, except a
    /// write that went straight through with nothing queued, and so does
    /// every change to another connection (which may be this one under
    /// another name: side effects). While it is clear, the loop knows
    /// without looking that a connection quiet before the callback still
    /// is, and that there are no side effects (`event_loop/fast.rs`).
    own_changed: bool,
    /// A write may go straight to the socket without `write_bytes`'
    /// checks: the loop vouched, when it made this `Conn`, that nothing is
    /// queued, the connection has no TLS session, does not send through
    /// the io_uring ring and is not doomed by an earlier write error
    /// ([`new_straight`](Self::new_straight)); cleared by anything that
    /// could change one of those (every mutable access to the entry but a
    /// write straight through, and every change to another connection,
    /// which may be this one under another name).
    straight: bool,
}

impl<'a, S> Conn<'a, S> {
    pub(crate) fn new(
        input: &'a [u8],
        conns: &'a mut Slab<ConnEntry<S>>,
        key: SlotKey,
        lp: &'a LoopRef<'a>,
    ) -> Self {
        Self::with_writes(input, conns, key, lp, false)
    }

    /// A `Conn` whose writes may go straight to the socket while nothing
    /// changes (see the field `straight`). The caller vouches that the
    /// entry at `key` has nothing queued, no TLS session, no sends through
    /// the ring and no close reason (`event_loop/fast.rs`: a quiet
    /// connection), and has stamped its write time with the turn's clock
    /// (a write straight through only counts its bytes).
    #[inline(always)]
    pub(crate) fn new_straight(
        input: &'a [u8],
        conns: &'a mut Slab<ConnEntry<S>>,
        key: SlotKey,
        lp: &'a LoopRef<'a>,
    ) -> Self {
        debug_assert!(
            conns.get(key).is_some_and(|e| e.outbound.is_empty()
                && e.tls.is_none()
                && !e.ring_sends
                && e.close_reason.is_none()
                && e.last_write_ms == crate::event_loop::entry::Stamp::at(lp.now_ms)),
            "a straight Conn for a connection that cannot write straight"
        );
        Self::with_writes(input, conns, key, lp, true)
    }

    #[inline(always)]
    fn with_writes(
        input: &'a [u8],
        conns: &'a mut Slab<ConnEntry<S>>,
        key: SlotKey,
        lp: &'a LoopRef<'a>,
        straight: bool,
    ) -> Self {
        Self {
            unread: input,
            backing: Backing::Stream { conns, key },
            lp,
            side: None,
            own_changed: false,
            straight,
        }
    }

    /// The callback left its connection as it was (see the field
    /// `own_changed`: it at most wrote straight through, so it has no side
    /// effects either) and read all of its input.
    #[inline]
    pub(crate) fn unchanged_and_drained(&self) -> bool {
        !self.own_changed && self.unread.is_empty()
    }

    /// Ends a callback for which
    /// [`unchanged_and_drained`](Self::unchanged_and_drained) holds: there
    /// is nothing to hand back (and nothing to drop).
    #[inline]
    pub(crate) fn finish_unchanged(self) {
        debug_assert!(self.unchanged_and_drained() && self.side.is_none());
        std::mem::forget(self);
    }

    /// What the callback asked of the loop beyond this connection.
    pub(crate) fn take_side_effects(&mut self) -> Option<Box<SideEffects<S>>> {
        self.side.take()
    }

    /// Ends the callback: how many bytes of its input it left unread, and
    /// what it asked of the loop beyond this connection. Taking the view apart (rather than
    /// dropping it) spares an out-of-line drop of its emptied side effects.
    #[inline]
    pub(crate) fn finish(self) -> (usize, Option<Box<SideEffects<S>>>) {
        let Conn { unread, side, .. } = self;
        (unread.len(), side)
    }

    fn side(&mut self) -> &mut SideEffects<S> {
        // Every change to another connection comes through here, and the
        // other may be this one: writes stop going straight, and settling
        // must look (so `own_changed` clear also means no side effects).
        self.changed();
        self.side.get_or_insert_with(|| {
            Box::new(SideEffects {
                touched: Vec::new(),
                dials: Vec::new(),
            })
        })
    }

    /// This connection's record. The loop keeps it in the table for the
    /// whole callback, so the lookup cannot miss.
    fn entry(&self) -> Option<&ConnEntry<S>> {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key),
        }
    }

    /// The callback may have changed its own connection: settling must
    /// look, and writes stop going straight.
    #[inline]
    fn changed(&mut self) {
        self.own_changed = true;
        self.straight = false;
    }

    fn entry_mut(&mut self) -> Option<&mut ConnEntry<S>> {
        self.changed();
        match &mut self.backing {
            Backing::Stream { conns, key } => conns.get_mut(*key),
        }
    }

    fn unread(&self) -> &'a [u8] {
        self.unread
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key).map(|e| e.fd.as_fd()),
        }
    }

    /// `true` for a dialled `udp://` connection (a connected UDP socket:
    /// one `on_traffic` per datagram), `false` for a stream.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let data = conn.read_all();
    ///     if conn.is_datagram() {
    ///         let _ = conn.write(data); // one datagram back to the peer dialled
    ///         Action::None
    ///     } else {
    ///         Action::Close // this handler serves dialled UDP only
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_datagram(&self) -> bool {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key).is_some_and(|e| e.is_datagram),
        }
    }

    // ----- reading -----

    /// Unread bytes waiting on this connection (leftover plus fresh).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Wait for a whole 16-byte record; unread bytes stay buffered.
    ///     if conn.inbound_buffered() < 16 {
    ///         return Action::None;
    ///     }
    ///     let record = conn.next(16);
    ///     assert_eq!(record.len(), 16);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn inbound_buffered(&self) -> usize {
        self.unread.len()
    }

    /// Up to `n` unread bytes, without consuming them. Shorter than `n` when
    /// fewer are buffered.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // A 2-byte big-endian length, then the body: consume nothing until whole.
    ///     let head = conn.peek(2);
    ///     if head.len() < 2 {
    ///         return Action::None;
    ///     }
    ///     let len = u16::from_be_bytes([head[0], head[1]]) as usize;
    ///     if conn.inbound_buffered() < 2 + len {
    ///         return Action::None;
    ///     }
    ///     conn.discard(2);
    ///     let body = conn.next(len);
    ///     let _ = conn.write(body);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn peek(&self, n: usize) -> &'a [u8] {
        let unread = self.unread();
        &unread[..n.min(unread.len())]
    }

    /// Up to `n` unread bytes, consumed. Shorter than `n` when fewer are
    /// buffered. The slice stays valid for the rest of the callback, so it can
    /// be written straight back.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Echo in fixed 4-byte units; a partial unit waits for more bytes.
    ///     while conn.inbound_buffered() >= 4 {
    ///         let unit = conn.next(4);
    ///         if conn.write(unit).is_err() {
    ///             return Action::Close;
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn next(&mut self, n: usize) -> &'a [u8] {
        let (out, rest) = self.unread.split_at(n.min(self.unread.len()));
        self.unread = rest;
        out
    }

    /// Every unread byte, consumed.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let data = conn.read_all(); // borrowed from the loop's buffer, no copy
    ///     assert_eq!(conn.inbound_buffered(), 0);
    ///     match conn.write(data) {
    ///         Ok(_) => Action::None,
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn read_all(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.unread)
    }

    /// Consumes up to `n` unread bytes without looking at them; returns how
    /// many were discarded.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // A sink: drop everything, count it.
    ///     let dropped = conn.discard(usize::MAX);
    ///     log::trace!("dropped {dropped} bytes");
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn discard(&mut self, n: usize) -> usize {
        self.next(n).len()
    }

    // ----- writing -----

    /// Writes `data`: straight to the socket if nothing is queued, otherwise
    /// (or for what the socket does not take now) into the outbound queue,
    /// flushed when the socket is writable. Returns `data.len()`. Fails if
    /// the socket is broken (the connection then closes after this callback).
    /// On a dialled `udp://` connection, sends `data` as one datagram.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     match conn.write(b"hello\r\n") {
    ///         Ok(n) => {
    ///             assert_eq!(n, 7); // written or queued: all of it
    ///             Action::None
    ///         }
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    #[inline]
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        if self.straight {
            // A write straight through changes nothing that makes a
            // connection quiet or not (the loop's marks, see
            // `event_loop/fast.rs`); any other outcome voids them.
            let Backing::Stream { conns, key } = &mut self.backing;
            if let Some(entry) = conns.get_mut_keeping_marks(*key) {
                // Vouched for (see `straight`): no checks before the send.
                debug_assert!(
                    entry.outbound.is_empty()
                        && entry.tls.is_none()
                        && !entry.ring_sends
                        && !entry.fd_gone(),
                    "a write went straight past what `write_bytes` checks"
                );
                let sent = entry.send_straight(data);
                if matches!(sent, Ok(n) if n == data.len()) {
                    // Its write time is stamped already (`new_straight`).
                    crate::stats::bump(&self.lp.counters.bytes_out, data.len() as u64);
                    return Ok(data.len());
                }
                return self.write_rest(data, sent);
            }
        }
        self.write_checked(data)
    }

    /// [`write`](Self::write) after a send straight to the socket that did
    /// not take all of `data` (`sent`). Out of line, as is
    /// [`write_checked`](Self::write_checked): the straight path inlined
    /// into a handler then keeps fewer registers across its send.
    #[cold]
    #[inline(never)]
    fn write_rest(&mut self, data: &[u8], sent: io::Result<usize>) -> Result<usize> {
        self.write_through(|entry, lp| entry.write_rest(data, sent, lp))
    }

    /// [`write`](Self::write) through `write_bytes`' checks (queued bytes,
    /// TLS, sends through the io_uring ring, a failed connection).
    #[inline(never)]
    fn write_checked(&mut self, data: &[u8]) -> Result<usize> {
        self.write_through(|entry, lp| entry.write_bytes(data, lp))
    }

    /// Writes to this connection's entry with `write`; anything but all of
    /// it written now (an error, or bytes left queued) is a change that
    /// settling must see.
    #[inline(always)]
    fn write_through(
        &mut self,
        write: impl FnOnce(&mut ConnEntry<S>, &LoopRef<'_>) -> Result<usize>,
    ) -> Result<usize> {
        let lp = self.lp;
        let Backing::Stream { conns, key } = &mut self.backing;
        let Some(entry) = conns.get_mut_keeping_marks(*key) else {
            return Err(Error::ConnectionClosed);
        };
        let written = write(entry, lp);
        // Straight through, nothing queued: nothing for settling to do.
        if written.is_err() || !entry.outbound.is_empty() {
            self.own_changed = true;
            self.straight = false;
            conns.void_marks();
        }
        written
    }

    /// Writes several buffers with one `writev` (same rules as
    /// [`write`](Self::write)); on a dialled `udp://` connection they form
    /// one datagram.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Header and body in one system call, without joining them first.
    ///     let body = conn.read_all();
    ///     let header = (body.len() as u32).to_be_bytes();
    ///     match conn.writev(&[&header, body]) {
    ///         Ok(_) => Action::None,
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn writev(&mut self, bufs: &[&[u8]]) -> Result<usize> {
        let lp = self.lp;
        self.changed();
        match &mut self.backing {
            Backing::Stream { conns, key } => conns
                .get_mut(*key)
                .ok_or_else(|| Error::ConnectionClosed)?
                .writev_bytes(bufs, lp),
        }
    }

    /// Writes an owned buffer; whatever the socket does not take now is
    /// queued without copying.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let upper: Vec<u8> = conn.read_all().to_ascii_uppercase();
    ///     match conn.write_vec(upper) {
    ///         Ok(_) => Action::None,
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn write_vec(&mut self, data: Vec<u8>) -> Result<usize> {
        let lp = self.lp;
        self.changed();
        match &mut self.backing {
            Backing::Stream { conns, key } => conns
                .get_mut(*key)
                .ok_or_else(|| Error::ConnectionClosed)?
                .write_owned(data, lp),
        }
    }

    /// Tries to write the outbound queue now instead of waiting for the loop.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let data = conn.read_all();
    ///     let _ = conn.write(data);
    ///     // Push what is queued now rather than on the next writable event.
    ///     match conn.flush() {
    ///         Ok(()) => Action::None,
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn flush(&mut self) -> Result<()> {
        let lp = self.lp;
        let Some(entry) = self.entry_mut() else {
            return Ok(()); // the record is gone: nothing to flush
        };
        match entry.flush_queue(lp) {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = Error::io("flush", io::Error::new(e.kind(), e.to_string()));
                entry.close_with(CloseReason::from_io(e));
                Err(err)
            }
        }
    }

    /// Stops reading from the connection (Netty's `autoRead` off): no more
    /// `on_traffic` for new bytes, which wait in the kernel, so the peer is
    /// slowed down by TCP itself instead of filling memory. Timers keep
    /// running, except the incomplete-input timeout for input the handler
    /// left unconsumed: holding it is the handler's choice, and its clock
    /// starts afresh on resume. The peer's end of stream is seen once
    /// reading resumes. Use
    /// it to cap work in flight per connection, e.g. while a worker-pool job
    /// for it runs; resume with [`resume_reading`](Self::resume_reading) or,
    /// from another thread, [`ConnHandle::resume_reading`].
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct OneJobAtATime;
    /// # impl EventHandler for OneJobAtATime {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let request = conn.peek(usize::MAX).to_vec();
    ///     let handle = conn.handle();
    ///     conn.pause_reading(); // nothing more until this job answered
    ///     let submitted = conn.engine().submit(move || {
    ///         let _ = handle.async_write(request, |_| {});
    ///         let _ = handle.resume_reading(); // applied after the write
    ///     });
    ///     if submitted.is_ok() {
    ///         conn.read_all(); // consumed once queued; else kept (see `SubmitErrorKind`)
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn pause_reading(&mut self) {
        if let Some(entry) = self.entry_mut() {
            entry.user_paused = true;
        }
    }

    /// Reads the connection again after [`pause_reading`](Self::pause_reading).
    /// Called from [`on_wake`](crate::EventHandler::on_wake) with input
    /// already waiting unread, `on_traffic` runs for it once `on_wake`
    /// returns (as after [`ConnHandle::resume_reading`](crate::ConnHandle::resume_reading)),
    /// without waiting for more bytes.
    pub fn resume_reading(&mut self) {
        let now_ms = self.lp.now_ms;
        if let Some(entry) = self.entry_mut() {
            if entry.user_paused {
                // Held-back input starts its incomplete-input clock afresh.
                entry.input_since_ms = crate::event_loop::entry::Stamp::at(now_ms);
            }
            entry.user_paused = false;
        }
    }

    /// `true` while [`pause_reading`](Self::pause_reading) holds.
    pub fn is_reading_paused(&self) -> bool {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key).is_some_and(|e| e.user_paused),
        }
    }

    /// Bytes written but not yet taken by the socket.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Stop echoing to a peer that does not read its replies.
    ///     if conn.outbound_buffered() > 1 << 20 {
    ///         return Action::Close;
    ///     }
    ///     let data = conn.read_all();
    ///     let _ = conn.write(data);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn outbound_buffered(&self) -> usize {
        self.entry().map_or(0, |e| e.outbound.len())
    }

    /// Closes the connection after this callback returns (after flushing what
    /// was written). Same as returning [`Action::Close`](crate::Action::Close).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Say goodbye and hang up: the greeting is flushed before the close.
    ///     let _ = conn.write(b"busy, try later\r\n");
    ///     conn.close();
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn close(&mut self) {
        if let Some(entry) = self.entry_mut() {
            entry.close_with(CloseReason::Local);
        }
    }

    /// Closes the connection for a protocol error, after this callback and
    /// after flushing what is queued (say, an error reply); the close
    /// callback gets [`CloseReason::Protocol`] with `error`.
    ///
    /// ```
    /// use ringloop::{Action, Conn, EventHandler};
    ///
    /// struct Strict;
    ///
    /// impl EventHandler for Strict {
    ///     type State = ();
    ///
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         if conn.peek(4) != b"PING" {
    ///             let _ = conn.write(b"-ERR expected PING\r\n");
    ///             conn.close_with_error("the client did not say PING");
    ///         } else {
    ///             conn.discard(4);
    ///             let _ = conn.write(b"+PONG\r\n");
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn close_with_error(&mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        if let Some(entry) = self.entry_mut() {
            entry.close_with(CloseReason::Protocol(error.into()));
        }
    }

    // ----- the other connections of this loop -----

    /// This connection's identity.
    ///
    /// ```
    /// use ringloop::{Action, CloseReason, Conn, ConnId, EventHandler};
    /// use std::collections::HashSet;
    ///
    /// struct Registry {
    ///     open: HashSet<ConnId>,
    /// }
    ///
    /// impl EventHandler for Registry {
    ///     type State = ();
    ///     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         self.open.insert(conn.id());
    ///         Action::None
    ///     }
    ///     fn on_close(&mut self, conn: &mut Conn<'_, ()>, _reason: &CloseReason) -> Action {
    ///         self.open.remove(&conn.id());
    ///         Action::None
    ///     }
    /// }
    /// ```
    pub fn id(&self) -> ConnId {
        self.handle().id()
    }

    fn other_key(&self, other: ConnId) -> Result<SlotKey> {
        if other.loop_index != self.lp.loop_index {
            return Err(Error::Unsupported(
                "direct access to a connection of another loop (use its handle)",
            ));
        }
        match &self.backing {
            Backing::Stream { conns, .. } if conns.get(other.key()).is_some() => Ok(other.key()),
            Backing::Stream { .. } => Err(Error::ConnectionClosed),
        }
    }

    /// Writes `data` to another connection **of this loop**, directly (no
    /// message, no copy unless its socket is busy). For a proxy relaying
    /// between a client and the backend it dialled with [`dial`](Self::dial).
    ///
    /// ```
    /// use ringloop::{Action, Conn, ConnId, EventHandler};
    ///
    /// /// A one-way relay: whatever the client sends goes to its backend.
    /// struct Relay;
    ///
    /// impl EventHandler for Relay {
    ///     type State = Option<ConnId>; // the backend's id, once known
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///         let Some(&Some(backend)) = conn.state() else {
    ///             return Action::None; // not linked yet: keep the bytes buffered
    ///         };
    ///         let data = conn.read_all();
    ///         match conn.write_to(backend, data) {
    ///             Ok(_) => Action::None,
    ///             Err(_) => Action::Close, // the backend is gone
    ///         }
    ///     }
    /// }
    /// ```
    pub fn write_to(&mut self, other: ConnId, data: &[u8]) -> Result<usize> {
        let key = self.other_key(other)?;
        let lp = self.lp;
        let Backing::Stream { conns, .. } = &mut self.backing;
        let entry = conns.get_mut(key).ok_or(Error::ConnectionClosed)?;
        // Only the callback's own connection may claim its received buffer
        // (`event_loop/forward.rs`): it is sent on that connection.
        let result = Forward::withheld(&lp.forward, || entry.write_bytes(data, lp));
        self.side().touched.push(key);
        result
    }

    /// Bytes queued on another connection of this loop.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnId, EventHandler};
    /// # struct Relay;
    /// # impl EventHandler for Relay {
    /// #     type State = Option<ConnId>;
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///     let Some(&Some(backend)) = conn.state() else { return Action::None };
    ///     // Leave the bytes unread while the backend has a backlog.
    ///     if conn.outbound_buffered_of(backend).unwrap_or(0) > 64 * 1024 {
    ///         return Action::None;
    ///     }
    ///     let data = conn.read_all();
    ///     let _ = conn.write_to(backend, data);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn outbound_buffered_of(&self, other: ConnId) -> Result<usize> {
        let key = self.other_key(other)?;
        match &self.backing {
            Backing::Stream { conns, .. } => Ok(conns.get(key).map_or(0, |e| e.outbound.len())),
        }
    }

    /// Half-closes the connection: once everything queued is written, sends
    /// FIN (`shutdown(SHUT_WR)`); reading goes on. (Stream only.)
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Send the whole reply, then FIN; the peer's bytes can still be read.
    ///     let _ = conn.write(b"report follows\r\n...\r\n");
    ///     conn.shutdown_write();
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn shutdown_write(&mut self) {
        if let Some(entry) = self.entry_mut() {
            entry.want_shutdown();
        }
        let Backing::Stream { key, .. } = self.backing;
        self.side().touched.push(key);
    }

    /// [`shutdown_write`](Self::shutdown_write) for another connection of
    /// this loop.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnId, EventHandler};
    /// # struct Relay;
    /// # impl EventHandler for Relay {
    /// #     type State = Option<ConnId>;
    /// fn on_read_closed(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///     // The client sent FIN: pass it on to the backend, keep reading replies.
    ///     if let Some(&Some(backend)) = conn.state() {
    ///         let _ = conn.shutdown_write_of(backend);
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn shutdown_write_of(&mut self, other: ConnId) -> Result<()> {
        let key = self.other_key(other)?;
        let Backing::Stream { conns, .. } = &mut self.backing;
        if let Some(entry) = conns.get_mut(key) {
            entry.want_shutdown();
        }
        self.side().touched.push(key);
        Ok(())
    }

    /// The state of another connection of this loop, mutably.
    ///
    /// ```
    /// use ringloop::{Action, Conn, ConnId, EventHandler};
    ///
    /// /// Each connection counts what it received from its peer.
    /// struct Counted;
    ///
    /// impl EventHandler for Counted {
    ///     type State = (Option<ConnId>, u64); // (peer, bytes received from it)
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, (Option<ConnId>, u64)>) -> Action {
    ///         let Some(&(Some(peer), _)) = conn.state() else { return Action::None };
    ///         let data = conn.read_all();
    ///         let _ = conn.write_to(peer, data);
    ///         if let Ok(Some(peer_state)) = conn.state_of_mut(peer) {
    ///             peer_state.1 += data.len() as u64;
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    pub fn state_of_mut(&mut self, other: ConnId) -> Result<Option<&mut S>> {
        let key = self.other_key(other)?;
        match &mut self.backing {
            Backing::Stream { conns, .. } => Ok(conns.get_mut(key).and_then(|e| e.state.as_mut())),
        }
    }

    /// Closes another connection of this loop once this callback returns.
    ///
    /// ```
    /// # use ringloop::{Action, CloseReason, Conn, ConnId, EventHandler};
    /// # struct Relay;
    /// # impl EventHandler for Relay {
    /// #     type State = Option<ConnId>;
    /// fn on_close(&mut self, conn: &mut Conn<'_, Option<ConnId>>, _why: &CloseReason) -> Action {
    ///     // One side of the pair went away: take the other one down too.
    ///     if let Some(Some(other)) = conn.take_state() {
    ///         let _ = conn.close_other(other);
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn close_other(&mut self, other: ConnId) -> Result<()> {
        let key = self.other_key(other)?;
        let Backing::Stream { conns, .. } = &mut self.backing;
        if let Some(entry) = conns.get_mut(key) {
            entry.close_with(CloseReason::Local);
        }
        self.side().touched.push(key);
        Ok(())
    }

    /// Links back-pressure both ways between this connection and `other` (a
    /// proxy's two sides): see [`feed`](Self::feed).
    ///
    /// ```
    /// use ringloop::{Action, Conn, ConnId, EventHandler};
    ///
    /// struct Proxy;
    ///
    /// impl EventHandler for Proxy {
    ///     type State = Option<ConnId>;
    ///     fn on_open(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///         // A dialled backend starts with its client's id as state:
    ///         // pair them up both ways.
    ///         if let Some(&Some(client)) = conn.state() {
    ///             let me = conn.id();
    ///             if let Ok(Some(client_state)) = conn.state_of_mut(client) {
    ///                 *client_state = Some(me);
    ///             }
    ///             let _ = conn.link(client); // a slow side pauses reading the other
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    pub fn link(&mut self, other: ConnId) -> Result<()> {
        self.feed(other)?;
        let other_key = self.other_key(other)?;
        self.changed();
        let Backing::Stream { conns, key } = &mut self.backing;
        let key = *key;
        if let Some(entry) = conns.get_mut(other_key) {
            entry.overrides_mut().feeds = Some(key);
        }
        if let Some(entry) = conns.get_mut(key) {
            entry.overrides_mut().fed_by = Some(other_key);
        }
        Ok(())
    }

    /// Links back-pressure: while `other` (a connection of this loop that
    /// this one's bytes are relayed to) is above its high-water mark, this
    /// connection is not read. For proxies: a slow reader on one side stops
    /// the other side from being read until it drains.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnId, EventHandler};
    /// # struct Tee;
    /// # impl EventHandler for Tee {
    /// #     type State = Option<ConnId>;
    /// fn on_open(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///     // One-way relay into `sink`: stop reading this side while it is full.
    ///     if let Some(&Some(sink)) = conn.state() {
    ///         let _ = conn.feed(sink);
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn feed(&mut self, other: ConnId) -> Result<()> {
        let other_key = self.other_key(other)?;
        self.changed();
        let Backing::Stream { conns, key } = &mut self.backing;
        let key = *key;
        if let Some(entry) = conns.get_mut(key) {
            entry.overrides_mut().feeds = Some(other_key);
        }
        if let Some(target) = conns.get_mut(other_key) {
            target.overrides_mut().fed_by = Some(key);
        }
        self.side().touched.push(other_key);
        Ok(())
    }

    /// Dials `addr` (`tcp://…`, `unix://…`, `udp://…`) **onto this loop**,
    /// without blocking: the new connection starts with `state` and gets
    /// [`on_open`](crate::EventHandler::on_open) once connected, or the
    /// handler's [`on_dial_error`](crate::EventHandler::on_dial_error) gets
    /// `state` back with the reason. Fails now only for a bad address.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnId, EventHandler};
    /// # struct Proxy;
    /// # impl EventHandler for Proxy {
    /// #     type State = Option<ConnId>;
    /// fn on_open(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///     if conn.listener_index().is_some() {
    ///         // A new client: dial its backend onto this loop, with the client's
    ///         // id as the backend's state (its `on_open` links the pair).
    ///         let client = conn.id();
    ///         if conn.dial("tcp://127.0.0.1:6379", Some(client)).is_err() {
    ///             return Action::Close;
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn dial(&mut self, addr: impl ToAddr, state: S) -> Result<()> {
        let addr = addr.to_listen_addr()?;
        self.side().dials.push((addr, state, None));
        Ok(())
    }

    /// [`dial`](Self::dial) of a `tls://` address, verifying the server
    /// with `connector` (its config and server name) instead of the
    /// engine's [`tls_client`](crate::EngineBuilder::tls_client) config.
    /// `on_open` runs once the handshake is done; a failed verification
    /// reaches [`on_dial_error`](crate::EventHandler::on_dial_error) as
    /// [`Error::Tls`].
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnId, EventHandler};
    /// use ringloop::tls::TlsConnector;
    ///
    /// struct Proxy {
    ///     backend: TlsConnector,
    /// }
    /// impl EventHandler for Proxy {
    ///     type State = Option<ConnId>;
    ///     fn on_open(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
    ///         if conn.listener_index().is_some() {
    ///             let client = Some(conn.id());
    ///             let tls = self.backend.clone();
    ///             if conn.dial_tls("tls://127.0.0.1:8443", tls, client).is_err() {
    ///                 return Action::Close;
    ///             }
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    pub fn dial_tls(&mut self, addr: impl ToAddr, connector: TlsConnector, state: S) -> Result<()> {
        let addr = addr.to_listen_addr()?;
        if !addr.is_tls() {
            return Err(Error::invalid_address(
                &addr.to_string(),
                "dial_tls needs a tls:// address",
            ));
        }
        self.side()
            .dials
            .push((addr, state, Some(Box::new(connector))));
        Ok(())
    }

    /// The TLS session of a `tls://` connection: ALPN protocol, SNI name,
    /// peer certificates, version. `None` for plain connections.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let Some(tls) = conn.tls() else {
    ///         return Action::Close; // this port serves TLS only
    ///     };
    ///     if tls.server_name() == Some("admin.example") && tls.peer_certificates().is_none() {
    ///         return Action::Close; // the admin site needs a client certificate
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn tls(&self) -> Option<TlsInfo<'_>> {
        self.entry()?.tls.as_deref().map(TlsSession::info)
    }

    /// Overrides the engine's [`Timeouts`] for this connection (stream only).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler, Timeouts};
    /// # use std::time::Duration;
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // A login must arrive within 5 s; after that, idle for 10 min at most.
    ///     let t = Timeouts::none().read(Duration::from_secs(5)).idle(Duration::from_secs(600));
    ///     let _ = conn.set_timeouts(t);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        timeouts.check()?;
        let entry = self.entry_mut().ok_or(Error::ConnectionClosed)?;
        entry.overrides_mut().timeouts = Some(timeouts);
        Ok(())
    }

    /// Overrides the engine's outbound [`WaterMarks`] for this connection
    /// (stream only).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler, WaterMarks};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // This peer gets bulk downloads: allow a larger backlog.
    ///     let _ = conn.set_write_water_marks(WaterMarks::new(8 << 20, 1 << 20));
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn set_write_water_marks(&mut self, marks: WaterMarks) -> Result<()> {
        marks.check()?;
        let entry = self.entry_mut().ok_or(Error::ConnectionClosed)?;
        entry.overrides_mut().marks = Some(marks);
        Ok(())
    }

    // ----- state -----

    /// The state's place in the entry. Reaching it keeps the connection
    /// table's marks (see `event_loop/fast.rs`): a mark vouches that the
    /// connection is quiet, which its state has no part in, so a handler
    /// that takes and sets its state on every event (HTTP: its parse state)
    /// does not make the loop re-check every connection's quietness.
    pub(crate) fn state_slot(&mut self) -> Option<&mut Option<S>> {
        match &mut self.backing {
            Backing::Stream { conns, key } => {
                conns.get_mut_keeping_marks(*key).map(|e| &mut e.state)
            }
        }
    }

    /// This connection's state, if set.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = String; // the user's name, once logged in
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, String>) -> Action {
    ///     let line = conn.read_all();
    ///     let reply = match conn.state() {
    ///         Some(name) => format!("{name}: {}", String::from_utf8_lossy(line)),
    ///         None => "log in first\n".to_string(),
    ///     };
    ///     let _ = conn.write(reply.as_bytes());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> Option<&S> {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key)?.state.as_ref(),
        }
    }

    /// This connection's state, mutably, if set.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = u64; // bytes received
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
    ///     let n = conn.read_all().len() as u64;
    ///     match conn.state_mut() {
    ///         Some(total) => *total += n,
    ///         None => {
    ///             conn.set_state(n);
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state_mut(&mut self) -> Option<&mut S> {
        self.state_slot()?.as_mut()
    }

    /// Sets this connection's state, returning the old one.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # use std::time::Instant;
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = Instant; // when the connection opened
    /// fn on_open(&mut self, conn: &mut Conn<'_, Instant>) -> Action {
    ///     let old = conn.set_state(Instant::now());
    ///     assert!(old.is_none()); // an accepted connection starts without state
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn set_state(&mut self, state: S) -> Option<S> {
        self.state_slot()?.replace(state)
    }

    /// Removes this connection's state.
    ///
    /// ```
    /// # use ringloop::{Action, CloseReason, Conn, EventHandler};
    /// # use std::time::Instant;
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = Instant; // when the connection opened
    /// fn on_close(&mut self, conn: &mut Conn<'_, Instant>, _reason: &CloseReason) -> Action {
    ///     if let Some(opened) = conn.take_state() {
    ///         log::debug!("connection lived {:?}", opened.elapsed());
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn take_state(&mut self) -> Option<S> {
        self.state_slot()?.take()
    }

    // ----- identity and addresses -----

    /// A `Send + Sync + Clone` handle to this connection, for other threads.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # use std::time::Duration;
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Reply later, from another thread.
    ///     let handle = conn.handle();
    ///     std::thread::spawn(move || {
    ///         std::thread::sleep(Duration::from_millis(10));
    ///         let _ = handle.async_write(&b"late hello\n"[..], |_| {});
    ///     });
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn handle(&self) -> ConnHandle {
        let engine = self.lp.engine.clone();
        match &self.backing {
            Backing::Stream { key, .. } => ConnHandle::new(
                ConnId {
                    loop_index: self.lp.loop_index,
                    slot: key.index,
                    generation: key.generation,
                },
                engine,
            ),
        }
    }

    /// A handle to the engine: its worker pool ([`EngineHandle::submit`]), stop,
    /// connection count.
    ///
    /// [`EngineHandle::submit`]: crate::EngineHandle::submit
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Hash on the worker pool, never on the loop; reply through a handle.
    ///     let data = conn.peek(usize::MAX).to_vec();
    ///     let len = data.len();
    ///     let handle = conn.handle();
    ///     let submitted = conn.engine().submit(move || {
    ///         let sum = data.iter().fold(0u32, |a, &b| a.wrapping_mul(31).wrapping_add(b.into()));
    ///         let _ = handle.async_write(format!("{sum:08x}\n"), |_| {});
    ///     });
    ///     match submitted {
    ///         Ok(()) => {
    ///             conn.discard(len);
    ///         }
    ///         // Never close here: the replies of its queued jobs would be
    ///         // lost. Keep the bytes and stop reading: when full, resume
    ///         // later; when stopping, the engine closes it after those replies.
    ///         Err(e) => {
    ///             log::debug!("{}: {e}", conn.id());
    ///             conn.pause_reading();
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn engine(&self) -> crate::EngineHandle {
        crate::EngineHandle {
            shared: self.lp.engine.clone(),
        }
    }

    /// Index of the loop that owns this connection.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let greeting = format!("served by loop {}\n", conn.loop_index());
    ///     let _ = conn.write(greeting.as_bytes());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn loop_index(&self) -> usize {
        self.lp.loop_index as usize
    }

    /// Index (in the order given to the builder) of the listener that
    /// accepted this connection; `None` for a
    /// dialled or enrolled connection.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// // An engine built with two `.listen(…)` calls: index 0 is the first.
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     match conn.listener_index() {
    ///         Some(0) => {} // the public port
    ///         Some(_) => {
    ///             let _ = conn.write(b"admin console\n");
    ///         }
    ///         None => {} // a connection this engine dialled or enrolled
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn listener_index(&self) -> Option<usize> {
        match &self.backing {
            Backing::Stream { .. } => self
                .entry()
                .and_then(|e| (e.listener != NO_LISTENER).then_some(usize::from(e.listener))),
        }
    }

    /// The peer's address.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     // Only local clients.
    ///     match conn.peer_addr().as_inet() {
    ///         Some(ip) if !ip.ip().is_loopback() => Action::Close,
    ///         _ => Action::None, // loopback, or a Unix-domain peer
    ///     }
    /// }
    /// # }
    /// ```
    pub fn peer_addr(&self) -> &SockAddr {
        match &self.backing {
            Backing::Stream { conns, key } => conns.get(*key).map_or(&UNKNOWN_PEER, |e| &e.peer),
        }
    }

    /// The PROXY protocol header this connection started with, on a
    /// listener added with
    /// [`listen_proxied`](crate::EngineBuilder::listen_proxied); then
    /// [`peer_addr`](Self::peer_addr) is the client it names (for a `LOCAL`
    /// header, such as a balancer's health check, the balancer itself).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     if let Some((header, balancer)) = conn.proxy_header() {
    ///         log::info!("{} via {balancer} (PROXY v{})", conn.peer_addr(), header.version);
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn proxy_header(&self) -> Option<(&crate::proxy_protocol::ProxyHeader, &SockAddr)> {
        match self.entry()?.proxy()? {
            crate::proxy_protocol::ProxyState::Received { header, balancer } => {
                Some((header, balancer))
            }
            crate::proxy_protocol::ProxyState::Awaiting { .. } => None,
        }
    }

    /// The socket's file descriptor number, for display (Redis's
    /// `CLIENT LIST` shows it) and diagnostics; the connection keeps owning
    /// it. `None` once closed.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     log::debug!("fd {:?} from {}", conn.raw_fd(), conn.peer_addr());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.fd().map(|fd| fd.as_raw_fd())
    }

    /// This side's address.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     if let Ok(local) = conn.local_addr() {
    ///         log::info!("{} connected to {local}", conn.peer_addr());
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn local_addr(&self) -> Result<SockAddr> {
        let fd = self.fd().ok_or_else(|| Error::ConnectionClosed)?;
        sys::socket::local_addr(fd).map_err(|e| Error::io("getsockname", e))
    }

    // ----- socket options -----

    /// The connection's socket, for its options — any option the OS has,
    /// through [`socket2`]: `TCP_NODELAY`, keep-alive, buffer sizes,
    /// `IP_TOS`, `SO_MARK`… Only for options: changing the blocking mode or shutting
    /// the socket down behind the loop's back breaks the connection.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # use std::time::Duration;
    /// use socket2::TcpKeepalive;
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///     let Ok(socket) = conn.socket() else { return Action::Close };
    ///     // Interactive traffic: small writes go out at once (errors on
    ///     // non-TCP connections, where the option does not exist).
    ///     let _ = socket.set_tcp_nodelay(true);
    ///     // Probe after 60 s of silence, every 10 s.
    ///     let probes = TcpKeepalive::new()
    ///         .with_time(Duration::from_secs(60))
    ///         .with_interval(Duration::from_secs(10));
    ///     let _ = socket.set_tcp_keepalive(&probes);
    ///     let _ = socket.set_recv_buffer_size(256 * 1024); // bulk uploads
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn socket(&self) -> Result<socket2::SockRef<'_>> {
        match &self.backing {
            Backing::Stream { conns, key } => conns
                .get(*key)
                .map(|e| socket2::SockRef::from(&e.fd))
                .ok_or(Error::ConnectionClosed),
        }
    }
}

/// The listener index of a dialled or enrolled connection.
pub(crate) const NO_LISTENER: u16 = u16::MAX;

/// Shown as the peer of a connection whose record is gone (never during its
/// callbacks, which keep it).
static UNKNOWN_PEER: SockAddr = SockAddr::Unix(None);

/// Sends one datagram; a full socket buffer drops it, as UDP may.
pub(crate) fn send_datagram(fd: BorrowedFd<'_>, data: &[u8], to: &SockAddr) -> Result<usize> {
    match sys::io::send_to(fd, data, to) {
        Ok(n) => Ok(n),
        Err(e) => Err(Error::io("sendto", e)),
    }
}

/// What a reborrowed [`Conn`] did that belongs to the `Conn` it came from.
pub(crate) struct Reborrowed<S> {
    /// How many bytes it left unread.
    unread: usize,
    side: Option<Box<SideEffects<S>>>,
    own_changed: bool,
    straight: bool,
}

impl<S> Conn<'_, S> {
    /// The same connection as a `Conn` of a shorter lifetime, which an
    /// adapter (`codec::Framed`) can own for one callback; hand what it did
    /// back with [`end_reborrow`](Self::end_reborrow) before the callback
    /// returns.
    pub(crate) fn reborrow(&mut self) -> Conn<'_, S> {
        let backing = match &mut self.backing {
            Backing::Stream { conns, key } => Backing::Stream {
                conns: &mut **conns,
                key: *key,
            },
        };
        Conn {
            unread: self.unread,
            backing,
            lp: self.lp,
            side: self.side.take(),
            own_changed: false,
            straight: self.straight,
        }
    }

    /// Ends a [`reborrow`](Self::reborrow): what it consumed, asked of the
    /// loop.
    pub(crate) fn into_reborrowed(self) -> Reborrowed<S> {
        Reborrowed {
            unread: self.unread.len(),
            side: self.side,
            own_changed: self.own_changed,
            straight: self.straight,
        }
    }

    /// Takes back what a reborrow of this `Conn` did.
    pub(crate) fn end_reborrow(&mut self, back: Reborrowed<S>) {
        // The reborrow began with this `Conn`'s unread bytes and only
        // consumed more of them: it left a tail of them.
        let more = self.unread.len().saturating_sub(back.unread);
        self.unread = self.unread.get(more..).unwrap_or_default();
        self.side = back.side;
        self.own_changed |= back.own_changed;
        self.straight &= back.straight;
    }

    /// The connection's slot on its loop. (Cheaper than `id()`, which
    /// builds a handle.)
    pub(crate) fn slot(&self) -> u32 {
        let Backing::Stream { key, .. } = &self.backing;
        key.index
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
