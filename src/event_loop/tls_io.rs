//! The event loop's TLS hooks: sessions for accepted and dialled `tls://`
//! connections, the handshake, and the read path through the session.
//!
//! Owns only the loop-side steps; the session itself lives in
//! [`crate::tls`]. A TLS connection is an ordinary connection with a session
//! on it: it is flushed, paused, timed out and closed by the same code as
//! TCP. Until its handshake completes it has no `on_open`, and whatever ends
//! it goes through [`EventLoop::fail_handshake`].

use std::io;
use std::os::fd::AsFd;

use super::entry::{ConnEntry, Stamp};
use super::tls_ring::take_ring_sends;
use super::{guarded, loop_ref, EventLoop};
use crate::actors::slab::SlotKey;
use crate::addr::ListenAddr;
use crate::conn::NO_LISTENER;
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::reason::{Action, CloseReason};
use crate::runtime::message::Completion;
use crate::stats::bump;
use crate::sys::io as sysio;
use crate::tls::{TlsConnector, TlsSession};

/// The least ciphertext one read takes (a whole TLS record, ~16 KiB, fits).
const MIN_TLS_READ: usize = 17 * 1024;

impl<H: EventHandler> EventLoop<H> {
    /// Gives a connection accepted on a `tls://` listener its server session.
    pub(super) fn accept_tls(&self, entry: &mut ConnEntry<H::State>) -> Result<()> {
        if entry.tls.is_some() || entry.listener == NO_LISTENER {
            return Ok(());
        }
        let addrs = self.ctx.engine.local_addrs();
        if !addrs
            .get(usize::from(entry.listener))
            .is_some_and(ListenAddr::is_tls)
        {
            return Ok(());
        }
        let config = self
            .settings
            .tls
            .server
            .as_ref()
            .ok_or(Error::InvalidConfig(
                "a tls:// listener needs EngineBuilder::tls_server".into(),
            ))?;
        entry.tls = Some(Box::new(TlsSession::server(
            config,
            self.settings.tls.own_record_layer,
        )?));
        Ok(())
    }

    /// The client session for a dial of `addr` (`None` unless `tls://`).
    pub(super) fn dial_session(
        &self,
        addr: &ListenAddr,
        connector: Option<Box<TlsConnector>>,
    ) -> Result<Option<Box<TlsSession>>> {
        let Some(host) = addr.tls_host() else {
            return Ok(None);
        };
        let session = match (connector, &self.settings.tls.client) {
            (Some(connector), _) => connector.session(host, self.settings.tls.own_record_layer)?,
            (None, Some(config)) => TlsConnector::new(config.clone())
                .session(host, self.settings.tls.own_record_layer)?,
            (None, None) => {
                return Err(Error::InvalidConfig(
                    "a tls:// dial needs EngineBuilder::tls_client or a TlsConnector".into(),
                ))
            }
        };
        Ok(Some(Box::new(session)))
    }

    /// Starts the handshake clock and sends what the session has to say
    /// first (a client's ClientHello); `on_open` runs once it completes.
    pub(super) fn begin_handshake(&mut self, key: SlotKey, done: Option<Completion<ConnId>>) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let timeout = self.settings.tls.handshake_timeout.as_millis();
        let deadline_ms = self.now_ms + timeout.min(u128::from(u32::MAX)) as u64;
        self.timeouts_in_use = true;
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(tls) = entry.tls.as_deref_mut() {
            tls.begin(deadline_ms, done);
        }
        if let Err(e) = entry.tls_send(&lp) {
            self.close_conn(key, CloseReason::from_io(e));
            return;
        }
        self.settle(key, Action::None);
    }

    /// One read of ciphertext from a TLS connection's socket, passed through
    /// its session to the handler. Returns the bytes read, or `None` when
    /// the socket had nothing or the connection stopped reading or closed.
    pub(super) fn read_tls(&mut self, key: SlotKey) -> Option<usize> {
        if self.tls_in.is_empty() {
            self.tls_in = vec![0; self.read_buf.len().max(MIN_TLS_READ)];
        }
        let entry = self.conns.get_mut(key)?;
        let n = match sysio::recv(entry.fd.as_fd(), &mut self.tls_in) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                self.close_conn(key, CloseReason::from_io(e));
                return None;
            }
        };
        if n == 0 {
            self.tls_end_of_stream(key);
            return None;
        }
        entry.last_read_ms = Stamp::at(self.now_ms);
        bump(&self.engine.slot(self.index).counters().bytes_in, n as u64);
        let mut scratch = std::mem::take(&mut self.tls_in);
        self.deliver_tls(key, &mut scratch[..n]);
        self.tls_in = scratch;
        Some(n)
    }

    /// Feeds `input` (ciphertext, decrypted in place) through the session:
    /// handshake records are answered, `on_open` runs when the handshake
    /// completes, plaintext goes to `on_traffic` through the loop's read
    /// buffer. Stops early if the connection closes or starts closing (the
    /// rest is dropped, as unread socket bytes would be).
    ///
    /// Settles the connection once per round through the session: the
    /// callback that took its plaintext (`on_traffic` or `on_open`) settles
    /// it, and only a round that ran no callback settles it here.
    pub(super) fn deliver_tls(&mut self, key: SlotKey, mut input: &mut [u8]) {
        loop {
            let mut settled = false;
            let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            if entry.phase.closing().is_some() || entry.read_closed() {
                return;
            }
            let Some(tls) = entry.tls.as_deref_mut() else {
                return;
            };
            let pumped = tls.pump(input, &mut self.read_buf);
            input = &mut [];
            let opened = tls.take_opened();
            // Plaintext came with the handshake's end: its last flight
            // leaves with the reply (see `send_opening_flight`).
            let with_reply = opened.is_some() && pumped.as_ref().is_ok_and(|p| p.plain > 0);
            // Handshake answers and alerts go out before anything else.
            if !with_reply {
                if let Err(e) = entry.tls_send(&lp) {
                    self.close_conn(key, CloseReason::from_io(e));
                    return;
                }
            }
            let pumped = match pumped {
                Ok(pumped) => pumped,
                Err(e) => {
                    log::debug!("loop {}: TLS error from {}: {e}", self.index, entry.peer);
                    self.close_for_tls_error(key, e);
                    return;
                }
            };
            if let Some(done) = opened {
                self.open(key, done);
                if self.conns.get(key).is_none() {
                    return;
                }
                settled = true;
            }
            if pumped.plain > 0 {
                self.traffic(key, pumped.plain);
                settled = true;
            }
            if with_reply {
                self.send_opening_flight(key);
            }
            if pumped.peer_closed {
                self.peer_closed(key);
                return;
            }
            // A pump that did not fill the buffer took all the input and
            // left no plaintext behind.
            if !pumped.more {
                if !settled {
                    self.settle(key, Action::None);
                }
                return;
            }
        }
    }

    /// The TCP stream ended (a read of 0 bytes): without `close_notify` on
    /// an open session, the peer abandoned it.
    pub(super) fn tls_end_of_stream(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(tls) = entry.tls.as_deref_mut().filter(|t| !t.is_handshaking()) {
            log::debug!("{}: TCP end of stream without close_notify", entry.peer);
            tls.peer_abandoned();
        }
        self.peer_closed(key);
    }

    /// The peer ended its side (`close_notify` or TCP end of stream): as
    /// TCP's EOF once open; a failed handshake before that.
    fn peer_closed(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.read_closed() {
            return;
        }
        entry.peer_closed();
        if entry.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            self.close_conn(key, CloseReason::Eof);
            return;
        }
        self.read_closed(key);
    }

    /// Drops a TLS connection whose handshake did not complete, after
    /// sending the alert it owes (best effort; a TLS error's alert queued
    /// behind unwritten bytes was written first, see
    /// [`close_for_tls_error`](Self::close_for_tls_error)); tells the
    /// dial's caller, or the handler's `on_handshake_error` for an
    /// accepted connection.
    pub(super) fn fail_handshake(&mut self, key: SlotKey, reason: CloseReason) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        // The alert may wait behind a flight the ring is sending.
        take_ring_sends(&mut self.driver, &mut entry);
        if !entry.outbound.is_empty()
            && !matches!(reason, CloseReason::Reset | CloseReason::Error(_))
        {
            let _ = entry.flush_queue(&lp);
        }
        self.driver.deregister(entry.fd.as_fd());
        let done = entry.tls.as_deref_mut().and_then(TlsSession::take_dial);
        let state = entry.state.take();
        let dialled = entry.listener == NO_LISTENER;
        let peer = entry.peer.clone();
        drop(entry);
        self.engine.slot(self.index).remove_connection();
        log::debug!(
            "loop {}: TLS handshake with {peer} failed: {reason}",
            self.index
        );
        if dialled {
            self.dial_failed(state, done, handshake_error(reason));
            return;
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        if let Some(Action::Shutdown) = guarded("on_handshake_error", || {
            handler.on_handshake_error(ctx, &peer, &reason)
        }) {
            self.engine.request_stop();
        }
    }
}

/// What a dial's caller hears when the TLS handshake failed for `reason`.
fn handshake_error(reason: CloseReason) -> Error {
    let io =
        |kind: io::ErrorKind, what: String| Error::io("TLS handshake", io::Error::new(kind, what));
    match reason {
        CloseReason::Tls(e) => Error::Tls(e),
        CloseReason::Shutdown => Error::EngineStopped,
        CloseReason::Error(e) => Error::io("TLS handshake", e),
        CloseReason::Timeout(_) => io(io::ErrorKind::TimedOut, "TLS handshake timed out".into()),
        CloseReason::Reset => io(
            io::ErrorKind::ConnectionReset,
            "reset during the TLS handshake".into(),
        ),
        other => io(
            io::ErrorKind::UnexpectedEof,
            format!("TLS handshake ended: {other}"),
        ),
    }
}
