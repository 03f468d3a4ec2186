//! What a callback asks for and why a connection ended: [`Action`],
//! [`CloseReason`], [`TimeoutKind`].
//!
//! Vocabulary only: the loop, the connection view and the handlers all name
//! these, so they sit below all of them. It must never import a module
//! above the vocabulary layer.

use std::fmt;
use std::io;

/// What the engine should do after a callback.
///
/// ```
/// use ringloop::{Action, Conn, EventHandler};
///
/// /// Echoes lines; "quit" closes the connection, "stop" stops the server.
/// struct Console;
///
/// impl EventHandler for Console {
///     type State = ();
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         match conn.read_all().trim_ascii() {
///             b"quit" => Action::Close,
///             b"stop" => Action::Shutdown,
///             line => {
///                 let _ = conn.write(line);
///                 Action::None
///             }
///         }
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[must_use]
pub enum Action {
    /// Carry on.
    #[default]
    None,
    /// Close this connection (after flushing what was written to it).
    Close,
    /// Stop the whole engine: stop accepting, close every connection, return
    /// from `run`.
    Shutdown,
}

/// Why a connection closed; given to [`EventHandler::on_close`](crate::EventHandler::on_close).
///
/// ```
/// use ringloop::{Action, CloseReason, Conn, EventHandler};
///
/// struct Logger;
///
/// impl EventHandler for Logger {
///     type State = ();
///     fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
///         match reason {
///             CloseReason::Eof | CloseReason::Local | CloseReason::Shutdown => {}
///             CloseReason::Timeout(kind) => log::info!("{}: {kind:?} timeout", conn.peer_addr()),
///             other => log::warn!("{}: {other}", conn.peer_addr()),
///         }
///         Action::None
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (end of stream) and everything queued for it
    /// was written.
    Eof,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`).
    Reset,
    /// A socket error other than a reset.
    Error(io::Error),
    /// This side closed it: [`Action::Close`] or [`Conn::close`](crate::Conn::close).
    Local,
    /// A handle asked for it from another thread.
    Requested,
    /// The engine is shutting down.
    Shutdown,
    /// A timeout expired (see [`Timeouts`](crate::Timeouts)).
    Timeout(TimeoutKind),
    /// The outbound queue passed its high-water mark under the
    /// [`BackPressure::Close`](crate::BackPressure::Close) policy.
    BackPressure,
    /// The peer sent more than the handler consumed, past the engine's
    /// [`max_inbound`](crate::EngineBuilder::max_inbound).
    InboundLimit,
    /// The handler closed it for a protocol error
    /// ([`Conn::close_with_error`](crate::Conn::close_with_error); [`Framed`](crate::codec::Framed) does so
    /// for a codec error), after flushing what was queued (an error reply).
    Protocol(Box<dyn std::error::Error + Send + Sync>),
    /// A listener added with
    /// [`listen_proxied`](crate::EngineBuilder::listen_proxied) got no valid
    /// PROXY protocol header in time; the connection never opened (see
    /// [`EventHandler::on_reject`](crate::EventHandler::on_reject)).
    ProxyHeader(crate::proxy_protocol::ProxyHeaderError),
    /// Its source address already had
    /// [`max_conns_per_source`](crate::EngineBuilder::max_conns_per_source)
    /// connections open; the connection never opened (see
    /// [`EventHandler::on_reject`](crate::EventHandler::on_reject)).
    SourceLimit,
    /// The engine's buffered bytes passed its
    /// [`buffer_budget`](crate::EngineBuilder::buffer_budget) and this connection
    /// held the most on its loop.
    BufferBudget,
    /// TLS failed on a `tls://` connection: the peer sent something that is
    /// not TLS, a record that fails to decrypt or is too long, an alert, or
    /// a certificate this side does not accept. The alert rustls owed the
    /// peer was sent first.
    Tls(rustls::Error),
}

/// Which timeout closed a connection.
///
/// ```
/// use ringloop::{Action, CloseReason, Conn, EventHandler, TimeoutKind};
///
/// struct Polite;
///
/// impl EventHandler for Polite {
///     type State = ();
///     fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
///         if let CloseReason::Timeout(TimeoutKind::Idle | TimeoutKind::Read) = reason {
///             let _ = conn.write(b"timed out, bye\r\n"); // flushed best-effort
///         }
///         Action::None
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Nothing read or written for the idle timeout.
    Idle,
    /// Nothing read for the read timeout.
    Read,
    /// Bytes queued and none written for the write timeout.
    Write,
    /// A dial did not connect within the connect timeout.
    Connect,
    /// Input left unconsumed (an unfinished message) for the incomplete
    /// timeout.
    Incomplete,
    /// Nothing read or written for the half-closed timeout after one
    /// direction closed.
    HalfClosed,
    /// A TLS handshake did not finish within the handshake timeout.
    Handshake,
}

impl CloseReason {
    /// Classifies an I/O error met on a connection.
    pub(crate) fn from_io(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Self::Reset,
            _ => Self::Error(err),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("closed by peer"),
            Self::Reset => f.write_str("reset by peer"),
            Self::Error(e) => write!(f, "socket error: {e}"),
            Self::Local => f.write_str("closed locally"),
            Self::Requested => f.write_str("closed by request from another thread"),
            Self::Shutdown => f.write_str("engine shutdown"),
            Self::Timeout(TimeoutKind::Idle) => f.write_str("idle timeout"),
            Self::Timeout(TimeoutKind::Read) => f.write_str("read timeout"),
            Self::Timeout(TimeoutKind::Write) => f.write_str("write timeout"),
            Self::Timeout(TimeoutKind::Connect) => f.write_str("connect timeout"),
            Self::Timeout(TimeoutKind::Incomplete) => {
                f.write_str("incomplete input timeout (an unfinished message stopped arriving)")
            }
            Self::Timeout(TimeoutKind::HalfClosed) => f.write_str("half-closed timeout"),
            Self::Timeout(TimeoutKind::Handshake) => f.write_str("TLS handshake timeout"),
            Self::BackPressure => f.write_str("outbound queue above its high-water mark"),
            Self::InboundLimit => f.write_str("unconsumed input above the inbound limit"),
            Self::BufferBudget => {
                f.write_str("the engine's buffer budget is spent and this connection held the most")
            }
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::ProxyHeader(e) => write!(f, "{e}"),
            Self::SourceLimit => f.write_str("too many connections from this source address"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
        }
    }
}
