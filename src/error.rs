//! ringloop's error type: every fallible public call returns [`Error`].
//!
//! Owns only the error vocabulary. Errors never carry a panic: bad input from
//! the network or the OS becomes one of these, and the connection it concerns
//! is closed with it as the reason; nothing else is affected.

use std::fmt;
use std::io;

/// Everything that can go wrong in ringloop.
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
    /// The operation does not apply to this kind of connection (for example
    /// `send_to` on a stream).
    Unsupported(&'static str),
}

impl Error {
    /// Wraps an OS error with what ringloop was doing when it happened.
    pub fn io(context: &'static str, source: io::Error) -> Self {
        Self::Io { context, source }
    }

    // Not called yet: the address parser that uses it lands with the sys
    // layer. Allowed so that `clippy -D warnings` passes meanwhile.
    #[allow(dead_code)]
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
                "unsupported scheme {scheme:?} in {addr:?} (use tcp, tcp4, tcp6, udp, udp4, udp6 or unix)"
            ),
            Self::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::EngineStopped => f.write_str("the engine has stopped"),
            Self::ConnectionClosed => f.write_str("the connection is closed"),
            Self::Unsupported(what) => write!(f, "unsupported operation: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with ringloop's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
