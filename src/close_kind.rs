//! [`CloseKind`]: why a connection closed, as a plain `Copy + Eq` value, for
//! matching, counting and comparing ([`CloseReason::kind`]).
//!
//! Owns only this classification; the reasons themselves (with their
//! errors) stay in [`CloseReason`].

use std::fmt;

use crate::reason::{CloseReason, TimeoutKind};

/// The kind of a [`CloseReason`], without the error it may carry: `Copy`,
/// `Eq` and `Hash`, so it can be compared, stored, counted or sent to another
/// thread.
///
/// ```
/// use ringloop::{Action, CloseKind, CloseReason, Conn, EventHandler};
/// use std::collections::HashMap;
///
/// /// Counts closes by kind.
/// #[derive(Default)]
/// struct Census(HashMap<CloseKind, u64>);
///
/// impl EventHandler for Census {
///     type State = ();
///     fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
///         *self.0.entry(reason.kind()).or_default() += 1;
///         Action::None
///     }
/// }
///
/// assert_eq!(CloseReason::Eof.kind(), CloseKind::Eof);
/// assert_ne!(CloseReason::Local.kind(), CloseKind::Requested);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseKind {
    /// [`CloseReason::Eof`].
    Eof,
    /// [`CloseReason::Reset`].
    Reset,
    /// [`CloseReason::Error`].
    Error,
    /// [`CloseReason::Local`].
    Local,
    /// [`CloseReason::Requested`].
    Requested,
    /// [`CloseReason::Shutdown`].
    Shutdown,
    /// [`CloseReason::Timeout`], with which timeout.
    Timeout(TimeoutKind),
    /// [`CloseReason::BackPressure`].
    BackPressure,
    /// [`CloseReason::InboundLimit`].
    InboundLimit,
    /// [`CloseReason::Protocol`].
    Protocol,
    /// [`CloseReason::ProxyHeader`].
    ProxyHeader,
    /// [`CloseReason::SourceLimit`].
    SourceLimit,
    /// [`CloseReason::BufferBudget`].
    BufferBudget,
    /// [`CloseReason::Tls`].
    Tls,
}

impl CloseReason {
    /// This reason's kind, without the error it may carry (see
    /// [`CloseKind`]).
    ///
    /// ```
    /// use ringloop::{CloseKind, CloseReason, TimeoutKind};
    ///
    /// let reason = CloseReason::Timeout(TimeoutKind::Idle);
    /// assert_eq!(reason.kind(), CloseKind::Timeout(TimeoutKind::Idle));
    /// let error = CloseReason::Error(std::io::Error::other("boom"));
    /// assert_eq!(error.kind(), CloseKind::Error);
    /// ```
    pub fn kind(&self) -> CloseKind {
        match self {
            Self::Eof => CloseKind::Eof,
            Self::Reset => CloseKind::Reset,
            Self::Error(_) => CloseKind::Error,
            Self::Local => CloseKind::Local,
            Self::Requested => CloseKind::Requested,
            Self::Shutdown => CloseKind::Shutdown,
            Self::Timeout(kind) => CloseKind::Timeout(*kind),
            Self::BackPressure => CloseKind::BackPressure,
            Self::InboundLimit => CloseKind::InboundLimit,
            Self::Protocol(_) => CloseKind::Protocol,
            Self::ProxyHeader(_) => CloseKind::ProxyHeader,
            Self::SourceLimit => CloseKind::SourceLimit,
            Self::BufferBudget => CloseKind::BufferBudget,
            Self::Tls(_) => CloseKind::Tls,
        }
    }
}

/// Short lower-case names: `eof`, `reset`, `error`, `local`, `requested`,
/// `shutdown`, `timeout (idle)`, `back-pressure`, …
impl fmt::Display for CloseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Eof => "eof",
            Self::Reset => "reset",
            Self::Error => "error",
            Self::Local => "local",
            Self::Requested => "requested",
            Self::Shutdown => "shutdown",
            Self::Timeout(kind) => {
                let kind = format!("{kind:?}").to_lowercase();
                return write!(f, "timeout ({kind})");
            }
            Self::BackPressure => "back-pressure",
            Self::InboundLimit => "inbound-limit",
            Self::Protocol => "protocol",
            Self::ProxyHeader => "proxy-header",
            Self::SourceLimit => "source-limit",
            Self::BufferBudget => "buffer-budget",
            Self::Tls => "tls",
        };
        f.write_str(name)
    }
}
