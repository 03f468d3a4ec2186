//! TLS in the loop, with rustls: `tls://` listen and dial addresses whose
//! handlers see plaintext through the same [`Conn`](crate::Conn) as plain TCP.
//!
//! Owns the TLS configuration helpers ([`ServerTls`], [`client_config`],
//! PEM loading), the per-connection session adapter that sits between a
//! connection's socket and its handler, and [`TlsConnector`] (how a dial
//! verifies its server). It must never own a socket, a thread or a timer:
//! the event loop reads and writes the socket, runs the handshake timeout on
//! its timer wheel and calls in here; rustls itself does no I/O (it is
//! sans-I/O), so no thread or runtime is added.
//!
//! # Where the session sits
//!
//! rustls is driven through its unbuffered API (`rustls::unbuffered`): it
//! keeps no ciphertext or plaintext queues of its own, so the loop's
//! buffers are the only ones.
//!
//! ```text
//!  socket ──read──▶ loop TLS scratch (ciphertext, one per loop)
//!                      │ process_tls_records: records decrypted in place there
//!                      │ (a record cut short waits in the session until the rest comes)
//!                      ▼
//!                  loop read buffer (plaintext) ──▶ on_traffic: peek / next / read_all
//!                                                   (leftover kept exactly as for TCP)
//!
//!  write / writev / write_vec / async_write (encrypted on the owning loop)
//!                      │ WriteTraffic::encrypt into the loop thread's seal buffer
//!                      ▼
//!  sink: nothing queued? ──yes──▶ write to the socket; what it does not take ─┐
//!         │ no                                                                 ▼
//!         └───────────────────────────────────────────────────────▶ outbound queue
//! ```
//!
//! Every ciphertext byte rustls produces leaves the seal buffer at once,
//! either to the socket or into the connection's ordinary outbound queue
//! (handshake records and alerts the same way, through a small per-session
//! buffer emptied after every flight). So the queue holds exactly what is
//! waiting for the socket (as ciphertext): the loop's flushing, `writev`
//! batching, write readiness, water marks and back-pressure, write timeout
//! and graceful close work on it unchanged, and
//! [`Conn::outbound_buffered`](crate::Conn::outbound_buffered) counts it.
//! On the io_uring driver the same session sits between the ring and the
//! handler: ciphertext arrives in the ring's provided buffers (a multishot
//! receive) and is decrypted there, in place, instead of in the loop's
//! scratch; the sink never writes, it queues every record, and settling the
//! connection hands the queue to the ring with the turn's other sends
//! (`event_loop/tls_ring.rs`). A TLS connection then makes no system call
//! of its own.
//!
//! # The record layer after the handshake
//!
//! Once an open TLS 1.3 session (AES-128-GCM, AES-256-GCM or
//! ChaCha20-Poly1305) has carried a few dozen reads and writes, it takes
//! the record layer from rustls, as kTLS would (`handoff.rs`, through
//! rustls's kernel API): records are then opened in place in the loop's
//! buffers and sealed into the thread's scratch buffer with `ring`, with
//! no per-record allocation or extra copy; rustls keeps the key schedule
//! (KeyUpdate secrets; a client's session tickets, which arriving after
//! the hand-off are stored for resumption all the same). The hand-off comes
//! right after rustls sealed application data, so nothing it holds back
//! (an answer to the peer's KeyUpdate) is lost, and only with no ciphertext
//! held. Everything around it (sink, queue, back-pressure, close) is
//! unchanged. TLS 1.2, other suites and configs without
//! `enable_secret_extraction` stay on rustls;
//! [`TlsOptions::own_record_layer`] turns it off.
//!
//! Plaintext is copied once into the loop's read buffer (rustls 0.23 hands
//! a record's plaintext out of its own allocation), where plain TCP would
//! have copied it out of the kernel; a connection keeps only what its
//! handler leaves unread, as for TCP.
//!
//! rustls 0.23's unbuffered server does not expose the SNI name it acted
//! on, so the session reads it from the ClientHello (in one record or
//! several) before rustls takes it.
//!
//! # States of a TLS connection
//!
//! ```text
//!             accept / connect
//!                    │
//!                    ▼
//!   ┌──────── Handshaking ─────────────┐  handshake timeout, TLS error, EOF, reset,
//!   │ (no on_open yet; rustls talks    │  engine stop ──▶ closed: on_handshake_error
//!   │  to the peer through the queue)  │                  (Shutdown for a stop; a dial:
//!   └────────────────┬─────────────────┘                   its caller or on_dial_error)
//!                    │ handshake complete
//!                    ▼
//!                  Open ── on_open, then on_traffic with plaintext; ALPN and
//!                    │     SNI readable through Conn::tls
//!                    ├── peer's close_notify or EOF ──▶ on_read_closed (half-close as TCP)
//!                    ├── shutdown_write ──▶ close_notify queued, then FIN
//!                    ├── TLS error ──▶ alert sent (if rustls sends one); the plaintext
//!                    │                 of the records before it still delivered (a
//!                    │                 reply to it refused), then on_close(CloseReason::Tls)
//!                    ▼
//!               Closing ── close_notify queued after what is already queued,
//!                          flushed (graceful closes linger as for TCP), fd closed
//! ```
//!
//! A peer that ends its TCP stream without `close_notify` has abandoned the
//! session: closing on that end of stream sends no `close_notify` back
//! (as nginx does), unless something was written to the peer after it or
//! the handler kept the connection half-open.
//!
//! # Bounded memory
//!
//! Per connection: the start of one record (~16 KiB) or of a handshake
//! message (64 KiB) waiting for the rest, at most one record of decrypted
//! plaintext beyond the loop's read buffer, one handshake flight until it is
//! sent, and plaintext written before the handshake completed (at most
//! [`TLS_BUFFER_LIMIT`]); each is empty, without an allocation, between
//! messages. Then the connection's ordinary outbound queue under its water
//! marks and inbound leftover under `max_inbound`. Ciphertext read from the
//! socket lands in one scratch buffer per loop, and writes are encrypted in
//! one buffer per loop thread, not per connection.
//!
//! # kTLS, later
//!
//! Kernel TLS (the kernel doing the record layer after the handshake) is not
//! possible on the kernels this is developed on (built without
//! `CONFIG_TLS`). The design leaves room for it: the hand-off above is the
//! same step kTLS takes (the secrets and sequence numbers from rustls's
//! kernel API); the loop would set `TCP_ULP "tls"` and the keys on the
//! socket instead of keeping them, and the connection would then take the
//! plain TCP read and write paths, because the session is a hook on the
//! connection (`ConnEntry::tls`) rather than a different kind of
//! connection.

mod config;
mod entry;
mod handoff;
#[cfg(test)]
mod handoff_tests;
mod records;
mod session;
mod sink;
mod sni;

pub use config::{client_config, load_certs, load_private_key, load_roots, ServerTls};
pub(crate) use session::TlsSession;
pub use session::{TlsConnector, TlsInfo};

use std::sync::Arc;
use std::time::Duration;

/// The most plaintext a connection keeps when written before its
/// handshake completed (more is refused with `WouldBlock`).
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// The engine's TLS settings (see the builder's
/// [`tls_server`](crate::EngineBuilder::tls_server),
/// [`tls_client`](crate::EngineBuilder::tls_client) and
/// [`tls_handshake_timeout`](crate::EngineBuilder::tls_handshake_timeout)).
///
/// ```
/// use ringloop::TlsOptions;
/// use std::time::Duration;
///
/// let tls = TlsOptions::default();
/// assert!(tls.server.is_none() && tls.client.is_none());
/// assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Serves `tls://` listen addresses. Required when there is one.
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// Verifies servers of `tls://` dials that do not bring their own
    /// [`TlsConnector`].
    pub client: Option<Arc<rustls::ClientConfig>>,
    /// How long a TLS handshake may take, from accept (or connect) to its
    /// last message. Default 10 s.
    pub handshake_timeout: Duration,
    /// Once a TLS 1.3 handshake completes (AES-128-GCM, AES-256-GCM or
    /// ChaCha20-Poly1305), the loop takes the record layer from rustls (as
    /// kTLS would) and seals and opens records in place with `ring`; rustls
    /// keeps the key schedule (key updates, session tickets). The hand-off
    /// comes at a write after the connection's first 32 reads and writes
    /// of application data (fewer when they are large: it costs about what
    /// rustls spends on 25 small records or 3 full ones, so short
    /// connections skip it). Default on:
    /// it saves rustls's per-record copy and allocation (~25 % of a TLS echo
    /// server's user-space instructions). Only for configs with
    /// `enable_secret_extraction` set, as [`ServerTls`] and
    /// [`client_config`] make them; TLS 1.2 and other suites stay on rustls.
    pub own_record_layer: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            server: None,
            client: None,
            handshake_timeout: Duration::from_secs(10),
            own_record_layer: true,
        }
    }
}

impl TlsOptions {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.handshake_timeout < Duration::from_millis(1) {
            return Err(crate::Error::InvalidConfig(format!(
                "TLS handshake timeout {:?} is below 1 ms",
                self.handshake_timeout
            )));
        }
        Ok(())
    }
}

/// The crypto provider every config made here uses (ring).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS input path outside a loop, for the fuzz targets (`fuzz/`), and
/// the record layer's test knobs: not part of the supported API.
#[doc(hidden)]
pub mod fuzzing {
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Arc;

    use super::session::TlsSession;
    use super::sink::sink;
    use crate::buffer::OutboundQueue;

    /// Sessions handed off from now on (in this process) update their
    /// write key after `records` records, as they do at the suite's
    /// confidentiality limit; `u64::MAX` restores that limit.
    pub fn set_write_key_limit(records: u64) {
        super::handoff::set_write_key_limit(records);
    }

    /// How many sessions of this process took their record layer from
    /// rustls (see [`TlsOptions::own_record_layer`](super::TlsOptions::own_record_layer)).
    pub fn hand_offs() -> u64 {
        super::handoff::hand_offs()
    }

    /// A server session driven as the event loop drives it: ciphertext in
    /// (any split), plaintext out through a small buffer (so it fills and
    /// drains many times), records to `socket` or a queue when it is full.
    pub struct ServerSide {
        session: TlsSession,
        socket: OwnedFd,
        queue: OutboundQueue,
        plaintext: Vec<u8>,
        peer_closed: bool,
    }

    impl ServerSide {
        /// A session under `config`, writing its records to `socket` (a
        /// non-blocking stream socket whose peer the caller reads).
        pub fn new(config: &Arc<rustls::ServerConfig>, socket: OwnedFd) -> crate::Result<Self> {
            Self::with_record_layer(config, socket, true)
        }

        /// As [`new`](Self::new); `own_record_layer`: see
        /// [`TlsOptions::own_record_layer`](super::TlsOptions::own_record_layer)
        /// (here the hand-off comes as soon as the handshake allows, not
        /// after the loop's first few dozen reads and writes).
        pub fn with_record_layer(
            config: &Arc<rustls::ServerConfig>,
            socket: OwnedFd,
            own_record_layer: bool,
        ) -> crate::Result<Self> {
            let mut session = TlsSession::server(config, own_record_layer)?;
            session.hand_off_at_once();
            Ok(Self {
                session,
                socket,
                queue: OutboundQueue::default(),
                plaintext: Vec::new(),
                peer_closed: false,
            })
        }

        /// Feeds one read's worth of ciphertext. A TLS error ends the
        /// session (its alert was sent).
        pub fn feed(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
            let mut out = [0u8; 1000];
            let mut input = data.to_vec();
            let mut input = &mut input[..];
            loop {
                let pumped = self.session.pump(input, &mut out);
                input = &mut [];
                let _ = self.session.take_opened();
                let mut to = sink(self.socket.as_fd(), &mut self.queue, 64 * 1024, true);
                let sent = self.session.send(&mut to);
                let pumped = pumped?;
                sent.map_err(|e| rustls::Error::General(e.to_string()))?;
                assert!(pumped.plain <= out.len());
                self.plaintext.extend_from_slice(&out[..pumped.plain]);
                self.peer_closed |= pumped.peer_closed;
                if pumped.peer_closed || !pumped.more {
                    return Ok(());
                }
            }
        }

        /// Encrypts `data` as a handler's write would.
        pub fn write(&mut self, data: &[u8]) -> crate::Result<()> {
            let mut to = sink(self.socket.as_fd(), &mut self.queue, 64 * 1024, true);
            self.session.write(&[data], &mut to)
        }

        /// Every plaintext byte delivered so far.
        pub fn plaintext(&self) -> &[u8] {
            &self.plaintext
        }

        /// The handshake has not completed.
        pub fn is_handshaking(&self) -> bool {
            self.session.is_handshaking()
        }

        /// The record layer was taken from rustls (after a TLS 1.3
        /// handshake with a suite the loop seals itself).
        pub fn handed_off(&self) -> bool {
            self.session.handed_off()
        }

        /// The peer sent `close_notify`.
        pub fn peer_closed(&self) -> bool {
            self.peer_closed
        }

        /// Ciphertext waiting for the socket.
        pub fn queued(&self) -> usize {
            self.queue.len()
        }
    }

    /// A client session (a `tls://` dial's) driven the same way, handing
    /// its record layer off as soon as the handshake allows (secret
    /// extraction on in `config`); it presents `localhost`.
    pub struct ClientSide(ServerSide);

    impl ClientSide {
        /// The session, its ClientHello already written to `socket`.
        pub fn new(config: &Arc<rustls::ClientConfig>, socket: OwnedFd) -> crate::Result<Self> {
            let mut session =
                super::TlsConnector::new(config.clone()).session("localhost", true)?;
            session.hand_off_at_once();
            let mut side = ServerSide {
                session,
                socket,
                queue: OutboundQueue::default(),
                plaintext: Vec::new(),
                peer_closed: false,
            };
            let mut to = sink(side.socket.as_fd(), &mut side.queue, 64 * 1024, true);
            side.session
                .send(&mut to)
                .map_err(|e| crate::Error::io("send", e))?;
            Ok(Self(side))
        }

        /// See [`ServerSide::feed`].
        pub fn feed(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
            self.0.feed(data)
        }

        /// See [`ServerSide::write`].
        pub fn write(&mut self, data: &[u8]) -> crate::Result<()> {
            self.0.write(data)
        }

        /// Every plaintext byte delivered so far.
        pub fn plaintext(&self) -> &[u8] {
            self.0.plaintext()
        }

        /// The handshake has not completed.
        pub fn is_handshaking(&self) -> bool {
            self.0.is_handshaking()
        }

        /// The record layer was taken from rustls.
        pub fn handed_off(&self) -> bool {
            self.0.handed_off()
        }
    }
}
