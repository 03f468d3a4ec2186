//! The TLS side of a connection's record: writes encrypted on the owning
//! loop, records rustls owes the peer, `close_notify`.
//!
//! Owns only these hooks of [`ConnEntry`]; the plain write path stays in
//! `event_loop/entry.rs`, which calls here when the connection has a session. Never
//! reads the socket.

use std::io;
use std::os::fd::AsFd;

use super::sink::{sink, SocketSink};
use super::TlsSession;
use crate::error::{Error, Result};
use crate::event_loop::entry::{ConnEntry, LoopRef};
use crate::reason::CloseReason;

impl<S> ConnEntry<S> {
    /// The session and a sink for its records: the socket and queue, or
    /// the queue alone when the connection's sends go through the ring.
    fn session_and_sink<'a>(
        &'a mut self,
        lp: &LoopRef<'_>,
    ) -> Option<(&'a mut TlsSession, SocketSink<'a>)> {
        let tls = self.tls.as_deref_mut()?;
        let direct = !self.ring_sends;
        Some((
            tls,
            sink(self.fd.as_fd(), &mut self.outbound, lp.write_cap, direct),
        ))
    }

    /// Encrypts `bufs`, in order, and sends or queues the records.
    pub(crate) fn tls_write(&mut self, bufs: &[&[u8]], lp: &LoopRef<'_>) -> Result<usize> {
        let Some((tls, mut out)) = self.session_and_sink(lp) else {
            return Err(Error::Unsupported("a TLS write on a plain connection"));
        };
        let result = tls.write(bufs, &mut out);
        let written = out.written;
        self.wrote(written, lp);
        match result {
            Ok(()) => Ok(bufs.iter().map(|b| b.len()).sum()),
            Err(Error::Io { source, .. }) if source.kind() != io::ErrorKind::WouldBlock => {
                let err = Error::io("write", io::Error::new(source.kind(), source.to_string()));
                self.close_with(CloseReason::from_io(source));
                Err(err)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends (or queues) every record rustls has for the peer: handshake
    /// messages, alerts, key updates.
    pub(crate) fn tls_send(&mut self, lp: &LoopRef<'_>) -> io::Result<()> {
        let Some((tls, mut out)) = self.session_and_sink(lp) else {
            return Ok(());
        };
        let result = tls.send(&mut out);
        let written = out.written;
        self.wrote(written, lp);
        result
    }

    /// Queues `close_notify` behind what is already queued (once, and only
    /// on an open session: a failed handshake sent its alert instead; and
    /// not to a peer that ended its TCP stream without one and was sent
    /// nothing since, unless the handler kept the connection half-open).
    pub(crate) fn tls_close_notify(&mut self, lp: &LoopRef<'_>) {
        let Some(tls) = self.tls.as_deref() else {
            return;
        };
        if !tls.owes_close_notify()
            && (tls.is_handshaking()
                || self.read_side != crate::event_loop::entry::ReadSide::HalfOpen)
        {
            return;
        }
        let Some((tls, mut out)) = self.session_and_sink(lp) else {
            return;
        };
        let result = tls.close_notify(&mut out);
        let written = out.written;
        self.wrote(written, lp);
        if let Err(e) = result {
            log::debug!("could not send close_notify to {}: {e}", self.peer);
        }
    }
}
