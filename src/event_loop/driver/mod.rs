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
//!   still needs readiness there (listeners, UDP, connects, TLS and PROXY
//!   reads) goes through an epoll instance the ring polls; the same
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
//!   connection hands the queue to [`Driver::submit_sends`], which copies
//!   it into a buffer the ring owns until the send's final completion (so
//!   the queue may grow or move meanwhile); the queue keeps the bytes, and
//!   counts them, until the completion's writable event, when the loop takes
//!   [`Driver::take_sent`] bytes off it. Closing a connection with a send in
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
//! [`Driver::register`] is for everything the loop reads itself (TLS
//! ciphertext, PROXY headers, datagrams, listeners) or waits on (connects):
//! readiness on both drivers. A connection stays with the registration it
//! was adopted with.
//!
//! **Edge-triggered mode** only exists on the readiness driver: a multishot
//! receive reports every arrival; the loop turns the option off on
//! io_uring ([`Driver::is_readiness`]).
//!
//! This module must never interpret tokens beyond carrying them, nor keep
//! state about connections beyond what a completion in flight needs. Still
//! outside the seam: the TLS read path and the PROXY header read (they read
//! the socket themselves, into the loop's scratch buffer) and UDP datagrams,
//! all readiness-driven on both drivers.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::token::LoopToken;
use crate::actors::Doorbell;
use crate::backend::Backend;
use crate::sys::io as sysio;
use crate::sys::poller::{Event, Interest, Poller};
use crate::sys::uring::bufring::RecvBuf;

mod epoll;
mod uring;

use epoll::Readiness;
use uring::Completion;

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

    /// The receive filled the driver's buffer: more may be waiting. (A
    /// completion is never followed by a readiness edge: always `false`.)
    #[inline]
    pub(crate) fn filled(&self, driver: &Driver) -> bool {
        self.buf.is_none() && self.len == driver.recv_buf.len()
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
        })
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

    /// The poller, for the listeners' own registration
    /// ([`crate::accept::Listeners`]).
    pub(crate) fn poller(&self) -> &Poller {
        match &self.kind {
            Kind::Epoll(r) => r.poller(),
            Kind::Uring(c) => c.poller(),
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

    /// Hands an attached connection's queue to the ring (a copy: the queue
    /// keeps the bytes, and counts them, until [`Driver::take_sent`] says
    /// they went), unless a send is already in flight. `Ok(true)`: a send
    /// started (the write-timeout clock starts with it).
    pub(crate) fn submit_sends(
        &mut self,
        fd: BorrowedFd<'_>,
        queue: &crate::buffer::OutboundQueue,
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

    /// Waits for events (at most `timeout`; `None`: until one comes) and
    /// appends them to `ready`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
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
        // The readiness driver's receive is the hot one: inline it, and
        // keep the completion driver's hand-over out of line.
        if matches!(self.kind, Kind::Uring(_)) {
            if let Some(taken) = self.take_completed(fd) {
                return taken;
            }
        }
        let len = sysio::read(fd, &mut self.recv_buf)?;
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
        match &got.buf {
            None => &self.recv_buf[..got.len],
            Some(buf) => buf.as_slice(),
        }
    }

    /// Hands `got`'s memory back (a readiness receive reuses the loop's
    /// buffer; a provided buffer goes back to the kernel).
    #[inline(always)]
    pub(crate) fn release(&mut self, got: Received) {
        let Received { len: _, buf } = got;
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
