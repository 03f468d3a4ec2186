//! Opening connections: taking ownership of a connected socket (options,
//! registration), starting its session once any PROXY header is in, and
//! running `on_open`.
//!
//! Owns the start of a connection's life; it must never run `on_open` for a
//! connection still waiting for its PROXY header or TLS handshake.

use std::os::fd::AsFd;

use super::entry::{ConnEntry, Phase, Stamp};
use super::timers::next_deadline;
use super::{guarded, loop_ref, EventLoop, LoopToken};
use crate::actors::slab::SlotKey;
use crate::conn::{Conn, NO_LISTENER};
use crate::error::Error;
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::runtime::message::Completion;
use crate::stats::bump;
use crate::sys::poller::Interest;
use crate::sys::socket;

impl<H: EventHandler> EventLoop<H> {
    /// Takes ownership of a connected socket: options, registration,
    /// on_open; `done` (a dial or enroll through the engine) gets its handle.
    pub(super) fn adopt(
        &mut self,
        mut entry: ConnEntry<H::State>,
        done: Option<Completion<ConnId>>,
    ) {
        self.apply_socket_options(&entry);
        if let Err(e) = self.accept_tls(&mut entry) {
            log::warn!("no TLS session for a connection from {}: {e}", entry.peer);
            self.engine.slot(self.index).remove_connection();
            if let Some(done) = done {
                done.complete(Err(e));
            }
            return;
        }
        let Some(key) = self.conns.insert(entry) else {
            log::error!("loop {} cannot hold more connections", self.index);
            self.engine.slot(self.index).remove_connection();
            if let Some(done) = done {
                done.complete(Err(Error::ConnectionClosed));
            }
            return;
        };
        let entry = self.conns.get_mut(key).expect("just inserted");
        let interest = if self.settings.edge_triggered {
            Interest::BOTH.edge_triggered()
        } else {
            Interest::READABLE
        };
        // Input the loop only takes through the driver completes through
        // the ring on io_uring (TLS too: see tls_ring.rs); PROXY headers
        // and datagrams stay with readiness (the loop reads those sockets
        // itself).
        let plain_stream = !entry.awaiting_header() && !entry.is_datagram;
        let token = LoopToken::Conn(key);
        let registered = if plain_stream {
            self.driver
                .register_stream(entry.fd.as_fd(), token, interest)
                .map(|through_ring| entry.ring_sends = through_ring)
        } else {
            self.driver.register(entry.fd.as_fd(), token, interest)
        };
        if let Err(e) = registered {
            log::warn!("could not register a connection from {}: {e}", entry.peer);
            self.conns.remove(key);
            self.engine.slot(self.index).remove_connection();
            if let Some(done) = done {
                done.complete(Err(Error::io("register a connection", e)));
            }
            return;
        }
        entry.armed = interest;
        // A dialled record moved slots: its wheel entry (the connect
        // timeout) names the old key and will be skipped, so schedule anew.
        entry.timer_tick = 0;
        entry.last_read_ms = Stamp::at(self.now_ms);
        entry.last_write_ms = Stamp::at(self.now_ms);
        if let Some((at, _)) = entry
            .awaiting_header()
            .then(|| next_deadline(entry, &self.settings.timeouts, self.now_ms))
            .flatten()
        {
            // Opened once its PROXY header is in (or refused at the deadline).
            self.timeouts_in_use = true;
            entry.timer_tick = self.wheel.schedule(key, at);
            return;
        }
        self.start_session(key, done);
    }

    /// Starts a registered connection's session once its PROXY header (if
    /// any) is in: counts it as opened, then runs `on_open`, or starts the
    /// TLS handshake, whose end runs it. `done` (a dial or enroll through
    /// the engine) gets its handle.
    pub(super) fn start_session(&mut self, key: SlotKey, done: Option<Completion<ConnId>>) {
        bump(
            &self.engine.slot(self.index).counters().connections_opened,
            1,
        );
        if let Some(entry) = self.conns.get_mut(key).filter(|e| e.tls.is_some()) {
            // on_open waits for the handshake.
            entry.phase = Phase::Handshaking;
            self.begin_handshake(key, done);
            return;
        }
        self.open(key, done);
    }

    /// Runs `on_open`; `done` (a dial or enroll through the engine) gets the
    /// handle.
    pub(super) fn open(&mut self, key: SlotKey, done: Option<Completion<ConnId>>) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        if let Some(entry) = self.conns.get_mut(key) {
            // A TLS handshake that just completed.
            entry.phase = Phase::Open;
        }
        let handler = &mut self.handler;
        let (action, side, handle) = {
            let mut conn = Conn::new(&[], &mut self.conns, key, &lp);
            let action = guarded("on_open", || handler.on_open(&mut conn));
            (action, conn.take_side_effects(), conn.id())
        };
        self.after_callback(key, action, side);
        if let Some(done) = done {
            match self.conns.get(key) {
                Some(_) => done.complete(Ok(handle)),
                None => done.complete(Err(Error::ConnectionClosed)),
            }
        }
    }

    pub(super) fn apply_socket_options(&self, entry: &ConnEntry<H::State>) {
        let fd = entry.fd.as_fd();
        let s = &self.settings;
        let mut results = Vec::new();
        if entry.is_tcp {
            // An accepted socket has its listener's (`Listener::bind`).
            if entry.listener == NO_LISTENER {
                results.push(("TCP_NODELAY", socket::set_nodelay(fd, s.nodelay)));
            }
            if let Some(ka) = s.keepalive {
                results.push(("keepalive", socket::set_keepalive(fd, Some(ka.to_sys()))));
            }
        }
        if let Some(n) = s.recv_buffer {
            results.push(("SO_RCVBUF", socket::set_recv_buffer_size(fd, n)));
        }
        if let Some(n) = s.send_buffer {
            results.push(("SO_SNDBUF", socket::set_send_buffer_size(fd, n)));
        }
        for (what, result) in results {
            if let Err(e) = result {
                log::debug!(
                    "could not set {what} on a connection from {}: {e}",
                    entry.peer
                );
            }
        }
    }
}
