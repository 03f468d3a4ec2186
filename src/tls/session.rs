//! [`TlsSession`]: one connection's rustls session and handshake state;
//! [`TlsConnector`]: how a dial verifies its server; [`TlsInfo`]: what a
//! handler may read of a session.
//!
//! Owns the session and moving bytes through it: ciphertext in (from a
//! slice the loop read), plaintext out (into the loop's read buffer),
//! plaintext in (encrypted), ciphertext out (into a [`SocketSink`]). It
//! never reads a socket, never calls a handler and never keeps ciphertext
//! for later: what rustls produces is handed to the sink at once.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::TLS_BUFFER_LIMIT;
use crate::buffer::OutboundQueue;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::runtime::message::Completion;
use crate::sys;

/// How a `tls://` dial verifies its server: a client config (roots, client
/// certificate, ALPN) and the server name to present and check (SNI). By
/// default the name is the address's host (`localhost` or the IP literal).
///
/// ```
/// use ringloop::tls::TlsConnector;
/// # fn ca() -> String {
/// #     let key = rcgen::KeyPair::generate().unwrap();
/// #     let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
/// #     params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
/// #     params.self_signed(&key).unwrap().pem()
/// # }
/// let config = ringloop::tls::client_config(ca().as_bytes())?;
/// let connector = TlsConnector::new(config).server_name("backend.internal")?;
/// // engine.dial_tls("tls://10.0.0.7:443", connector) verifies "backend.internal".
/// assert!(TlsConnector::new(ringloop::tls::client_config(ca().as_bytes())?).server_name("not a name!").is_err());
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl TlsConnector {
    /// Dials with `config`, presenting the address's host as server name.
    pub fn new(config: impl Into<Arc<ClientConfig>>) -> Self {
        Self {
            config: config.into(),
            name: None,
        }
    }

    /// Presents and verifies `name` (a DNS name or an IP address) instead.
    pub fn server_name(mut self, name: &str) -> Result<Self> {
        let name = ServerName::try_from(name.to_string()).map_err(|e| {
            Error::InvalidConfig(format!("{name:?} is not a valid TLS server name: {e}"))
        })?;
        self.name = Some(name);
        Ok(self)
    }

    /// A client session for a dial to `host` (the address's host, used
    /// unless a name was given).
    pub(crate) fn session(&self, host: &str) -> Result<TlsSession> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string()).map_err(|e| {
                Error::InvalidConfig(format!("{host:?} is not a valid TLS server name: {e}"))
            })?,
        };
        let conn = ClientConnection::new(self.config.clone(), name).map_err(Error::Tls)?;
        Ok(TlsSession::new(conn.into()))
    }
}

/// Where a connection is in its TLS life.
enum Phase {
    /// The handshake runs; `deadline_ms` (loop time) ends it, `done` is the
    /// dial waiting for it (a dial through the engine).
    Handshaking {
        deadline_ms: u64,
        done: Option<Completion<ConnId>>,
    },
    /// Handshake complete: application data flows.
    Open,
}

/// One connection's TLS session.
pub(crate) struct TlsSession {
    conn: Connection,
    phase: Phase,
    /// The peer ended its TCP stream without `close_notify` and nothing
    /// was written since: it abandoned the session, so no `close_notify`
    /// is owed to it (as nginx does; a reply written after the end of
    /// stream is still followed by one).
    abandoned: bool,
    /// Plaintext rustls holds, not yet read (as of the last
    /// `process_new_packets`, less what was read since).
    plain_held: usize,
    /// The peer's `close_notify` came (no plaintext after what is held).
    close_notified: bool,
}

/// What [`TlsSession::pump`] got out of the session.
pub(crate) struct Pumped {
    /// Plaintext bytes placed at the start of the output buffer.
    pub(crate) plain: usize,
    /// The peer sent `close_notify`: no more plaintext will come.
    pub(crate) peer_closed: bool,
}

impl TlsSession {
    fn new(mut conn: Connection) -> Self {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Self {
            conn,
            phase: Phase::Handshaking {
                deadline_ms: u64::MAX,
                done: None,
            },
            abandoned: false,
            plain_held: 0,
            close_notified: false,
        }
    }

    /// A server session under `config`.
    pub(crate) fn server(config: &Arc<ServerConfig>) -> Result<Self> {
        let conn = ServerConnection::new(config.clone()).map_err(Error::Tls)?;
        Ok(Self::new(conn.into()))
    }

    /// Starts the handshake clock; `done` (a dial) hears the outcome.
    pub(crate) fn begin(&mut self, deadline_ms: u64, done: Option<Completion<ConnId>>) {
        self.phase = Phase::Handshaking { deadline_ms, done };
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshaking { .. })
    }

    /// When the handshake fails for time, while it runs.
    pub(crate) fn handshake_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Handshaking { deadline_ms, .. } => Some(deadline_ms),
            Phase::Open => None,
        }
    }

    /// If rustls finished the handshake, moves to [`Phase::Open`] and
    /// returns `Some` with the dial's completion (if any).
    pub(crate) fn take_opened(&mut self) -> Option<Option<Completion<ConnId>>> {
        if self.conn.is_handshaking() || !self.is_handshaking() {
            return None;
        }
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Handshaking { done, .. } => Some(done),
            Phase::Open => None,
        }
    }

    /// Ends the handshake phase without opening; returns the dial waiting.
    pub(crate) fn take_dial(&mut self) -> Option<Completion<ConnId>> {
        match &mut self.phase {
            Phase::Handshaking { done, .. } => done.take(),
            Phase::Open => None,
        }
    }

    /// Moves ciphertext from `input` (advancing it) through the session and
    /// plaintext into `out`, until `out` is full, or `input` is used up and
    /// no plaintext is left. A TLS error is returned after rustls queued the
    /// alert it owes the peer (send it with [`send`](Self::send)).
    ///
    /// Reads plaintext only when rustls said it holds some (the state
    /// `process_new_packets` returns), so a record costs one read of it,
    /// not that plus the reads that find nothing.
    pub(crate) fn pump(
        &mut self,
        input: &mut &[u8],
        out: &mut [u8],
    ) -> std::result::Result<Pumped, rustls::Error> {
        let mut plain = 0;
        loop {
            while self.plain_held > 0 && plain < out.len() {
                match self.conn.reader().read(&mut out[plain..]) {
                    Ok(n) if n > 0 => {
                        plain += n;
                        self.plain_held = self.plain_held.saturating_sub(n);
                    }
                    // Nothing after all (never, as rustls counted it).
                    _ => self.plain_held = 0,
                }
            }
            if self.plain_held == 0 && self.close_notified {
                return Ok(Pumped {
                    plain,
                    peer_closed: true,
                });
            }
            if plain == out.len() || input.is_empty() {
                return Ok(Pumped {
                    plain,
                    peer_closed: false,
                });
            }
            match self.conn.read_tls(input) {
                // close_notify came already: whatever follows is ignored.
                Ok(0) => *input = &[],
                Ok(_) => {}
                // Its buffers are full, which draining above rules out for
                // plaintext; for records it means an oversized message.
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let state = self.conn.process_new_packets()?;
            self.plain_held = state.plaintext_bytes_to_read();
            self.close_notified = state.peer_has_closed();
        }
    }

    /// Encrypts `bufs`, in order, and hands the records to `sink` in one
    /// go (one `writev` for a connection with nothing queued), or in
    /// [`TLS_BUFFER_LIMIT`]-sized steps for more than that.
    pub(crate) fn write(&mut self, bufs: &[&[u8]], sink: &mut SocketSink<'_>) -> Result<()> {
        self.abandoned = false;
        for buf in bufs {
            let mut data = *buf;
            while !data.is_empty() {
                let mut n = self.encrypt(data)?;
                if n == 0 && self.conn.wants_write() {
                    // rustls holds its limit of ciphertext: move it on.
                    self.send(sink).map_err(|e| Error::io("write", e))?;
                    n = self.encrypt(data)?;
                }
                if n == 0 {
                    // Only before the handshake completes, with early
                    // plaintext over its limit: nothing can take it now.
                    return Err(Error::io(
                        "TLS write",
                        io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "more plaintext than the session buffers before its handshake",
                        ),
                    ));
                }
                data = &data[n..];
            }
        }
        self.send(sink).map_err(|e| Error::io("write", e))
    }

    /// Encrypts what rustls takes of `data` (up to its buffer limit).
    fn encrypt(&mut self, data: &[u8]) -> Result<usize> {
        self.conn
            .writer()
            .write(data)
            .map_err(|e| Error::io("TLS write", e))
    }

    /// Hands every record rustls wants sent (handshake, alerts, data) to
    /// `sink`.
    pub(crate) fn send(&mut self, sink: &mut SocketSink<'_>) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(sink)?;
        }
        Ok(())
    }

    /// The peer's TCP stream ended without `close_notify` (see
    /// [`owes_close_notify`](Self::owes_close_notify)).
    pub(crate) fn peer_abandoned(&mut self) {
        self.abandoned = true;
    }

    /// Whether a local close should send `close_notify`: once the
    /// handshake is done, unless the peer abandoned the session and was
    /// sent nothing since.
    pub(crate) fn owes_close_notify(&self) -> bool {
        !self.is_handshaking() && !self.abandoned
    }

    /// Queues `close_notify` (once; never after a fatal alert) and sends it.
    pub(crate) fn close_notify(&mut self, sink: &mut SocketSink<'_>) -> io::Result<()> {
        self.conn.send_close_notify();
        self.send(sink)
    }

    pub(crate) fn info(&self) -> TlsInfo<'_> {
        TlsInfo { conn: &self.conn }
    }
}

/// Where ciphertext goes: straight to the socket while the connection has
/// nothing queued, into its outbound queue otherwise (and for whatever the
/// socket does not take). It always takes everything, so rustls never keeps
/// ciphertext, and byte order is kept.
pub(crate) struct SocketSink<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) queue: &'a mut OutboundQueue,
    pub(crate) cap: usize,
    /// Bytes the socket took.
    pub(crate) written: usize,
}

impl Write for SocketSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut skip = 0;
        if self.queue.is_empty() {
            // One record (the common case: a reply of up to 16 KiB) goes
            // by the raw send, without glibc's cancellable sendmsg and the
            // kernel's copy of a msghdr and an iovec array.
            let sent = match bufs {
                [one] => sys::io::write(self.fd, one),
                _ => sys::io::writev(self.fd, bufs),
            };
            match sent {
                Ok(n) => skip = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.written += skip;
        for buf in bufs {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            self.queue.push(&buf[skip..], self.cap);
            skip = 0;
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a handler can read of a connection's TLS session
/// ([`Conn::tls`](crate::Conn::tls)).
///
/// ```
/// use ringloop::{Action, Conn, EventHandler};
///
/// struct Alpn;
/// impl EventHandler for Alpn {
///     type State = ();
///     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         if let Some(tls) = conn.tls() {
///             let h2 = tls.alpn_protocol() == Some(b"h2");
///             log::info!("TLS to {:?}, h2: {h2}", tls.server_name());
///         }
///         Action::None
///     }
/// }
/// ```
pub struct TlsInfo<'a> {
    conn: &'a Connection,
}

impl<'a> TlsInfo<'a> {
    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&'a [u8]> {
        self.conn.alpn_protocol()
    }

    /// On a server: the name the client asked for (SNI), if it sent one.
    /// On a client: `None`.
    pub fn server_name(&self) -> Option<&'a str> {
        match self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The peer's certificate chain, if it sent one (a client certificate
    /// on a server; the server's chain on a client).
    pub fn peer_certificates(&self) -> Option<&'a [CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The protocol version agreed on (`TLSv1_3`, `TLSv1_2`).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The cipher suite agreed on.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }
}

impl std::fmt::Debug for TlsInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsInfo")
            .field("version", &self.protocol_version())
            .field("alpn", &self.alpn_protocol())
            .field("server_name", &self.server_name())
            .finish()
    }
}

/// A sink for `entry`'s socket and queue.
pub(crate) fn sink<'a>(
    fd: BorrowedFd<'a>,
    queue: &'a mut OutboundQueue,
    cap: usize,
) -> SocketSink<'a> {
    SocketSink {
        fd,
        queue,
        cap,
        written: 0,
    }
}
