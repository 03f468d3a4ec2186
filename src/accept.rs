//! The one accept path: [`Listeners`], the listening sockets of one
//! accepting thread, used both by the acceptor actor and by every loop that
//! accepts inline (reuseport mode, or a single loop), so the two behave the
//! same way.
//!
//! Owns the listeners' poller registration, the accept batch and the pauses:
//!
//! * a limit of [`crate::admission`] is reached (connection cap, accept
//!   rate): accepting pauses until the moment the limit names, and the
//!   kernel's backlog holds the waiting connections;
//! * the system runs out of resources (`EMFILE`, `ENFILE`, `ENOBUFS`,
//!   `ENOMEM`): accepting pauses for [`EXHAUSTED_PAUSE`] instead of spinning
//!   on a listener that stays readable, with one warning per episode; open
//!   connections are not affected;
//! * any other accept error concerns one connection (`ECONNABORTED`,
//!   `EPROTO`, `EPERM` from a firewall, network errors the kernel passes on):
//!   it is logged and the next connection is accepted.
//!
//! What happens to an accepted socket is the caller's business (a hand-off
//! to a loop, or admission on the loop itself); this module must never touch
//! a connection beyond accepting it, and never block.
//!
//! How listeners are watched and accepted from is the caller's too
//! ([`ListenerPoll`]): the acceptor's epoll [`Poller`] (readiness, then
//! `accept4`), or a loop's I/O driver, which on io_uring accepts through the
//! ring (a multishot accept per listener) and hands out what it accepted.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::SockAddr;
use crate::admission::{accept_next, Accepted, Admission, Gate};
use crate::listener::Listener;
use crate::sys::poller::{Interest, Poller, Token};

/// Most connections accepted per listener per readiness event, so one busy
/// listener cannot starve the thread's other work.
pub(crate) const ACCEPT_BATCH: usize = 128;
/// How long listeners rest after accept ran out of descriptors or memory.
pub(crate) const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// What an accept error means for the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// Out of descriptors or kernel memory: pause, don't spin.
    Exhausted,
    /// About one connection only: go on with the next.
    Transient,
}

impl AcceptError {
    pub(crate) fn classify(e: &io::Error) -> AcceptError {
        match e.raw_os_error() {
            Some(
                nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM,
            ) => AcceptError::Exhausted,
            _ => AcceptError::Transient,
        }
    }
}

/// How an accepting thread watches its listeners and takes connections
/// from them: readiness and `accept4` ([`Poller`]), or a completion
/// driver's accepts (a loop's `Driver`).
pub(crate) trait ListenerPoll {
    /// Starts watching listener `fd` under `token` (accepting at once).
    fn add_listener(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()>;
    /// Accepting on (`true`) or paused (`false`: the kernel's backlog holds
    /// new connections).
    fn listen(&mut self, fd: BorrowedFd<'_>, token: Token, on: bool) -> io::Result<()>;
    /// Stops watching `fd` before it is closed.
    fn remove_listener(&mut self, fd: BorrowedFd<'_>);
    /// The next connection of listener `fd` (non-blocking, close-on-exec)
    /// with its peer's address; `None`: none now. Errors are the OS's.
    fn accept_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, SockAddr)>>;
}

impl ListenerPoll for Poller {
    fn add_listener(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        self.add(fd, token, Interest::READABLE)
    }

    fn listen(&mut self, fd: BorrowedFd<'_>, token: Token, on: bool) -> io::Result<()> {
        let interest = if on {
            Interest::READABLE
        } else {
            Interest::NONE
        };
        self.modify(fd, token, interest)
    }

    fn remove_listener(&mut self, fd: BorrowedFd<'_>) {
        let _ = self.delete(fd);
    }

    fn accept_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, SockAddr)>> {
        crate::sys::socket::accept(fd)
    }
}

/// A connection just accepted, with what the caller needs to adopt it.
pub(crate) struct AcceptedConn {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: SockAddr,
    /// The listen-address index of the listener that accepted it.
    pub(crate) listener: u16,
    pub(crate) is_tcp: bool,
    pub(crate) admission: Admission,
}

/// The listening sockets of one accepting thread, with their pause state.
pub(crate) struct Listeners {
    /// Each listener with its listen-address index.
    list: Vec<(Listener, u16)>,
    /// The token of listener `i` is `first_token + i`.
    first_token: Token,
    /// Read interest is off in the poller.
    paused: bool,
    /// When paused listeners may accept again (a limit, or exhaustion).
    resume_at: Option<Instant>,
    /// The exhaustion of this episode was logged.
    warned: bool,
    /// Who accepts, for the log ("the acceptor", "loop 3").
    who: String,
}

impl Listeners {
    pub(crate) fn new(list: Vec<(Listener, u16)>, first_token: Token, who: String) -> Listeners {
        Listeners {
            list,
            first_token,
            paused: false,
            resume_at: None,
            warned: false,
            who,
        }
    }

    /// The listener a poller token names, if it is one of these.
    pub(crate) fn index_of(&self, token: Token) -> Option<usize> {
        let i = usize::try_from(token.checked_sub(self.first_token)?).ok()?;
        (i < self.list.len()).then_some(i)
    }

    /// Starts watching every listener.
    pub(crate) fn register(&self, poller: &mut impl ListenerPoll) -> io::Result<()> {
        for (i, (listener, _)) in self.list.iter().enumerate() {
            poller.add_listener(listener.fd.as_fd(), self.first_token + i as u64)?;
        }
        Ok(())
    }

    /// When paused listeners may accept again, if they are resting.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Turns read interest on or off for every listener (nothing if it is
    /// already so).
    pub(crate) fn set_listening(
        &mut self,
        poller: &mut impl ListenerPoll,
        on: bool,
    ) -> io::Result<()> {
        if self.paused != on {
            return Ok(());
        }
        for (i, (listener, _)) in self.list.iter().enumerate() {
            poller.listen(listener.fd.as_fd(), self.first_token + i as u64, on)?;
        }
        self.paused = !on;
        Ok(())
    }

    /// Rests the listeners until `until`.
    pub(crate) fn pause_until(
        &mut self,
        poller: &mut impl ListenerPoll,
        until: Instant,
    ) -> io::Result<()> {
        self.resume_at = Some(until);
        self.set_listening(poller, false)
    }

    /// Whether the rest (if any) is over at `now`.
    pub(crate) fn rested(&self, now: Instant) -> bool {
        !matches!(self.resume_at, Some(t) if now < t)
    }

    /// Ends a rest that is over at `now`: listening again, unless `hold`
    /// (the caller has its own reason to wait, such as congested loops).
    pub(crate) fn resume_if_rested(
        &mut self,
        poller: &mut impl ListenerPoll,
        now: Instant,
        hold: bool,
    ) -> io::Result<()> {
        let rested = self.rested(now);
        if rested {
            self.resume_at = None;
        }
        self.set_listening(poller, rested && !hold)
    }

    /// Accepts on listener `i` until its backlog is empty, the batch is
    /// done, `take` returns `false` (it wants no more now), or a limit or
    /// exhaustion pauses the listeners (until the time recorded in
    /// [`resume_at`](Self::resume_at)).
    pub(crate) fn accept(
        &mut self,
        i: usize,
        poller: &mut impl ListenerPoll,
        gate: &Arc<Gate>,
        mut take: impl FnMut(AcceptedConn) -> bool,
    ) -> io::Result<()> {
        for _ in 0..ACCEPT_BATCH {
            let Some((listener, listen_index)) = self.list.get(i) else {
                return Ok(());
            };
            match accept_next(listener.fd.as_fd(), gate, |fd| poller.accept_from(fd)) {
                Ok(Accepted::Conn(fd, peer, admission)) => {
                    let conn = AcceptedConn {
                        fd,
                        peer,
                        listener: *listen_index,
                        is_tcp: listener.is_tcp(),
                        admission,
                    };
                    if !take(conn) {
                        return Ok(());
                    }
                }
                Ok(Accepted::Empty) => {
                    // The backlog is empty: an exhaustion episode is over.
                    self.warned = false;
                    return Ok(());
                }
                // A limit is reached: the backlog holds the rest.
                Ok(Accepted::Wait(until)) => return self.pause_until(poller, until),
                Err(e) => match AcceptError::classify(&e) {
                    AcceptError::Exhausted => {
                        if !self.warned {
                            log::warn!(
                                "{}: accept on {} failed: {e}; pausing accepts for {EXHAUSTED_PAUSE:?} (open connections are unaffected)",
                                self.who,
                                listener.addr
                            );
                            self.warned = true;
                        }
                        return self.pause_until(poller, Instant::now() + EXHAUSTED_PAUSE);
                    }
                    AcceptError::Transient => {
                        log::debug!("{}: accept on {} failed: {e}", self.who, listener.addr);
                    }
                },
            }
        }
        Ok(())
    }

    /// The engine is stopping: closes these listeners (removing Unix socket
    /// files), so no connection is accepted that would only be closed by the
    /// drain; connections waiting in the backlog are reset by the kernel.
    pub(crate) fn close(&mut self, poller: &mut impl ListenerPoll) {
        for (listener, _) in self.list.drain(..) {
            poller.remove_listener(listener.fd.as_fd());
        }
        self.resume_at = None;
    }

    /// The engine handed its listeners to a new process: closes these
    /// (leaving Unix socket files to the new process). Returns whether
    /// there were any.
    pub(crate) fn close_for_upgrade(&mut self, poller: &mut impl ListenerPoll) -> bool {
        let had = !self.list.is_empty();
        for (mut listener, _) in self.list.drain(..) {
            poller.remove_listener(listener.fd.as_fd());
            listener.keep_socket_file();
        }
        self.resume_at = None;
        had
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ListenAddr;
    use crate::admission::Limits;
    use crate::options::Options;
    use std::net::{SocketAddr, TcpStream};

    /// One listener on 127.0.0.1 (listen-address index 3, token 10).
    fn listeners(poller: &mut Poller) -> (Listeners, SocketAddr) {
        let addr = ListenAddr::parse("tcp://127.0.0.1:0").unwrap();
        let listener = Listener::bind(&addr, &Options::default(), false).unwrap();
        let bound = listener.addr.sock_addr().as_inet().unwrap();
        let listeners = Listeners::new(vec![(listener, 3)], 10, "test".into());
        listeners.register(poller).unwrap();
        (listeners, bound)
    }

    /// Connections in the listener's backlog (a loopback connect returns
    /// once the kernel queued it).
    fn connect(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
    }

    #[test]
    fn accepts_until_the_backlog_is_empty_or_the_taker_has_enough() {
        let mut poller = Poller::new().unwrap();
        let (mut l, addr) = listeners(&mut poller);
        assert_eq!(l.index_of(10), Some(0));
        assert_eq!((l.index_of(9), l.index_of(11)), (None, None));
        let _clients = connect(addr, 5);
        let gate = Gate::new(Limits::default());
        let mut got = Vec::new();
        l.accept(0, &mut poller, &gate, |c| {
            got.push(c);
            got.len() < 2
        })
        .unwrap();
        assert_eq!(got.len(), 2, "the taker said it had enough");
        l.accept(0, &mut poller, &gate, |c| {
            got.push(c);
            true
        })
        .unwrap();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|c| c.listener == 3 && c.is_tcp));
        assert!(!l.is_paused(), "an empty backlog is no reason to rest");
    }

    #[test]
    fn a_connection_cap_rests_the_listeners_until_a_place_is_free() {
        let mut poller = Poller::new().unwrap();
        let (mut l, addr) = listeners(&mut poller);
        let gate = Gate::new(Limits::default().max_conns(1));
        let _clients = connect(addr, 2);
        let mut got = Vec::new();
        let take = |l: &mut Listeners, poller: &mut Poller, got: &mut Vec<AcceptedConn>| {
            l.accept(0, poller, &gate, |c| {
                got.push(c);
                true
            })
            .unwrap();
        };
        take(&mut l, &mut poller, &mut got);
        assert_eq!(got.len(), 1);
        assert!(l.is_paused(), "at the cap the listeners rest");
        let until = l.resume_at().expect("a time to look again");
        l.resume_if_rested(&mut poller, until - Duration::from_millis(1), false)
            .unwrap();
        assert!(l.is_paused(), "not before the time the limit named");
        l.resume_if_rested(&mut poller, until, false).unwrap();
        assert!(!l.is_paused() && l.resume_at().is_none());
        // Still at the cap: the next batch rests again, accepting nothing.
        take(&mut l, &mut poller, &mut got);
        assert_eq!(got.len(), 1);
        assert!(l.is_paused());
        // The first connection gives its place back: the second gets in.
        got.clear();
        let until = l.resume_at().unwrap();
        l.resume_if_rested(&mut poller, until, false).unwrap();
        take(&mut l, &mut poller, &mut got);
        assert_eq!(got.len(), 1);
        // A caller's own reason to wait keeps them resting.
        l.set_listening(&mut poller, false).unwrap();
        l.resume_if_rested(&mut poller, Instant::now(), true)
            .unwrap();
        assert!(l.is_paused());
    }

    #[test]
    fn only_running_out_of_resources_pauses() {
        for errno in [
            nix::libc::EMFILE,
            nix::libc::ENFILE,
            nix::libc::ENOBUFS,
            nix::libc::ENOMEM,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(AcceptError::classify(&e), AcceptError::Exhausted, "{e}");
        }
        for errno in [
            nix::libc::ECONNABORTED,
            nix::libc::EPROTO,
            nix::libc::EPERM,
            nix::libc::ENETDOWN,
            nix::libc::EHOSTUNREACH,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(AcceptError::classify(&e), AcceptError::Transient, "{e}");
        }
        assert_eq!(
            AcceptError::classify(&io::Error::other("no errno")),
            AcceptError::Transient
        );
    }
}
