//! The I/O driver: the one boundary between an event loop's core and the
//! kernel interface that moves its bytes. The core (turn, settle, close,
//! timers, callbacks) calls only through [`Driver`]; it never holds a
//! poller, an event buffer or a receive buffer of its own.
//!
//! Two drivers, chosen per engine ([`crate::Backend`]):
//!
//! * **Readiness** (epoll, `epoll.rs`): the kernel says a descriptor *may*
//!   be read or written; the loop then receives or sends when it chooses.
//! * **Completion** (io_uring, `uring.rs`): receives are submitted ahead
//!   (a multishot receive per plain stream connection, into a provided
//!   buffer ring); the kernel reports them *done*, with the bytes. What
//!   still needs readiness there (UDP, Unix connects, PROXY reads)
//!   goes through an epoll instance the ring polls; the loop's own
//!   listeners accept through the ring (multishot accept), TCP connects
//!   are ring operations; the plain
//!   connections' sends are submitted through the ring.
//!
//! # The contract
//!
//! **Registration.** A descriptor is registered under a [`LoopToken`] with
//! an [`Interest`]; every event about it carries that token. The loop
//! deregisters a descriptor before closing it. A registration survives
//! `reregister`, which is how a level-triggered connection arms and disarms
//! writing as its queue fills and empties. The completion driver takes the
//! read half of the same calls as "keep the multishot receive armed /
//! pause it" and ignores the write half for connections whose sends go
//! through the ring (their completions say when the queue moved).
//!
//! **What an event means.** A readiness event is a hint, never a promise:
//! a receive after it may still say `WouldBlock`, which the loop treats as
//! "nothing now". `read_closed` means the peer ended its side (a receive
//! returns 0 once the buffered bytes are read); `hangup` means both
//! directions are gone; `error` means a socket error is pending. Events for
//! a token whose connection closed earlier in the same turn are stale and
//! are dropped by the loop (the slab key's generation tells).
//!
//! **Who owns which buffer when.**
//! * Receives land in memory the *driver* owns, not the loop: the loop
//!   asks [`Driver::recv`] and gets a [`Received`] naming the bytes; it reads
//!   them through [`Driver::bytes`] during the one callback that consumes
//!   them, copies whatever the handler leaves unread into the connection's
//!   own `inbound` buffer, and hands the `Received` back with
//!   [`Driver::release`] before the next receive. The epoll driver has one
//!   buffer per loop, filled at the moment the loop calls `recv`; a
//!   completion driver hands out the provided buffer the kernel picked
//!   (a buffer-ring id), at the moment the completion arrives, and
//!   `release` returns it to the ring. So the core must never assume that
//!   input sits in one shared buffer, nor that it arrives when the loop
//!   asks: it only ever sees `Received`s, one at a time.
//! * Sends: bytes a handler writes are the connection's. With readiness the
//!   connection's write path offers them to the socket at once and queues
//!   what it did not take in its `OutboundQueue` (flushed on writability).
//!   With completion (a connection registered with
//!   [`Driver::register_stream`]) every write is queued, and settling the
//!   connection hands the queue to [`Driver::submit_sends`], which moves
//!   its oldest chunk (lent, not copied) into the ring, which owns it until
//!   the send's final completion and then recycles it through the loop's
//!   buffer pool; the queue keeps counting the bytes until the completion's
//!   writable event, when the loop takes [`Driver::take_sent`] bytes off it. Closing a connection with a send in
//!   flight cancels it (as epoll's best-effort flush, what the kernel has
//!   not taken is lost); with none in flight the loop writes the rest
//!   directly, as on epoll.
//!
//! **What the loop may assume.** Events of one turn are delivered in one
//! batch, after `wait` returns; the driver never calls back into the loop;
//! no byte is delivered twice or out of order for one connection; `wait`
//! sleeps no longer than it is told (the loop's timers depend on it); a
//! driver never blocks anywhere else.
//!
//! **Which registration.** [`Driver::register_stream`] is for a plain
//! stream connection whose input the loop only ever takes through
//! [`Driver::recv`]: the completion driver reads it through the ring.
//! A TLS connection is registered the same way: the loop takes its
//! ciphertext through [`Driver::recv`] too (on io_uring; see
//! `event_loop/tls_ring.rs`). [`Driver::register`] is for everything the
//! loop reads itself (PROXY headers, and a TLS connection's ciphertext
//! after one, datagrams) or waits on (connects): readiness on both
//! drivers. A connection stays with the registration it
//! was adopted with.
//!
//! **Edge-triggered mode** only exists on the readiness driver: a multishot
//! receive reports every arrival; the loop turns the option off on
//! io_uring ([`Driver::is_readiness`]).
//!
//! This module must never interpret tokens beyond carrying them, nor keep
//! state about connections beyond what a completion in flight needs. Still
//! outside the seam: the TLS read path on epoll and the PROXY header read
//! (they read the socket themselves, into the loop's scratch buffer) and UDP
//! datagrams, all readiness-driven on both drivers.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use super::token::LoopToken;
use crate::accept::ListenerPoll;
use crate::actors::Doorbell;
use crate::addr::SockAddr;
use crate::backend::Backend;
use crate::buffer_pool::{IdleTurn, IDLE_RELEASE};
use crate::sys::io as sysio;
use crate::sys::poller::{Event, Interest};
use crate::sys::uring::bufring::RecvBuf;

mod epoll;
mod stash;
mod uring;

use epoll::Readiness;
use uring::Completion;

/// The loop's own listeners (reuseport mode, or one loop without an
/// acceptor): readiness and `accept4` on epoll; on io_uring a multishot
/// accept per listener, whose connections wait in the driver until the
/// loop's accept path ([`crate::accept::Listeners`], with its limits and
/// pauses) takes them.
impl ListenerPoll for Driver {
    fn add_listener(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let on_epoll = self.listeners_on_epoll;
        match &mut self.kind {
            Kind::Epoll(r) => r.poller_mut().add_listener(fd, token),
            Kind::Uring(c) if on_epoll => c.readiness_mut().poller_mut().add_listener(fd, token),
            Kind::Uring(c) => c.add_listener(fd, token),
        }
    }

    fn listen(&mut self, fd: BorrowedFd<'_>, token: u64, on: bool) -> io::Result<()> {
        let on_epoll = self.listeners_on_epoll;
        match &mut self.kind {
            Kind::Epoll(r) => r.poller_mut().listen(fd, token, on),
            Kind::Uring(c) if on_epoll => c.readiness_mut().poller_mut().listen(fd, token, on),
            Kind::Uring(c) => c.listen(fd, on),
        }
    }

    fn remove_listener(&mut self, fd: BorrowedFd<'_>) {
        let on_epoll = self.listeners_on_epoll;
        match &mut self.kind {
            Kind::Epoll(r) => r.poller_mut().remove_listener(fd),
            Kind::Uring(c) if on_epoll => c.readiness_mut().poller_mut().remove_listener(fd),
            Kind::Uring(c) => c.remove_listener(fd),
        }
    }

    fn accept_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, SockAddr)>> {
        let on_epoll = self.listeners_on_epoll;
        match &mut self.kind {
            Kind::Epoll(r) => r.poller_mut().accept_from(fd),
            Kind::Uring(c) if on_epoll => c.readiness_mut().poller_mut().accept_from(fd),
            Kind::Uring(c) => c.accept_from(fd),
        }
    }
}

/// Bytes a receive put in driver-owned memory, until
/// [`Driver::release`]. Not `Clone`: each is released exactly once.
#[derive(Debug)]
pub(crate) struct Received {
    len: usize,
    /// A provided buffer of the ring (completion driver); `None`: the
    /// driver's own buffer.
    buf: Option<RecvBuf>,
}

impl Received {
    /// How many bytes arrived (0: the peer ended its side).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The peer ended its side (nothing arrived).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, to change in place, when they are in a provided buffer
    /// of the ring (owned by this `Received`, not by the driver): a TLS
    /// connection's records are decrypted where they landed.
    pub(crate) fn owned_bytes_mut(&mut self) -> Option<&mut [u8]> {
        self.buf.as_mut().map(RecvBuf::as_mut_slice)
    }

    /// The receive filled the driver's buffer: more may be waiting. (A
    /// completion is never followed by a readiness edge: always `false`.)
    #[inline]
    pub(crate) fn filled(&self, driver: &Driver) -> bool {
        self.filled_as::<true>(driver)
    }

    /// [`filled`](Self::filled) in a copy of a path made for one driver
    /// (see [`Driver::recv_as`]).
    #[inline(always)]
    pub(crate) fn filled_as<const COMPLETES: bool>(&self, driver: &Driver) -> bool {
        self.lent::<COMPLETES>().is_none() && self.len == driver.recv_buf.len()
    }

    /// The provided buffer of the ring holding the bytes, if they are in
    /// one; with `COMPLETES` false (the readiness driver's copy of a path,
    /// see [`Driver::recv_as`]) never, known without looking.
    #[inline(always)]
    fn lent<const COMPLETES: bool>(&self) -> Option<&RecvBuf> {
        debug_assert!(COMPLETES || self.buf.is_none());
        if COMPLETES {
            self.buf.as_ref()
        } else {
            None
        }
    }
}

enum Kind {
    Epoll(Readiness),
    Uring(Box<Completion>),
}

/// The loop's I/O driver: epoll or io_uring, behind one set of calls.
pub(crate) struct Driver {
    kind: Kind,
    /// Where readiness receives land (one per loop: a receive is consumed
    /// by its callback before the next one is made).
    recv_buf: Vec<u8>,
    /// Listeners are watched with epoll even on io_uring (see
    /// [`Driver::keep_listeners_on_epoll`]).
    listeners_on_epoll: bool,
}

impl Driver {
    /// The driver for `backend` (`Auto` is resolved when the engine is
    /// built; here it means epoll). Made on the loop's own thread.
    pub(crate) fn new(backend: Backend, recv_buffer: usize) -> io::Result<Driver> {
        let kind = match backend {
            Backend::IoUring => Kind::Uring(Box::new(Completion::new(recv_buffer)?)),
            _ => Kind::Epoll(Readiness::new()?),
        };
        Ok(Driver {
            kind,
            recv_buf: vec![0; recv_buffer.max(1)],
            listeners_on_epoll: false,
        })
    }

    /// Listeners registered from now on are watched with epoll and
    /// accepted from with `accept4`, also on io_uring: for an engine whose
    /// listeners may go to a new process (an upgrade), where a connection
    /// must stay in the shared backlog until one of the processes admits
    /// it, never be accepted by a ring that is about to stop accepting.
    pub(crate) fn keep_listeners_on_epoll(&mut self) {
        self.listeners_on_epoll = true;
    }

    /// A readiness driver (edge-triggered mode has a meaning).
    pub(crate) fn is_readiness(&self) -> bool {
        matches!(self.kind, Kind::Epoll(_))
    }

    fn readiness(&self) -> &Readiness {
        match &self.kind {
            Kind::Epoll(r) => r,
            Kind::Uring(c) => c.readiness(),
        }
    }

    /// Readiness registration (see "Which registration").
    pub(crate) fn register(
        &self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.readiness().register(fd, token, interest)
    }

    /// A plain stream connection (see "Which registration"). `Ok(true)`:
    /// its input and output complete through the ring (the loop queues
    /// every write and hands the queue over with [`Driver::submit_sends`]).
    pub(crate) fn register_stream(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<bool> {
        match &mut self.kind {
            Kind::Epoll(r) => r.register(fd, token, interest).map(|()| false),
            Kind::Uring(c) => c.register_stream(fd, token, interest).map(|()| true),
        }
    }

    /// Hands an attached connection's oldest queued bytes to the ring
    /// (lent: the queue counts them until [`Driver::take_sent`] says they
    /// went), unless a send is already in flight. `Ok(true)`: a send
    /// started (the write-timeout clock starts with it).
    pub(crate) fn submit_sends(
        &mut self,
        fd: BorrowedFd<'_>,
        queue: &mut crate::buffer::OutboundQueue,
    ) -> io::Result<bool> {
        match &mut self.kind {
            Kind::Epoll(_) => Ok(false),
            Kind::Uring(c) => c.submit_sends(fd, queue),
        }
    }

    /// Bytes of an attached connection's queue the ring has sent since the
    /// last call: the loop consumes them from the queue.
    pub(crate) fn take_sent(&mut self, fd: BorrowedFd<'_>) -> usize {
        match &mut self.kind {
            Kind::Epoll(_) => 0,
            Kind::Uring(c) => c.take_sent(fd),
        }
    }

    /// A send of an attached connection's queue is in the ring.
    pub(crate) fn send_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        match &self.kind {
            Kind::Epoll(_) => false,
            Kind::Uring(c) => c.send_in_flight(fd),
        }
    }

    pub(crate) fn register_doorbell(&mut self, doorbell: &Doorbell) -> io::Result<()> {
        match &mut self.kind {
            Kind::Epoll(r) => r.register_doorbell(doorbell),
            Kind::Uring(c) => c.register_doorbell(doorbell),
        }
    }

    pub(crate) fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        match &mut self.kind {
            Kind::Epoll(r) => r.reregister(fd, token, interest),
            Kind::Uring(c) => {
                if c.reregister(fd, token, interest)? {
                    return Ok(());
                }
                c.readiness().reregister(fd, token, interest)
            }
        }
    }

    /// Before the descriptor closes (the kernel would drop it silently on
    /// the last close, but a duplicate would keep it registered; and an
    /// attached connection's receive must be cancelled). The loop may close
    /// the descriptor right after.
    pub(crate) fn deregister(&mut self, fd: BorrowedFd<'_>) {
        match &mut self.kind {
            Kind::Epoll(r) => r.deregister(fd),
            Kind::Uring(c) => {
                if !c.deregister(fd) {
                    c.readiness().deregister(fd);
                }
            }
        }
    }

    /// Starts connecting TCP socket `fd` (made with `socket::tcp_socket`)
    /// to `addr` through the ring. `Ok(false)`: this driver does not
    /// (epoll): the caller connects and waits for writability itself. Its
    /// end is a writable event for `token`; then [`Driver::connect_result`].
    pub(crate) fn connect(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        addr: std::net::SocketAddr,
    ) -> io::Result<bool> {
        match &mut self.kind {
            Kind::Epoll(_) => Ok(false),
            Kind::Uring(c) => c.connect(fd, token, addr).map(|()| true),
        }
    }

    /// Whether TCP connects go through [`Driver::connect`].
    pub(crate) fn connects(&self) -> bool {
        matches!(self.kind, Kind::Uring(_))
    }

    /// Why the last send through the ring on `fd` failed, once its error
    /// event came (`None` on epoll, or for a socket whose sends do not go
    /// through the ring: ask `SO_ERROR`).
    pub(crate) fn send_error(&mut self, fd: BorrowedFd<'_>) -> Option<io::Error> {
        match &mut self.kind {
            Kind::Epoll(_) => None,
            Kind::Uring(c) => c.send_error(fd),
        }
    }

    /// The outcome of a connect made with [`Driver::connect`], once its
    /// writable event came (`None` for any other socket: ask `SO_ERROR`).
    pub(crate) fn connect_result(&mut self, fd: BorrowedFd<'_>) -> Option<io::Result<()>> {
        match &mut self.kind {
            Kind::Epoll(_) => None,
            Kind::Uring(c) => c.connect_result(fd),
        }
    }

    /// Drops input received for `fd` that the loop has not taken yet (the
    /// completion driver's stash; on epoll it is still in the socket, where
    /// the caller reads and discards it). A close with unread input resets
    /// the connection on both drivers; after this it ends the stream.
    pub(crate) fn discard_unread(&mut self, fd: BorrowedFd<'_>) {
        if let Kind::Uring(c) = &mut self.kind {
            c.discard_unread(fd);
        }
    }

    /// Waits for events (at most `timeout`; `None`: until one comes) and
    /// appends them to `ready`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        // An idle loop gives its pooled send buffers back (see buffer_pool).
        let timeout = match crate::buffer_pool::idle_turn() {
            IdleTurn::Empty => timeout,
            IdleTurn::Keeps => Some(timeout.map_or(IDLE_RELEASE, |t| t.min(IDLE_RELEASE))),
            IdleTurn::Released(_) => {
                // To the system, not only to the allocator's free lists.
                crate::sys::memory::release_free_memory();
                timeout
            }
        };
        match &mut self.kind {
            Kind::Epoll(r) => r.wait(ready, timeout),
            Kind::Uring(c) => c.wait(ready, timeout),
        }
    }

    /// Receives what the socket has now, into driver-owned memory (or, for
    /// an attached connection, the next completion the ring delivered).
    /// `WouldBlock`: nothing now.
    #[inline(always)]
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<Received> {
        if self.completes() {
            self.recv_as::<true>(fd)
        } else {
            self.recv_as::<false>(fd)
        }
    }

    /// Whether this is the completion driver (io_uring): what
    /// [`recv_as`](Self::recv_as) must be told.
    #[inline(always)]
    pub(crate) fn completes(&self) -> bool {
        matches!(self.kind, Kind::Uring(_))
    }

    /// [`recv`](Self::recv) for a caller that has asked
    /// [`completes`](Self::completes) once and made a copy of its path per
    /// answer (`event_loop/fast.rs`): with `COMPLETES` false, what it
    /// returns is a length alone, which the caller's copy keeps in
    /// registers (with both drivers' receives merged into one value, it
    /// went through the stack).
    #[inline(always)]
    pub(crate) fn recv_as<const COMPLETES: bool>(
        &mut self,
        fd: BorrowedFd<'_>,
    ) -> io::Result<Received> {
        debug_assert_eq!(COMPLETES, self.completes());
        // The readiness driver's receive is the hot one: inline it, and
        // keep the completion driver's hand-over out of line.
        if COMPLETES {
            if let Some(taken) = self.take_completed(fd) {
                return taken;
            }
        }
        // recvfrom(2), not read(2): a connection is always a socket (its
        // writes are sendto(2) already), and read(2) also crosses the file
        // layer (vfs_read, rw_verify_area, sock_read_iter): 1.5 % of the
        // HTTP example's CPU not pipelined (perf, ksys_read 15.3 % against
        // tokio's __sys_recvfrom 13.8 %).
        let len = sysio::recv(fd, &mut self.recv_buf)?;
        Ok(Received { len, buf: None })
    }

    /// The completion driver's receive: what a completion delivered for
    /// `fd`, if one did (`None`: read it as the readiness driver would).
    #[cold]
    #[inline(never)]
    fn take_completed(&mut self, fd: BorrowedFd<'_>) -> Option<io::Result<Received>> {
        let Kind::Uring(c) = &mut self.kind else {
            return None;
        };
        let taken = c.take(fd)?;
        Some(taken.map(|buf| Received {
            len: buf.as_ref().map_or(0, |b| b.as_slice().len()),
            buf,
        }))
    }

    /// The bytes of `got`.
    #[inline(always)]
    pub(crate) fn bytes<'a>(&'a self, got: &'a Received) -> &'a [u8] {
        self.bytes_as::<true>(got)
    }

    /// [`bytes`](Self::bytes) in a copy of a path made for one driver (see
    /// [`recv_as`](Self::recv_as)).
    #[inline(always)]
    pub(crate) fn bytes_as<'a, const COMPLETES: bool>(&'a self, got: &'a Received) -> &'a [u8] {
        match got.lent::<COMPLETES>() {
            None => &self.recv_buf[..got.len],
            Some(buf) => buf.as_slice(),
        }
    }

    /// `got`'s bytes may be offered to the callback's writes: they are in
    /// a provided buffer of the ring, which [`Driver::send_received`] can
    /// send as it is (unless `RINGLOOP_URING_FORWARD=0` turned that off).
    #[inline(always)]
    pub(crate) fn offers(&self, got: &Received) -> bool {
        self.offers_as::<true>(got)
    }

    /// [`offers`](Self::offers) in a copy of a path made for one driver
    /// (see [`recv_as`](Self::recv_as)).
    #[inline(always)]
    pub(crate) fn offers_as<const COMPLETES: bool>(&self, got: &Received) -> bool {
        got.lent::<COMPLETES>().is_some() && matches!(&self.kind, Kind::Uring(c) if c.forwards())
    }

    /// Sends `claim`'s part of `got` on the attached connection `fd` from
    /// the provided buffer itself (see `event_loop/forward.rs`); the ring
    /// owns the buffer until the send completes. Only the completion
    /// driver offers its buffers, so only it is asked.
    pub(crate) fn send_received(
        &mut self,
        fd: BorrowedFd<'_>,
        got: Received,
        claim: super::forward::Claim,
    ) -> io::Result<()> {
        match (&mut self.kind, got.buf) {
            (Kind::Uring(c), Some(mut buf)) => {
                buf.advance(claim.offset);
                buf.truncate(claim.len);
                c.send_received(fd, buf)
            }
            _ => Err(io::Error::other(
                "a claimed input was not a provided buffer",
            )),
        }
    }

    /// Hands `got`'s memory back (a readiness receive reuses the loop's
    /// buffer; a provided buffer goes back to the kernel).
    #[inline(always)]
    pub(crate) fn release(&mut self, got: Received) {
        self.release_as::<true>(got);
    }

    /// [`release`](Self::release) in a copy of a path made for one driver
    /// (see [`recv_as`](Self::recv_as)): the readiness driver's has
    /// nothing to give back.
    #[inline(always)]
    pub(crate) fn release_as<const COMPLETES: bool>(&mut self, got: Received) {
        let Received { len: _, buf } = got;
        if !COMPLETES {
            debug_assert!(buf.is_none());
            std::mem::forget(buf); // `None`: no drop call
            return;
        }
        if let Some(buf) = buf {
            // Out of line: only the completion driver lends buffers, and
            // the readiness driver's path then skips a drop call.
            return_buffer(buf);
        }
    }
}

/// Gives a provided buffer back to its ring (see [`Driver::release`]).
#[cold]
#[inline(never)]
fn return_buffer(buf: RecvBuf) {
    drop(buf);
}
