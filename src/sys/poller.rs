//! Readiness notification: one epoll instance per [`Poller`].
//!
//! Owns the epoll descriptor, the translation between [`Interest`]/[`Event`]
//! and epoll flags, and the reusable [`Events`] buffer. It never owns or
//! closes the descriptors registered with it (the caller must `delete` a
//! descriptor before closing it, or the kernel drops it silently on the last
//! close), never interprets tokens, and never sleeps longer than `wait` was
//! told to.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

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
        events.buf.clear();
        self.wait_into(&mut events.buf, events.cap, timeout)
    }

    /// [`wait`](Self::wait), appending at most `max` events to `ready` as
    /// the kernel wrote them (no copy, no translation: an event loop reads
    /// its events where `epoll_wait` put them).
    #[allow(unsafe_code)] // epoll_wait(2) into the vector's spare capacity
    pub(crate) fn wait_into(
        &self,
        ready: &mut Vec<Event>,
        max: usize,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let timeout = match timeout {
            None => -1,
            Some(t) => ceil_millis(t).min(i32::MAX as u128) as i32,
        };
        // epoll_wait takes the count as a C int, and refuses 0.
        let max = max.clamp(1, i32::MAX as usize);
        ready.reserve(max);
        let spare = ready.spare_capacity_mut();
        // SAFETY: `Event` is `repr(transparent)` over `epoll_event`, so the
        // spare capacity is room for `max` (reserved above) `epoll_event`s;
        // the kernel writes at most `max` of them, and nothing else touches
        // the vector while it does. `self.epoll` is an open epoll descriptor.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.0.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::epoll_event>(),
                max as libc::c_int,
                timeout,
            )
        };
        let n = match usize::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => Ok(0),
                    _ => Err(e),
                };
            }
        };
        // SAFETY: the kernel initialised the first `n` (≤ `max`) entries of
        // the spare capacity, each a valid `Event` (any bit pattern is).
        unsafe { ready.set_len(ready.len() + n) };
        Ok(n)
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
    buf: Vec<Event>,
    /// The most events one wait returns.
    cap: usize,
}

impl Events {
    /// A buffer for up to `n` events per wait (at least 1: epoll refuses a
    /// zero-sized buffer).
    pub(crate) fn with_capacity(n: usize) -> Events {
        // epoll_wait takes the count as a C int.
        let n = n.clamp(1, i32::MAX as usize);
        Events {
            buf: Vec::with_capacity(n),
            cap: n,
        }
    }

    #[cfg(test)] // used by this layer's tests only
    /// How many events one wait can return.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    #[cfg(test)] // used by this layer's tests only
    /// How many events the last wait returned.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    #[cfg(test)] // used by this layer's tests only
    /// Whether the last wait returned nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The events of the last wait.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf.iter().copied()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One readiness report: epoll's own record (the kernel writes it straight
/// into the caller's buffer, see [`Poller::wait_into`]), read through
/// masks of its flags word rather than translated per event.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct Event(libc::epoll_event);

impl Event {
    /// Input is available.
    pub(crate) const READABLE: u32 = libc::EPOLLIN as u32;
    /// Output would not block.
    pub(crate) const WRITABLE: u32 = libc::EPOLLOUT as u32;
    /// An error is pending.
    pub(crate) const ERROR: u32 = libc::EPOLLERR as u32;
    const INPUT: u32 = (libc::EPOLLIN | libc::EPOLLPRI) as u32;
    const HANGUP: u32 = libc::EPOLLHUP as u32;
    const READ_CLOSED: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32;

    /// An event made by a driver rather than by epoll (a completion): its
    /// `flags` are `READABLE`, `WRITABLE` and `ERROR` or'ed together.
    pub(crate) const fn new(token: Token, flags: u32) -> Event {
        Event(libc::epoll_event {
            events: flags,
            u64: token,
        })
    }

    /// The token the descriptor was registered under.
    #[inline(always)]
    pub(crate) fn token(&self) -> Token {
        self.0.u64
    }

    /// Input is available (`EPOLLIN` or `EPOLLPRI`).
    #[inline(always)]
    pub(crate) fn readable(&self) -> bool {
        self.flags() & Self::INPUT != 0
    }

    /// Input, and neither an error nor a hang-up: the commonest event,
    /// told by one test of the flags.
    #[inline(always)]
    pub(crate) fn plain_input(&self) -> bool {
        // `INPUT` is the two lowest bits, below `ERROR` and `HANGUP`: the
        // three masked together are 1..=INPUT exactly when some input bit
        // and neither of the others is set (one compare, see the test).
        const _: () = assert!(Event::INPUT == 0b11 && Event::ERROR > 0b11 && Event::HANGUP > 0b11);
        let masked = self.flags() & (Self::INPUT | Self::ERROR | Self::HANGUP);
        masked.wrapping_sub(1) < Self::INPUT
    }

    /// Output alone: writable, with no input, error or hang-up (how the
    /// completion driver reports a send that completed).
    #[inline(always)]
    pub(crate) fn plain_output(&self) -> bool {
        let masked =
            self.flags() & (Self::INPUT | Self::WRITABLE | Self::ERROR | Self::READ_CLOSED);
        masked == Self::WRITABLE
    }

    /// Output would not block (`EPOLLOUT`).
    #[inline(always)]
    pub(crate) fn writable(&self) -> bool {
        self.flags() & Self::WRITABLE != 0
    }

    /// The peer will send nothing more (`EPOLLRDHUP` or `EPOLLHUP`); reads
    /// drain what is buffered and then return 0.
    #[inline(always)]
    pub(crate) fn read_closed(&self) -> bool {
        self.flags() & Self::READ_CLOSED != 0
    }

    /// Both directions are closed (`EPOLLHUP`).
    #[inline(always)]
    pub(crate) fn hangup(&self) -> bool {
        self.flags() & Self::HANGUP != 0
    }

    /// An error is pending (`EPOLLERR`); fetch it with `socket::take_error`.
    #[inline(always)]
    pub(crate) fn error(&self) -> bool {
        self.flags() & Self::ERROR != 0
    }

    #[inline(always)]
    fn flags(&self) -> u32 {
        self.0.events
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token())
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("read_closed", &self.read_closed())
            .field("hangup", &self.hangup())
            .field("error", &self.error())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::io as sysio;
    use crate::sys::testutil::{tcp_pair, BOUND};
    use nix::errno::Errno;
    use std::time::Instant;

    /// Waits (bounded) until an event for `token` arrives and returns it.
    fn wait_for(poller: &Poller, token: Token) -> Event {
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if let Some(ev) = events.iter().find(|e| e.token() == token) {
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
        assert!(ev.readable());
        assert!(!ev.writable());
        assert!(!ev.error());
        assert!(!ev.read_closed());
    }

    #[test]
    fn level_triggered_repeats_edge_triggered_does_not() {
        let (client, server) = tcp_pair();
        sysio::write(client.as_fd(), b"data").unwrap();

        let level = Poller::new().unwrap();
        level.add(server.as_fd(), 1, Interest::READABLE).unwrap();
        // Not reading: level-triggered keeps reporting.
        assert!(wait_for(&level, 1).readable());
        assert!(wait_for(&level, 1).readable());

        let edge = Poller::new().unwrap();
        edge.add(server.as_fd(), 2, Interest::READABLE.edge_triggered())
            .unwrap();
        assert!(wait_for(&edge, 2).readable());
        // Same unread data, no new edge: nothing more.
        let mut events = Events::with_capacity(4);
        assert_eq!(
            edge.wait(&mut events, Some(Duration::from_millis(20)))
                .unwrap(),
            0
        );
        // New data is a new edge.
        sysio::write(client.as_fd(), b"more").unwrap();
        assert!(wait_for(&edge, 2).readable());
        // Re-arming through modify reports the present readiness again.
        edge.modify(server.as_fd(), 3, Interest::READABLE.edge_triggered())
            .unwrap();
        assert!(wait_for(&edge, 3).readable());
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
        assert!(ev.writable());
        assert!(!ev.readable());

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
    fn event_masks_read_epolls_flags() {
        let flags = |f: libc::c_int| Event::new(9, f as u32);
        let input = flags(libc::EPOLLIN);
        assert_eq!(input.token(), 9);
        assert!(input.readable() && input.plain_input());
        assert!(!input.writable() && !input.error() && !input.hangup() && !input.read_closed());
        // Urgent data is input too; writability does not spoil plain input.
        assert!(flags(libc::EPOLLPRI).readable() && flags(libc::EPOLLPRI).plain_input());
        assert!(flags(libc::EPOLLIN | libc::EPOLLOUT).plain_input());
        // An error or a hang-up beside the input: not the plain case.
        assert!(!flags(libc::EPOLLIN | libc::EPOLLERR).plain_input());
        assert!(!flags(libc::EPOLLIN | libc::EPOLLHUP).plain_input());
        assert!(!flags(libc::EPOLLOUT).plain_input());
        // The peer's end of stream alone is input (read to 0), with a flag.
        let rdhup = flags(libc::EPOLLIN | libc::EPOLLRDHUP);
        assert!(rdhup.plain_input() && rdhup.read_closed() && !rdhup.hangup());
        let hup = flags(libc::EPOLLHUP);
        assert!(hup.hangup() && hup.read_closed() && !hup.readable());
        let err = flags(libc::EPOLLERR | libc::EPOLLOUT);
        assert!(err.error() && err.writable() && !err.plain_input());
        // What the io_uring driver makes.
        assert!(Event::new(1, Event::WRITABLE | Event::ERROR).error());
        assert!(Event::new(1, Event::READABLE).plain_input());
        // Every combination of the bits `plain_input` reads, against its
        // definition.
        let bits = [
            libc::EPOLLIN,
            libc::EPOLLPRI,
            libc::EPOLLOUT,
            libc::EPOLLERR,
            libc::EPOLLHUP,
            libc::EPOLLRDHUP,
        ];
        for set in 0..1u32 << bits.len() {
            let f = (0..bits.len())
                .filter(|i| set & (1 << i) != 0)
                .fold(0, |f, i| f | bits[i]);
            let e = flags(f);
            assert_eq!(
                e.plain_input(),
                e.readable() && !e.error() && !e.hangup(),
                "{e:?}"
            );
            assert_eq!(
                e.plain_output(),
                e.writable() && !e.readable() && !e.error() && !e.read_closed(),
                "{e:?}"
            );
        }
        // A ring send's completion, and its failure.
        assert!(Event::new(1, Event::WRITABLE).plain_output());
        assert!(!Event::new(1, Event::WRITABLE | Event::ERROR).plain_output());
    }

    #[test]
    fn wait_into_appends_at_most_max() {
        let poller = Poller::new().unwrap();
        let (c1, s1) = tcp_pair();
        let (c2, s2) = tcp_pair();
        poller.add(s1.as_fd(), 1, Interest::READABLE).unwrap();
        poller.add(s2.as_fd(), 2, Interest::READABLE).unwrap();
        sysio::write(c1.as_fd(), b"a").unwrap();
        sysio::write(c2.as_fd(), b"b").unwrap();
        let mut ready = vec![Event::new(77, 0)];
        let deadline = Instant::now() + BOUND;
        // Level-triggered: both stay ready; one per call, appended.
        while ready.len() < 3 && Instant::now() < deadline {
            let n = poller
                .wait_into(&mut ready, 1, Some(Duration::from_millis(100)))
                .unwrap();
            assert!(n <= 1);
        }
        assert_eq!(ready.len(), 3);
        assert_eq!(ready[0].token(), 77, "what was there stays");
        assert!(ready[1..]
            .iter()
            .all(|e| e.readable() && [1, 2].contains(&e.token())));
        // A wait that finds nothing appends nothing.
        let (_c3, s3) = tcp_pair();
        let quiet = Poller::new().unwrap();
        quiet.add(s3.as_fd(), 3, Interest::READABLE).unwrap();
        assert_eq!(
            quiet
                .wait_into(&mut ready, 8, Some(Duration::ZERO))
                .unwrap(),
            0
        );
        assert_eq!(ready.len(), 3);
    }

    #[test]
    fn peer_close_reports_read_closed() {
        let poller = Poller::new().unwrap();
        let (client, server) = tcp_pair();
        poller.add(server.as_fd(), 5, Interest::READABLE).unwrap();
        drop(client);
        let ev = wait_for(&poller, 5);
        assert!(ev.read_closed());
        let mut buf = [0u8; 8];
        assert_eq!(sysio::read(server.as_fd(), &mut buf).unwrap(), 0);
    }
}
