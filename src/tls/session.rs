//! [`TlsSession`]: one connection's rustls session and handshake state;
//! [`TlsConnector`]: how a dial verifies its server; [`TlsInfo`]: what a
//! handler may read of a session.
//!
//! Owns the session and moving bytes through it: ciphertext in (a slice
//! the loop read, decrypted in place), plaintext out (into the loop's read
//! buffer), plaintext in (encrypted), ciphertext out (into a
//! [`SocketSink`]); the steps of rustls's unbuffered state machine are in
//! `records.rs`. It never reads a socket and never calls a handler; it
//! keeps only the ciphertext of a record cut short (until the rest is read)
//! and a handshake flight (until the loop sends it).

use std::io;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, CommonState, ServerConfig};

use super::handoff::{self, Handoff, Opened};
use super::records::{drain_alerts, drive, seal_open, Fault, Job, Plain, Stop, Tx};
use super::sink::SocketSink;
use super::{sni, TLS_BUFFER_LIMIT};
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::runtime::message::Completion;

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
    pub(crate) fn session(&self, host: &str, own_record_layer: bool) -> Result<TlsSession> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string()).map_err(|e| {
                Error::InvalidConfig(format!("{host:?} is not a valid TLS server name: {e}"))
            })?,
        };
        let conn =
            UnbufferedClientConnection::new(self.config.clone(), name).map_err(Error::Tls)?;
        let handoff = own_record_layer && self.config.enable_secret_extraction;
        Ok(TlsSession::new(Side::Client(conn), handoff))
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

/// The rustls connection, unbuffered: records are decrypted in buffers the
/// loop owns and encrypted straight into its scratch buffer.
enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
    /// The record layer was taken from rustls after the handshake
    /// ([`TlsOptions::own_record_layer`](super::TlsOptions::own_record_layer)).
    Handed(Box<Handed>),
    /// Only while [`TlsSession::hand_off`] moves the rustls side out (and
    /// after, if rustls refused: the session has failed).
    Gone,
}

/// A handed-off session: its record layer, and what a handler may read
/// of the session (rustls's `CommonState` is gone).
struct Handed {
    layer: Handoff,
    alpn: Option<Vec<u8>>,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::SupportedCipherSuite>,
}

/// Runs `$body` with `$c` bound to whichever rustls side the session is,
/// `$handed` if it was handed off.
macro_rules! with_side {
    ($side:expr, $c:ident => $body:expr, $handed:expr) => {
        match $side {
            Side::Server($c) => $body,
            Side::Client($c) => $body,
            Side::Handed(_) | Side::Gone => $handed,
        }
    };
}

impl Side {
    /// rustls's state, until the session is handed off.
    fn common(&self) -> Option<&CommonState> {
        match self {
            Side::Server(c) => Some(c),
            Side::Client(c) => Some(c),
            Side::Handed(_) | Side::Gone => None,
        }
    }

    fn is_handshaking(&self) -> bool {
        self.common().is_some_and(CommonState::is_handshaking)
    }

    fn wants_write(&self) -> bool {
        self.common().is_some_and(CommonState::wants_write)
    }
}

/// Whether the SNI a server was asked for has been read yet.
enum SniState {
    /// Not yet (a server before its first complete record).
    Unread,
    /// Read (or a client: `None`).
    Read(Option<Box<str>>),
}

/// One connection's TLS session.
pub(crate) struct TlsSession {
    side: Side,
    phase: Phase,
    sni: SniState,
    /// The peer ended its TCP stream without `close_notify` and nothing
    /// was written since: it abandoned the session, so no `close_notify`
    /// is owed to it (as nginx does; a reply written after the end of
    /// stream is still followed by one).
    abandoned: bool,
    /// Ciphertext read and not yet consumed: the start of a record (or of a
    /// handshake message spread over records) waiting for the rest, or
    /// records left when the plaintext destination filled. Empty (and
    /// without an allocation) between messages.
    pending: Vec<u8>,
    /// Plaintext decrypted and not yet delivered (what did not fit in the
    /// loop's read buffer); at most about a record beyond it.
    plain_rest: Vec<u8>,
    /// Handshake records and alerts encoded and not yet sent.
    handshake_out: Vec<u8>,
    /// Plaintext written before the handshake completed (at most
    /// [`TLS_BUFFER_LIMIT`]), encrypted first once it has.
    early: Vec<u8>,
    /// The peer's `close_notify` came (no plaintext after what is held).
    close_notified: bool,
    /// The session failed with this error: nothing is read or written
    /// any more, only the alert it owes is sent.
    failed: Option<rustls::Error>,
    /// The record layer is to be taken from rustls once the handshake is
    /// done and the session allows it (see [`Self::hand_off`]).
    handoff: bool,
    /// Reads and writes of application data left before the hand-off.
    handoff_countdown: u32,
    /// The run of empty records rustls took last, carried over at the
    /// hand-off (read while one may come).
    empty_run: handoff::EmptyRun,
}

/// What [`TlsSession::pump`] got out of the session.
pub(crate) struct Pumped {
    /// Plaintext bytes placed at the start of the output buffer.
    pub(crate) plain: usize,
    /// The peer sent `close_notify` and every byte before it was delivered.
    pub(crate) peer_closed: bool,
    /// The output buffer filled, or the session failed after this
    /// plaintext: pump again (with no new input) for more, or the error.
    pub(crate) more: bool,
}

/// Reads (with plaintext) and writes of application data through rustls
/// before the record layer is handed off, each counting one unit plus one
/// per [`HANDOFF_BYTES_PER_UNIT`]: the hand-off costs about as many
/// instructions as rustls's record layer spends on ~25 small records or 3
/// full ones (~47,000: rustls derives the keys again; callgrind, TLS 1.3
/// AES-256-GCM; rustls's copy grows with the record), so a connection that
/// carries a message or two never pays for it.
const HANDOFF_AFTER: u32 = 32;

/// Bytes of a read or write that count one more unit toward the hand-off.
const HANDOFF_BYTES_PER_UNIT: usize = 2048;

/// The most ciphertext a session keeps waiting for the rest of a record or
/// handshake message (rustls refuses larger ones before this is reached).
const MAX_PENDING: usize = 96 * 1024;

impl TlsSession {
    fn new(side: Side, handoff: bool) -> Self {
        let sni = match side {
            Side::Server(_) => SniState::Unread,
            Side::Client(_) | Side::Handed(_) | Side::Gone => SniState::Read(None),
        };
        Self {
            side,
            phase: Phase::Handshaking {
                deadline_ms: u64::MAX,
                done: None,
            },
            sni,
            abandoned: false,
            pending: Vec::new(),
            plain_rest: Vec::new(),
            handshake_out: Vec::new(),
            early: Vec::new(),
            close_notified: false,
            failed: None,
            handoff,
            handoff_countdown: HANDOFF_AFTER,
            empty_run: handoff::EmptyRun::default(),
        }
    }

    /// Hands the record layer off as soon as the handshake allows, without
    /// waiting for [`HANDOFF_AFTER`] reads and writes (tests, fuzzing).
    pub(crate) fn hand_off_at_once(&mut self) {
        self.handoff_countdown = 0;
    }

    /// A server session under `config`; `own_record_layer`: see
    /// [`TlsOptions::own_record_layer`](super::TlsOptions::own_record_layer).
    pub(crate) fn server(config: &Arc<ServerConfig>, own_record_layer: bool) -> Result<Self> {
        let conn = UnbufferedServerConnection::new(config.clone()).map_err(Error::Tls)?;
        let handoff = own_record_layer && config.enable_secret_extraction;
        Ok(Self::new(Side::Server(conn), handoff))
    }

    /// Whether the record layer was taken from rustls.
    pub(crate) fn handed_off(&self) -> bool {
        matches!(self.side, Side::Handed(_))
    }

    /// Counts a read or write of `len` bytes toward the hand-off.
    fn count_toward_handoff(&mut self, len: usize) {
        let units = 1 + (len / HANDOFF_BYTES_PER_UNIT).min(HANDOFF_AFTER as usize) as u32;
        self.handoff_countdown = self.handoff_countdown.saturating_sub(units);
    }

    /// After rustls sealed `bufs` (see [`hand_off`](Self::hand_off)): the
    /// write went out, so a failed hand-off fails the session, which the
    /// next read or write reports.
    fn hand_off_after(&mut self, bufs: &[&[u8]]) {
        if bufs.iter().any(|b| !b.is_empty()) {
            if let Err(e) = self.hand_off() {
                log::debug!("TLS record layer hand-off failed: {e}");
            }
        }
    }

    /// Takes the record layer from rustls once that is safe: the handshake
    /// is complete, TLS 1.3 with a suite this crate seals, rustls owes the
    /// peer nothing, and no ciphertext is held (rustls may have decrypted
    /// part of a message in place there). Called only right after rustls
    /// sealed application data: rustls holds its answer to the peer's
    /// KeyUpdate (already under the old key, its write key already moved)
    /// until the next application data, which `wants_write` does not show,
    /// so only then is nothing held back. Until then rustls goes on.
    fn hand_off(&mut self) -> std::result::Result<(), rustls::Error> {
        let Some(common) = self.side.common() else {
            return Ok(());
        };
        if !self.handoff
            || self.handoff_countdown > 0
            || common.is_handshaking()
            || common.wants_write()
            || !self.pending.is_empty()
            || self.failed.is_some()
            || self.close_notified
        {
            return Ok(());
        }
        let (version, suite) = (common.protocol_version(), common.negotiated_cipher_suite());
        self.handoff = false;
        if !handoff::supported(version, suite) {
            return Ok(());
        }
        let alpn = common.alpn_protocol().map(<[u8]>::to_vec);
        let peer_certificates = common.peer_certificates().map(<[_]>::to_vec);
        let layer = match std::mem::replace(&mut self.side, Side::Gone) {
            Side::Server(conn) => Handoff::server(conn, &self.empty_run),
            Side::Client(conn) => Handoff::client(conn, &self.empty_run),
            other => {
                self.side = other;
                return Ok(());
            }
        };
        match layer {
            Ok(layer) => {
                self.side = Side::Handed(Box::new(Handed {
                    layer,
                    alpn,
                    peer_certificates,
                    version,
                    suite,
                }));
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
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
        if self.side.is_handshaking() || !self.is_handshaking() {
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

    /// Decrypts `input` (ciphertext just read; decrypted in place) and the
    /// session's own leftovers, placing plaintext in `out`: all of `input`
    /// is taken (what is not consumed now is kept). Stops when `out` is
    /// full (`more`: call again with empty input) or the input is used up.
    /// Handshake answers wait for [`send`](Self::send). A TLS error is
    /// returned after rustls queued the alert it owes the peer (`send`
    /// sends it); when records before the failing one carried plaintext
    /// (an open session), that plaintext is returned first, with `more`,
    /// and the error by the next pump (see `failed_after`).
    pub(crate) fn pump(
        &mut self,
        input: &mut [u8],
        out: &mut [u8],
    ) -> std::result::Result<Pumped, rustls::Error> {
        if let Some(e) = &self.failed {
            if self.plain_rest.is_empty() {
                return Err(e.clone());
            }
        }
        if self.handoff {
            // Before rustls decrypts it in place (and whether it takes it
            // now or later, it takes it all before a hand-off).
            self.empty_run.scan(input);
        }
        let mut plain = 0;
        if !self.plain_rest.is_empty() {
            plain = self.plain_rest.len().min(out.len());
            out[..plain].copy_from_slice(&self.plain_rest[..plain]);
            self.plain_rest.drain(..plain);
            if !self.plain_rest.is_empty() || self.failed.is_some() {
                // The input waits behind the plaintext already decrypted
                // (a failed session reads nothing more: it is dropped).
                if self.failed.is_none() {
                    if let Err(e) = self.keep(input) {
                        return self.failed_after(e, plain);
                    }
                }
                return Ok(Pumped {
                    plain,
                    peer_closed: false,
                    more: true,
                });
            }
            self.plain_rest = Vec::new();
        }
        // Straight from the loop's buffer, or after what the session kept.
        let direct = self.pending.is_empty();
        if !direct {
            self.pending.extend_from_slice(input);
        }
        if matches!(self.sni, SniState::Unread) {
            let first = if direct { &*input } else { &self.pending };
            if let sni::Sni::Known(name) = sni::client_hello_sni(first) {
                self.sni = SniState::Read(name);
            }
        }
        let mut dest = Plain {
            out: &mut out[plain..],
            len: 0,
            rest: &mut self.plain_rest,
        };
        let mut tx = Tx {
            handshake: &mut self.handshake_out,
            early: &mut self.early,
            sink: None,
        };
        let notified = &mut self.close_notified;
        let (stop, kept) = if direct {
            let (consumed, stop) = with_side!(&mut self.side, c => drive(c, input, &mut tx, &mut dest, Job::Read, notified),
                handed_read(&mut self.side, input, &mut dest, tx.handshake, notified));
            (stop, &input[consumed..])
        } else {
            let (consumed, stop) = with_side!(&mut self.side, c =>
                drive(c, &mut self.pending, &mut tx, &mut dest, Job::Read, notified),
                handed_read(&mut self.side, &mut self.pending, &mut dest, tx.handshake, notified));
            self.pending.drain(..consumed);
            (stop, &[][..])
        };
        plain += dest.len;
        let stop = match stop {
            Ok(stop) => stop,
            // A failed session reads nothing more (its alert goes out
            // without rustls looking at input again): the input is dropped.
            Err(Fault::Tls(e)) => return self.failed_after(e, plain),
            Err(Fault::Io(e)) => {
                return self.failed_after(rustls::Error::General(e.to_string()), plain)
            }
        };
        if self.close_notified || stop == Stop::Closed {
            // Whatever follows close_notify is ignored.
            self.pending = Vec::new();
        } else if !kept.is_empty() {
            self.pending.extend_from_slice(kept);
        }
        if self.pending.len() > MAX_PENDING {
            let e = format!(
                "{} bytes of ciphertext without a complete message",
                self.pending.len()
            );
            return self.failed_after(rustls::Error::General(e), plain);
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        if plain > 0 {
            self.count_toward_handoff(plain);
        }
        let more = stop == Stop::Full || !self.plain_rest.is_empty();
        Ok(Pumped {
            plain,
            peer_closed: self.close_notified && !more,
            more,
        })
    }

    /// The session failed with `e` in a pump that had already placed
    /// `plain` bytes of plaintext, decrypted from records that came before
    /// the failure: those (and any held beyond `out`) are delivered first,
    /// as rustls keeps plaintext received before an error readable, and
    /// the next pump returns `e`. The session fails at once (its alert
    /// goes out with the next send; nothing more is read or written).
    /// Plaintext before a failure during the handshake (early data) is
    /// dropped: the connection never opened.
    fn failed_after(
        &mut self,
        e: rustls::Error,
        plain: usize,
    ) -> std::result::Result<Pumped, rustls::Error> {
        let e = self.fail(e);
        if self.side.is_handshaking() || (plain == 0 && self.plain_rest.is_empty()) {
            self.plain_rest = Vec::new();
            return Err(e);
        }
        Ok(Pumped {
            plain,
            peer_closed: false,
            more: true,
        })
    }

    /// Records that the session failed with `e` (returned).
    fn fail(&mut self, e: rustls::Error) -> rustls::Error {
        self.failed = Some(e.clone());
        self.pending = Vec::new();
        e
    }

    /// Keeps `input` for a later pump.
    fn keep(&mut self, input: &[u8]) -> std::result::Result<(), rustls::Error> {
        if self.pending.len() + input.len() > MAX_PENDING {
            return Err(self.fail(rustls::Error::General(
                "too much ciphertext waiting behind undelivered plaintext".into(),
            )));
        }
        self.pending.extend_from_slice(input);
        Ok(())
    }

    /// One run of the session over its leftovers with `sink` for records.
    fn run(&mut self, job: Job<'_>, sink: &mut SocketSink<'_>) -> Result<Stop, Fault> {
        if let Some(e) = &self.failed {
            return Err(Fault::Tls(e.clone()));
        }
        let mut tx = Tx {
            handshake: &mut self.handshake_out,
            early: &mut self.early,
            sink: Some(sink),
        };
        let mut dest = Plain {
            out: &mut [],
            len: 0,
            rest: &mut self.plain_rest,
        };
        let notified = &mut self.close_notified;
        let (consumed, stop) = with_side!(&mut self.side, c =>
            drive(c, &mut self.pending, &mut tx, &mut dest, job, notified),
            (0, Ok(Stop::Idle)));
        self.pending.drain(..consumed);
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        if let Err(Fault::Tls(e)) = &stop {
            self.fail(e.clone());
        }
        stop
    }

    /// Encrypts `bufs`, in order, and hands the records to `sink` in one
    /// go (one write for a connection with nothing queued, up to 64 KiB of
    /// plaintext). Before the handshake completes, keeps the plaintext (up
    /// to [`TLS_BUFFER_LIMIT`]) to send once it has.
    pub(crate) fn write(&mut self, bufs: &[&[u8]], sink: &mut SocketSink<'_>) -> Result<()> {
        self.abandoned = false;
        self.count_toward_handoff(bufs.iter().map(|b| b.len()).sum());
        if matches!(self.side, Side::Handed(_)) {
            if let Some(e) = &self.failed {
                return Err(Error::Tls(e.clone()));
            }
            if !self.handshake_out.is_empty() || !self.early.is_empty() {
                self.send(sink).map_err(|e| Error::io("write", e))?;
            }
            if let Side::Handed(handed) = &mut self.side {
                return handed_write(&mut handed.layer, bufs, sink);
            }
        }
        if self.pending.is_empty()
            && self.handshake_out.is_empty()
            && self.early.is_empty()
            && self.failed.is_none()
            && !self.side.wants_write()
        {
            let notified = &mut self.close_notified;
            match with_side!(&mut self.side, c => seal_open(c, bufs, sink, notified), None) {
                Some(Ok(())) => {
                    self.hand_off_after(bufs);
                    return Ok(());
                }
                Some(Err(Fault::Io(e))) => return Err(Error::io("write", e)),
                Some(Err(Fault::Tls(e))) => return Err(Error::Tls(e)),
                None => {}
            }
        }
        match self.run(Job::Seal(bufs), sink) {
            Ok(Stop::Idle | Stop::Full) => {
                self.hand_off_after(bufs);
                Ok(())
            }
            Ok(Stop::Handshaking) => {
                let len: usize = bufs.iter().map(|b| b.len()).sum();
                if self.early.len() + len > TLS_BUFFER_LIMIT {
                    return Err(Error::io(
                        "TLS write",
                        io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "more plaintext than the session buffers before its handshake",
                        ),
                    ));
                }
                for buf in bufs {
                    self.early.extend_from_slice(buf);
                }
                Ok(())
            }
            Ok(Stop::Closed) => Err(Error::io(
                "TLS write",
                io::Error::new(io::ErrorKind::BrokenPipe, "the TLS session is closed"),
            )),
            Err(Fault::Io(e)) => Err(Error::io("write", e)),
            Err(Fault::Tls(e)) => Err(Error::Tls(e)),
        }
    }

    /// Hands every record the session owes the peer (handshake messages,
    /// alerts, key updates, and plaintext written during the handshake) to
    /// `sink`.
    pub(crate) fn send(&mut self, sink: &mut SocketSink<'_>) -> io::Result<()> {
        if !self.handshake_out.is_empty() {
            sink.put(&self.handshake_out)?;
            self.handshake_out = Vec::new();
        }
        if self.failed.is_some() {
            let mut tx = Tx {
                handshake: &mut self.handshake_out,
                early: &mut self.early,
                sink: Some(sink),
            };
            return with_side!(&mut self.side, c => drain_alerts(c, &mut tx), tx.flush_handshake());
        }
        if let Side::Handed(handed) = &mut self.side {
            if self.early.is_empty() {
                return Ok(());
            }
            let early = std::mem::take(&mut self.early);
            return match handed_write(&mut handed.layer, &[&early], sink) {
                Err(Error::Io { source, .. }) => Err(source),
                _ => Ok(()),
            };
        }
        if !self.side.wants_write() && (self.early.is_empty() || self.is_handshaking()) {
            return Ok(());
        }
        match self.run(Job::Send, sink) {
            Err(Fault::Io(e)) => Err(e),
            // A failed session's error was reported by the read that failed.
            _ => Ok(()),
        }
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

    /// Sends `close_notify` (once; never after a fatal alert).
    pub(crate) fn close_notify(&mut self, sink: &mut SocketSink<'_>) -> io::Result<()> {
        if let Side::Handed(handed) = &mut self.side {
            if self.failed.is_some() {
                return Ok(());
            }
            // Records the layer owes first (a KeyUpdate answer is sealed
            // under the old key, the close_notify under the new one).
            if !self.handshake_out.is_empty() {
                sink.put(&self.handshake_out)?;
                self.handshake_out = Vec::new();
            }
            let mut record = Vec::new();
            handed.layer.close_notify(&mut record);
            return sink.put(&record);
        }
        match self.run(Job::CloseNotify, sink) {
            Err(Fault::Io(e)) => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn info(&self) -> TlsInfo<'_> {
        let sni = match &self.sni {
            SniState::Read(name) => name.as_deref(),
            SniState::Unread => None,
        };
        match (&self.side, self.side.common()) {
            (Side::Handed(h), _) => TlsInfo {
                alpn: h.alpn.as_deref(),
                peer_certificates: h.peer_certificates.as_deref(),
                version: h.version,
                suite: h.suite,
                sni,
            },
            (_, Some(common)) => TlsInfo {
                alpn: common.alpn_protocol(),
                peer_certificates: common.peer_certificates(),
                version: common.protocol_version(),
                suite: common.negotiated_cipher_suite(),
                sni,
            },
            (_, None) => TlsInfo {
                alpn: None,
                peer_certificates: None,
                version: None,
                suite: None,
                sni,
            },
        }
    }
}

/// Plaintext sealed per hand to the sink by a handed-off session.
const HANDED_STEP: usize = 4 * handoff::MAX_PLAIN;

thread_local! {
    /// Where a handed-off session's records are sealed before they go to
    /// the socket: one per loop thread, never per connection.
    static HANDED_SEAL: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// [`drive`]'s counterpart for a handed-off session: opens the whole
/// records at the front of `buf` (in place) into `dest`; what the session
/// owes the peer (a KeyUpdate answer, an alert) is sealed onto `out`.
fn handed_read(
    side: &mut Side,
    buf: &mut [u8],
    dest: &mut Plain<'_>,
    out: &mut Vec<u8>,
    peer_closed: &mut bool,
) -> (usize, std::result::Result<Stop, Fault>) {
    let Side::Handed(handed) = side else {
        return (0, Ok(Stop::Idle));
    };
    let (consumed, opened) = handed.layer.open(buf, dest, out);
    let stop = match opened {
        Ok(Opened::Idle) => Ok(Stop::Idle),
        Ok(Opened::Full) => Ok(Stop::Full),
        Ok(Opened::PeerClosed) => {
            *peer_closed = true;
            Ok(Stop::Idle)
        }
        Err(e) => Err(Fault::Tls(e)),
    };
    (consumed, stop)
}

/// Seals `bufs`, in order, as a handed-off session's records and hands
/// them to `sink` (once per [`HANDED_STEP`] of plaintext).
fn handed_write(layer: &mut Handoff, bufs: &[&[u8]], sink: &mut SocketSink<'_>) -> Result<()> {
    if layer.tx_closed() {
        return Err(Error::io(
            "TLS write",
            io::Error::new(io::ErrorKind::BrokenPipe, "the TLS session is closed"),
        ));
    }
    let mut out = HANDED_SEAL.take();
    out.clear();
    let mut seal_all = || -> Result<()> {
        for buf in bufs {
            for step in buf.chunks(HANDED_STEP) {
                layer.seal(step, &mut out).map_err(Error::Tls)?;
                if out.len() >= HANDED_STEP {
                    sink.put(&out).map_err(|e| Error::io("write", e))?;
                    out.clear();
                }
            }
        }
        if !out.is_empty() {
            sink.put(&out).map_err(|e| Error::io("write", e))?;
        }
        Ok(())
    };
    let result = seal_all();
    out.clear();
    HANDED_SEAL.set(out);
    result
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
    alpn: Option<&'a [u8]>,
    peer_certificates: Option<&'a [CertificateDer<'static>]>,
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::SupportedCipherSuite>,
    sni: Option<&'a str>,
}

impl<'a> TlsInfo<'a> {
    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&'a [u8]> {
        self.alpn
    }

    /// On a server: the name the client asked for (SNI), if it sent one.
    /// On a client: `None`.
    pub fn server_name(&self) -> Option<&'a str> {
        self.sni
    }

    /// The peer's certificate chain, if it sent one (a client certificate
    /// on a server; the server's chain on a client).
    pub fn peer_certificates(&self) -> Option<&'a [CertificateDer<'static>]> {
        self.peer_certificates
    }

    /// The protocol version agreed on (`TLSv1_3`, `TLSv1_2`).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.version
    }

    /// The cipher suite agreed on.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.suite
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The SNI name is read even when the ClientHello comes in pieces.
    #[test]
    fn sni_from_a_client_hello_split_over_reads() {
        let cert = rcgen::generate_simple_self_signed(vec!["sni.example".into()]).unwrap();
        let config = Arc::new(
            crate::tls::ServerTls::from_pem(
                cert.cert.pem().as_bytes(),
                cert.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap()
            .build()
            .unwrap(),
        );
        let client_config = rustls::ClientConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from("sni.example").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        for cut in [1, 4, 5, 6, 100, hello.len() - 1] {
            let mut server = TlsSession::server(&config, true).unwrap();
            let mut out = [0u8; 64];
            let (first, rest) = hello.split_at(cut);
            server.pump(&mut first.to_vec(), &mut out).unwrap();
            assert_eq!(server.info().server_name(), None, "cut {cut}: not yet");
            server.pump(&mut rest.to_vec(), &mut out).unwrap();
            assert_eq!(
                server.info().server_name(),
                Some("sni.example"),
                "cut {cut}"
            );
        }
        // The ClientHello in two records, each in its own read: rustls
        // takes the first whole record before the second comes.
        let body = &hello[5..];
        for cut in [1, 4, 40, body.len() - 1] {
            let record = |part: &[u8]| {
                let mut r = vec![22, 3, 1];
                r.extend_from_slice(&(part.len() as u16).to_be_bytes());
                r.extend_from_slice(part);
                r
            };
            let mut server = TlsSession::server(&config, true).unwrap();
            let mut out = [0u8; 64];
            server.pump(&mut record(&body[..cut]), &mut out).unwrap();
            assert_eq!(
                server.info().server_name(),
                None,
                "records cut {cut}: not yet"
            );
            server.pump(&mut record(&body[cut..]), &mut out).unwrap();
            assert_eq!(
                server.info().server_name(),
                Some("sni.example"),
                "records cut {cut}"
            );
            assert!(
                server.is_handshaking(),
                "records cut {cut}: handshake goes on"
            );
        }
    }
}
