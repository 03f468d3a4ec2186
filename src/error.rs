//! ringloop's error type: every fallible public call returns [`Error`].
//!
//! Owns only the error vocabulary. Errors never carry a panic: bad input from
//! the network or the OS becomes one of these, and the connection it concerns
//! is closed with it as the reason; nothing else is affected.

use std::fmt;
use std::io;

/// Everything that can go wrong in ringloop.
///
/// ```
/// use ringloop::{Engine, Error, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// match Engine::builder(|_| Quiet).listen("tulip://127.0.0.1:0").build() {
///     Err(Error::UnsupportedScheme { scheme, .. }) => assert_eq!(scheme, "tulip"),
///     Err(other) => panic!("unexpected error: {other}"),
///     Ok(_) => panic!("tulip:// is not served"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An address could not be parsed: `addr` is what was given, `reason`
    /// says what is wrong with it.
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address names a scheme ringloop does not serve (`tulip://…`).
    UnsupportedScheme {
        /// The address as given.
        addr: String,
        /// The scheme found.
        scheme: String,
    },
    /// An option is out of range (zero loops, an absurd buffer size, …).
    InvalidConfig(String),
    /// A system call failed; `context` says what ringloop was doing.
    Io {
        /// What ringloop was doing.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The engine has stopped (or is stopping); the request was not carried out.
    EngineStopped,
    /// The connection is closed; the request was not carried out.
    ConnectionClosed,
    /// A mailbox lane is full; the request was not queued (try again later).
    MailboxFull,
    /// The operation does not apply to this kind of connection (for example
    /// `send_to` on a stream).
    Unsupported(&'static str),
    /// TLS failed: a handshake error (an untrusted or wrong-name certificate
    /// when dialling, an alert from the peer), or bad TLS configuration.
    Tls(rustls::Error),
    /// The engine was asked for an I/O driver this system cannot run
    /// ([`Backend::IoUring`](crate::Backend::IoUring) where io_uring is
    /// refused or lacks a needed feature); `reason` names what is missing.
    BackendUnavailable {
        /// The driver asked for.
        backend: crate::Backend,
        /// What is missing.
        reason: String,
    },
}

impl Error {
    /// Wraps an OS error with what ringloop was doing when it happened.
    ///
    /// ```
    /// use ringloop::Error;
    /// use std::error::Error as _;
    /// let err = Error::io("reading the config", std::io::Error::other("disk on fire"));
    /// assert_eq!(err.to_string(), "reading the config: disk on fire");
    /// assert!(err.source().is_some()); // the OS error underneath
    /// ```
    pub fn io(context: &'static str, source: io::Error) -> Self {
        Self::Io { context, source }
    }

    pub(crate) fn invalid_address(addr: &str, reason: impl Into<String>) -> Self {
        Self::InvalidAddress {
            addr: addr.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress { addr, reason } => write!(f, "invalid address {addr:?}: {reason}"),
            Self::UnsupportedScheme { addr, scheme } => write!(
                f,
                "unsupported scheme {scheme:?} in {addr:?} (use tcp, tcp4, tcp6, udp, udp4, udp6, unix, tls, tls4 or tls6)"
            ),
            Self::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::EngineStopped => f.write_str("the engine has stopped"),
            Self::ConnectionClosed => f.write_str("the connection is closed"),
            Self::MailboxFull => f.write_str("the loop's mailbox lane is full"),
            Self::Unsupported(what) => write!(f, "unsupported operation: {what}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::BackendUnavailable { backend, reason } => {
                write!(f, "the {backend} backend is unavailable: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// For code that speaks `io::Result` (a `?` in a function returning one):
/// an OS error comes back as itself, keeping its error code (the context
/// ringloop added is dropped, as `io::Error` has room for one or the other);
/// every other error keeps its message under the nearest [`io::ErrorKind`].
///
/// ```
/// use ringloop::Error;
/// use std::io;
/// let refused = Error::io("connect", io::Error::from_raw_os_error(111));
/// assert_eq!(io::Error::from(refused).raw_os_error(), Some(111)); // ECONNREFUSED
/// let closed = io::Error::from(Error::ConnectionClosed);
/// assert_eq!(closed.kind(), io::ErrorKind::NotConnected);
/// assert_eq!(closed.to_string(), "the connection is closed");
/// ```
impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        let kind = match err {
            Error::Io { source, .. } if source.raw_os_error().is_some() => return source,
            Error::Io { ref source, .. } => source.kind(),
            Error::InvalidAddress { .. } | Error::UnsupportedScheme { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::InvalidConfig(_) => io::ErrorKind::InvalidInput,
            Error::ConnectionClosed => io::ErrorKind::NotConnected,
            Error::MailboxFull => io::ErrorKind::WouldBlock,
            Error::Unsupported(_) | Error::BackendUnavailable { .. } => io::ErrorKind::Unsupported,
            // EngineStopped, and whatever later variants have no closer kind.
            #[allow(unreachable_patterns)]
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// `Result` with ringloop's [`Error`].
///
/// ```
/// fn listen_port(engine: &ringloop::EngineHandle) -> ringloop::Result<u16> {
///     engine.local_addrs()[0]
///         .sock_addr()
///         .as_inet()
///         .map(|a| a.port())
///         .ok_or(ringloop::Error::Unsupported("not an IP listener"))
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
