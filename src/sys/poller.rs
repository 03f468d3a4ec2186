//! Readiness notification: one epoll instance per [`Poller`].
//!
//! Owns the epoll descriptor, the translation between [`Interest`]/[`Event`]
//! and epoll flags, and the reusable [`Events`] buffer. It never owns or
//! closes the descriptors registered with it (the caller must `delete` a
//! descriptor before closing it, or the kernel drops it silently on the last
//! close), never interprets tokens, and never sleeps longer than `wait` was
//! told to.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// The caller's name for a registered descriptor, handed back in every
/// [`Event`] about it.
pub(crate) type Token = u64;

/// What a registration waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    /// Wake on input (and on the peer shutting down its write side).
    pub(crate) readable: bool,
    /// Wake when output would not block.
    pub(crate) writable: bool,
    /// Edge-triggered: report a readiness once per change rather than for as
    /// long as it lasts. The caller must then drain until `WouldBlock`.
    pub(crate) edge: bool,
}

impl Interest {
    /// Level-triggered input.
    pub(crate) const READABLE: Interest = Interest {
        readable: true,
        writable: false,
        edge: false,
    };
    /// Level-triggered output.
    pub(crate) const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
        edge: false,
    };
    /// Level-triggered input and output.
    pub(crate) const BOTH: Interest = Interest {
        readable: true,
        writable: true,
        edge: false,
    };
    /// Nothing: the descriptor stays registered and reports only errors and
    /// hang-ups (a paused listener).
    pub(crate) const NONE: Interest = Interest {
        readable: false,
        writable: false,
        edge: false,
    };

    /// The same interest, edge-triggered.
    pub(crate) const fn edge_triggered(self) -> Interest {
        Interest { edge: true, ..self }
    }

    fn to_flags(self) -> EpollFlags {
        let mut flags = EpollFlags::empty();
        if self.readable {
            flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        }
        if self.writable {
            flags |= EpollFlags::EPOLLOUT;
        }
        if self.edge {
            flags |= EpollFlags::EPOLLET;
        }
        flags
    }
}

/// An epoll instance (created close-on-exec).
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: Epoll,
}

impl Poller {
    /// Creates an epoll instance.
    pub(crate) fn new() -> io::Result<Poller> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Poller { epoll })
    }

    /// Registers `fd` under `token`. Registering a descriptor twice is
    /// `EEXIST`.
    pub(crate) fn add(
        &self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(interest.to_flags(), token))?;
        Ok(())
    }

    /// Registers a mailbox's doorbell for reading: edge-triggered when it is
    /// an eventfd (every ring is a new edge, so it is never drained),
    /// level-triggered when it is a pipe (drained each time it fires).
    pub(crate) fn add_doorbell(
        &self,
        doorbell: &crate::actors::Doorbell,
        token: Token,
    ) -> io::Result<()> {
        let interest = if doorbell.needs_drain() {
            Interest::READABLE
        } else {
            Interest::READABLE.edge_triggered()
        };
        self.add(doorbell.as_fd(), token, interest)
    }

    /// Replaces the token and interest of a registered `fd` (`ENOENT` if it
    /// is not registered). With an edge-triggered interest this also re-arms
    /// the edge: a readiness that is already present is reported again.
    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let mut event = EpollEvent::new(interest.to_flags(), token);
        self.epoll.modify(fd, &mut event)?;
        Ok(())
    }

    /// Deregisters `fd` (`ENOENT` if it is not registered).
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.epoll.delete(fd)?;
        Ok(())
    }

    /// Waits for readiness and fills `events`, returning how many arrived.
    ///
    /// `None` blocks until something is ready; `Some(Duration::ZERO)` only
    /// polls. Other timeouts are rounded up to whole milliseconds (so a
    /// sub-millisecond timeout sleeps 1 ms instead of spinning) and capped at
    /// `i32::MAX` ms; the caller re-waits if it wanted longer. A wait
    /// interrupted by a signal returns `Ok(0)`.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.len = 0;
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = ceil_millis(t).min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            }
        };
        match self.epoll.wait(&mut events.buf, timeout) {
            Ok(n) => {
                events.len = n;
                Ok(n)
            }
            Err(Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

/// `t` in milliseconds, rounded up.
fn ceil_millis(t: Duration) -> u128 {
    let nanos = t.as_nanos();
    nanos.div_ceil(1_000_000)
}

/// A reusable buffer for the events of one [`Poller::wait`].
pub(crate) struct Events {
    buf: Vec<EpollEvent>,
    len: usize,
}

impl Events {
    /// A buffer for up to `n` events per wait (at least 1: epoll refuses a
    /// zero-sized buffer).
    pub(crate) fn with_capacity(n: usize) -> Events {
        // epoll_wait takes the count as a C int.
        let n = n.clamp(1, i32::MAX as usize);
        Events {
            buf: vec![EpollEvent::empty(); n],
            len: 0,
        }
    }

    /// How many events one wait can return.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    #[cfg(test)] // used by this layer's tests only
    /// How many events the last wait returned.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)] // used by this layer's tests only
    /// Whether the last wait returned nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events of the last wait.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(Event::from_epoll)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    /// The token the descriptor was registered under.
    pub(crate) token: Token,
    /// Input is available (`EPOLLIN` or `EPOLLPRI`).
    pub(crate) readable: bool,
    /// Output would not block (`EPOLLOUT`).
    pub(crate) writable: bool,
    /// The peer will send nothing more (`EPOLLRDHUP` or `EPOLLHUP`); reads
    /// drain what is buffered and then return 0.
    pub(crate) read_closed: bool,
    /// Both directions are closed (`EPOLLHUP`).
    pub(crate) hangup: bool,
    /// An error is pending (`EPOLLERR`); fetch it with `socket::take_error`.
    pub(crate) error: bool,
}

impl Event {
    fn from_epoll(raw: &EpollEvent) -> Event {
        let flags = raw.events();
        Event {
            token: raw.data(),
            readable: flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI),
            writable: flags.contains(EpollFlags::EPOLLOUT),
            read_closed: flags.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP),
            hangup: flags.contains(EpollFlags::EPOLLHUP),
            error: flags.contains(EpollFlags::EPOLLERR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::io as sysio;
    use crate::sys::testutil::{tcp_pair, BOUND};
    use std::time::Instant;

    /// Waits (bounded) until an event for `token` arrives and returns it.
    fn wait_for(poller: &Poller, token: Token) -> Event {
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if let Some(ev) = events.iter().find(|e| e.token == token) {
                return ev;
            }
        }
        panic!("no event for token {token} within {BOUND:?}");
    }

    #[test]
    fn wait_zero_and_timeout_return_nothing_when_idle() {
        let poller = Poller::new().unwrap();
        let mut events = Events::with_capacity(4);
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        assert!(events.is_empty());
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::from_millis(10)))
                .unwrap(),
            0
        );
        // A sub-millisecond timeout is rounded up, not turned into a poll.
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::from_micros(10)))
                .unwrap(),
            0
        );
        assert_eq!(events.len(), 0);
    }

    #[test]
    fn ceil_millis_rounds_up() {
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_micros(999)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(1)), 1);
        assert_eq!(ceil_millis(Duration::from_micros(1001)), 2);
        assert!(ceil_millis(Duration::MAX) > i32::MAX as u128);
    }

    #[test]
    fn huge_timeout_is_capped_not_rejected() {
        let poller = Poller::new().unwrap();
        let (client, server) = tcp_pair();
        sysio::write(client.as_fd(), b"x").unwrap();
        poller.add(server.as_fd(), 1, Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(1);
        // Data is already there, so this returns at once.
        assert_eq!(poller.wait(&mut events, Some(Duration::MAX)).unwrap(), 1);
    }

    #[test]
    fn events_capacity_is_at_least_one() {
        assert_eq!(Events::with_capacity(0).capacity(), 1);
        assert_eq!(Events::with_capacity(64).capacity(), 64);
    }

    #[test]
    fn readable_event_carries_token() {
        let poller = Poller::new().unwrap();
        let (client, server) = tcp_pair();
        poller.add(server.as_fd(), 42, Interest::READABLE).unwrap();
        sysio::write(client.as_fd(), b"hello").unwrap();
        let ev = wait_for(&poller, 42);
        assert!(ev.readable);
        assert!(!ev.writable);
        assert!(!ev.error);
        assert!(!ev.read_closed);
    }

    #[test]
    fn level_triggered_repeats_edge_triggered_does_not() {
        let (client, server) = tcp_pair();
        sysio::write(client.as_fd(), b"data").unwrap();

        let level = Poller::new().unwrap();
        level.add(server.as_fd(), 1, Interest::READABLE).unwrap();
        // Not reading: level-triggered keeps reporting.
        assert!(wait_for(&level, 1).readable);
        assert!(wait_for(&level, 1).readable);

        let edge = Poller::new().unwrap();
        edge.add(server.as_fd(), 2, Interest::READABLE.edge_triggered())
            .unwrap();
        assert!(wait_for(&edge, 2).readable);
        // Same unread data, no new edge: nothing more.
        let mut events = Events::with_capacity(4);
        assert_eq!(
            edge.wait(&mut events, Some(Duration::from_millis(20)))
                .unwrap(),
            0
        );
        // New data is a new edge.
        sysio::write(client.as_fd(), b"more").unwrap();
        assert!(wait_for(&edge, 2).readable);
        // Re-arming through modify reports the present readiness again.
        edge.modify(server.as_fd(), 3, Interest::READABLE.edge_triggered())
            .unwrap();
        assert!(wait_for(&edge, 3).readable);
    }

    #[test]
    fn modify_to_writable_then_delete() {
        let poller = Poller::new().unwrap();
        let (_client, server) = tcp_pair();
        poller.add(server.as_fd(), 7, Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(4);
        // Nothing to read yet.
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);

        poller
            .modify(server.as_fd(), 8, Interest::WRITABLE)
            .unwrap();
        let ev = wait_for(&poller, 8);
        assert!(ev.writable);
        assert!(!ev.readable);

        poller.delete(server.as_fd()).unwrap();
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::from_millis(20)))
                .unwrap(),
            0
        );
        // Deleting twice or modifying an unregistered fd is an error, not a panic.
        assert_eq!(
            poller.delete(server.as_fd()).unwrap_err().raw_os_error(),
            Some(Errno::ENOENT as i32)
        );
        assert!(poller.modify(server.as_fd(), 9, Interest::BOTH).is_err());
        // Adding twice is EEXIST.
        poller.add(server.as_fd(), 10, Interest::BOTH).unwrap();
        assert_eq!(
            poller
                .add(server.as_fd(), 10, Interest::BOTH)
                .unwrap_err()
                .raw_os_error(),
            Some(Errno::EEXIST as i32)
        );
    }

    #[test]
    fn peer_close_reports_read_closed() {
        let poller = Poller::new().unwrap();
        let (client, server) = tcp_pair();
        poller.add(server.as_fd(), 5, Interest::READABLE).unwrap();
        drop(client);
        let ev = wait_for(&poller, 5);
        assert!(ev.read_closed);
        let mut buf = [0u8; 8];
        assert_eq!(sysio::read(server.as_fd(), &mut buf).unwrap(), 0);
    }
}
