//! The I/O driver: the one boundary between an event loop's core and the
//! kernel interface that moves its bytes. The core (turn, settle, close,
//! timers, callbacks) calls only through [`Driver`]; it never holds a
//! poller, an event buffer or a receive buffer of its own.
//!
//! Two kinds of driver are designed for; the readiness one is built:
//!
//! * **Readiness** (epoll, this file): the kernel says a descriptor *may*
//!   be read or written; the loop then receives or sends when it chooses.
//! * **Completion** (io_uring, a later issue): the loop submits receives
//!   and sends ahead; the kernel reports them *done*, with the bytes.
//!
//! # The contract
//!
//! **Registration.** A descriptor is registered under a [`LoopToken`] with
//! an [`Interest`]; every event about it carries that token. The loop
//! deregisters a descriptor before closing it. A registration survives
//! `reregister`, which is how a level-triggered connection arms and disarms
//! writing as its queue fills and empties. A completion driver takes the
//! same calls as "keep a receive armed / don't" (multishot receive) and
//! ignores write interest (it sends when the loop hands it bytes).
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
//!   With completion every write is queued, and the driver submits the
//!   queue's head chunks; while a send is in flight those chunks belong to
//!   the kernel and must stay where they are (not moved, coalesced into or
//!   freed) until the send completes with its byte count, after which the
//!   loop consumes that many bytes from the queue. Closing a connection with
//!   a send in flight cancels it and frees the chunks only on the
//!   cancellation's completion.
//!
//! **What the loop may assume.** Events of one turn are delivered in one
//! batch, after `wait` returns; the driver never calls back into the loop;
//! no byte is delivered twice or out of order for one connection; `wait`
//! sleeps no longer than it is told (the loop's timers depend on it); a
//! driver never blocks anywhere else.
//!
//! This file must never interpret tokens beyond carrying them, nor keep
//! state about connections. Still outside the seam: the TLS read path and
//! the PROXY header read (they read the socket themselves, into the loop's
//! scratch buffer) and UDP datagrams; they move behind it with the
//! completion driver.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::token::LoopToken;
use crate::actors::Doorbell;
use crate::sys::io as sysio;
use crate::sys::poller::{Event, Events, Interest, Poller};

/// Fewest and most events one wait collects (the buffer grows when full).
const MIN_EVENTS: usize = 128;
const MAX_EVENTS: usize = 4096;

/// Bytes a receive put in driver-owned memory, until
/// [`Driver::release`]. Not `Clone`: each is released exactly once.
#[derive(Debug)]
pub(crate) struct Received {
    len: usize,
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

    /// The receive filled the driver's buffer: more may be waiting.
    #[inline]
    pub(crate) fn filled(&self, driver: &Driver) -> bool {
        self.len == driver.recv_buf.len()
    }
}

/// The readiness (epoll) driver.
pub(crate) struct Driver {
    poller: Poller,
    events: Events,
    /// Where receives land (one per loop: a receive is consumed by its
    /// callback before the next one is made).
    recv_buf: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(recv_buffer: usize) -> io::Result<Driver> {
        Ok(Driver {
            poller: Poller::new()?,
            events: Events::with_capacity(MIN_EVENTS),
            recv_buf: vec![0; recv_buffer.max(1)],
        })
    }

    /// The poller, for the listeners' own registration
    /// ([`crate::accept::Listeners`]).
    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn register(
        &self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.poller.add(fd, token.encode(), interest)
    }

    pub(crate) fn register_doorbell(&self, doorbell: &Doorbell) -> io::Result<()> {
        self.poller
            .add_doorbell(doorbell, LoopToken::Doorbell.encode())
    }

    pub(crate) fn reregister(
        &self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.poller.modify(fd, token.encode(), interest)
    }

    /// Before the descriptor closes (the kernel would drop it silently on
    /// the last close, but a duplicate would keep it registered).
    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>) {
        let _ = self.poller.delete(fd);
    }

    /// Waits for events (at most `timeout`; `None`: until one comes) and
    /// appends them to `ready`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.poller.wait(&mut self.events, timeout)?;
        ready.extend(self.events.iter());
        if ready.len() == self.events.capacity() && ready.len() < MAX_EVENTS {
            // A full batch: collect more per wait from now on.
            self.events = Events::with_capacity(ready.len() * 2);
        }
        Ok(())
    }

    /// Receives what the socket has now, into driver-owned memory.
    /// `WouldBlock`: nothing now.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<Received> {
        let len = sysio::read(fd, &mut self.recv_buf)?;
        Ok(Received { len })
    }

    /// The bytes of `got`.
    #[inline]
    pub(crate) fn bytes(&self, got: &Received) -> &[u8] {
        &self.recv_buf[..got.len]
    }

    /// Hands `got`'s memory back (a readiness driver reuses its buffer).
    #[inline]
    pub(crate) fn release(&mut self, got: Received) {
        let Received { len: _ } = got;
    }
}
