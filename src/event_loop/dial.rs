//! Outgoing connections: non-blocking connects onto this loop (from a
//! callback or through the engine), their completion or failure, and sockets
//! enrolled from outside.
//!
//! Owns connections until they are connected; it must never run `on_open`
//! for a connect that has not completed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::entry::{ConnEntry, Connecting, Phase};
use super::{guarded, EventLoop, LoopToken};
use crate::actors::slab::SlotKey;
use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::conn::NO_LISTENER;
use crate::error::Error;
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::reason::Action;
use crate::runtime::message::Completion;
use crate::sys::poller::Interest;
use crate::sys::socket;
use crate::tls::TlsConnector;

impl<H: EventHandler> EventLoop<H> {
    /// Starts a non-blocking connect onto this loop. `state` (a dial from a
    /// callback) is the new connection's initial state; `done` (a dial through
    /// the engine) is told the outcome.
    pub(super) fn start_dial(
        &mut self,
        addr: ListenAddr,
        state: Option<H::State>,
        done: Option<Completion<ConnId>>,
        tls: Option<Box<TlsConnector>>,
    ) {
        if self.engine.loops_stopping() {
            self.dial_failed(state, done, Error::EngineStopped);
            return;
        }
        let session = match self.dial_session(&addr, tls) {
            Ok(session) => session,
            Err(e) => {
                self.dial_failed(state, done, e);
                return;
            }
        };
        let attempt = match (addr.transport(), addr.sock_addr()) {
            // io_uring: the ring connects (no connect, epoll_ctl, SO_ERROR
            // calls of our own).
            (Transport::Tcp, SockAddr::Inet(sa)) if self.driver.connects() => {
                socket::tcp_socket(*sa).map(|fd| (fd, false, true, false))
            }
            (Transport::Tcp, SockAddr::Inet(sa)) => {
                socket::tcp_connect(*sa).map(|(fd, now)| (fd, now, true, false))
            }
            (Transport::Unix, SockAddr::Unix(Some(path))) => {
                socket::unix_connect(path).map(|(fd, now)| (fd, now, false, false))
            }
            (Transport::Udp, SockAddr::Inet(sa)) => {
                socket::udp_connect(*sa).map(|fd| (fd, true, false, true))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address does not match its scheme",
            )),
        };
        let (fd, connected, is_tcp, is_datagram) = match attempt {
            Ok(attempt) => attempt,
            Err(e) => {
                self.dial_failed(state, done, Error::io("connect", e));
                return;
            }
        };
        let mut entry = ConnEntry::new(fd, addr.sock_addr().clone(), NO_LISTENER, is_tcp);
        entry.is_datagram = is_datagram;
        entry.state = state;
        entry.tls = session;
        if connected {
            self.engine.slot(self.index).add_connection();
            self.adopt(entry, done);
            return;
        }
        // In progress: wait for writability, with the connect timeout on the wheel.
        self.timeouts_in_use = true;
        let deadline_ms = self.now_ms + self.settings.connect_timeout_ms;
        entry.phase = Phase::Connecting(Box::new(Connecting { deadline_ms, done }));
        let Some(key) = self.conns.insert(entry) else {
            log::error!("loop {} cannot hold more connections", self.index);
            return;
        };
        let entry = self.conns.get_mut(key).expect("just inserted");
        let registered = match (addr.transport(), addr.sock_addr()) {
            (Transport::Tcp, SockAddr::Inet(sa)) if self.driver.connects() => self
                .driver
                .connect(entry.fd.as_fd(), LoopToken::Conn(key), *sa)
                .map(|_| ()),
            _ => self
                .driver
                .register(entry.fd.as_fd(), LoopToken::Conn(key), Interest::WRITABLE),
        };
        if let Err(e) = registered {
            self.fail_dial(key, Error::io("register a connecting socket", e));
            return;
        }
        entry.armed = Interest::WRITABLE;
        entry.timer_tick = self.wheel.schedule(key, deadline_ms);
    }

    /// A connect in progress finished: open the connection, or fail the dial.
    pub(super) fn finish_connect(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let outcome = match self.driver.connect_result(entry.fd.as_fd()) {
            Some(result) => result.map(|()| None),
            None => socket::take_error(entry.fd.as_fd()),
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.fail_dial(key, Error::io("connect", e));
                return;
            }
        }
        let done = entry.take_connecting();
        let Some(entry) = self.conns.remove(key) else {
            return;
        };
        self.driver.deregister(entry.fd.as_fd());
        self.engine.slot(self.index).add_connection();
        self.adopt(entry, done);
    }

    /// Drops a connection that never opened and reports why.
    pub(super) fn fail_dial(&mut self, key: SlotKey, error: Error) {
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        self.driver.deregister(entry.fd.as_fd());
        let done = entry.take_connecting();
        let state = entry.state.take();
        drop(entry);
        self.dial_failed(state, done, error);
    }

    pub(super) fn dial_failed(
        &mut self,
        state: Option<H::State>,
        done: Option<Completion<ConnId>>,
        error: Error,
    ) {
        log::debug!("loop {}: dial failed: {error}", self.index);
        // A dial through the engine reports to its caller only.
        if let (Some(state), None) = (state, &done) {
            let (ctx, handler) = (&mut self.ctx, &mut self.handler);
            if let Some(Action::Shutdown) = guarded("on_dial_error", || {
                handler.on_dial_error(ctx, state, &error)
            }) {
                self.engine.request_stop();
            }
        }
        if let Some(done) = done {
            done.complete(Err(error));
        }
    }

    /// Adopts an already-connected stream socket handed over by the engine.
    pub(super) fn enroll(
        &mut self,
        fd: OwnedFd,
        state: Option<H::State>,
        done: Completion<ConnId>,
    ) {
        if self.engine.loops_stopping() {
            done.complete(Err(Error::EngineStopped));
            return;
        }
        let prepared = socket::prepare_enrolled(fd.as_fd()).and_then(|is_stream| {
            if !is_stream {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only stream sockets can be enrolled",
                ));
            }
            let peer = socket::peer_addr(fd.as_fd())?;
            Ok(peer)
        });
        match prepared {
            Ok(peer) => {
                let is_tcp = matches!(peer, SockAddr::Inet(_));
                self.engine.slot(self.index).add_connection();
                let mut entry = ConnEntry::new(fd, peer, NO_LISTENER, is_tcp);
                entry.state = state;
                self.adopt(entry, Some(done));
            }
            Err(e) => done.complete(Err(Error::io("enroll a socket", e))),
        }
    }
}
