//! The user's side of ringloop: the [`EventHandler`] trait, the [`Action`] a
//! callback returns, why a connection closed ([`CloseReason`]) and what a
//! handler can see of its loop ([`LoopContext`]).
//!
//! Owns only these definitions. Every callback runs on the event loop that owns
//! the connection, so a handler needs neither `Send`, `Sync` nor locks: each
//! loop builds its own handler instance with the factory given to the engine
//! builder. Handlers are actors too.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::conn::Conn;
use crate::engine::Engine;

/// What the engine should do after a callback.
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

/// Why a connection closed; given to [`EventHandler::on_close`].
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
    /// This side closed it: [`Action::Close`] or [`Conn::close`].
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
    /// [`max_inbound`](crate::Options::max_inbound).
    InboundLimit,
}

/// Which timeout closed a connection.
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
            Self::BackPressure => f.write_str("outbound queue above its high-water mark"),
            Self::InboundLimit => f.write_str("unconsumed input above the inbound limit"),
        }
    }
}

/// What a handler can see of the loop it runs on, in the callbacks that have
/// no connection: [`on_boot`](EventHandler::on_boot),
/// [`on_tick`](EventHandler::on_tick), [`on_shutdown`](EventHandler::on_shutdown).
#[derive(Debug)]
pub struct LoopContext {
    pub(crate) index: usize,
    pub(crate) engine: Engine,
}

impl LoopContext {
    /// The index of this loop (0-based).
    pub fn loop_index(&self) -> usize {
        self.index
    }

    /// A handle to the engine (connection count, stop).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The callbacks of a ringloop server. Every method has a default that does
/// nothing and returns [`Action::None`]; implement the ones you need.
///
/// One instance per event loop, built by the factory given to
/// [`Engine::builder`]; all callbacks of an instance run on its loop's thread.
///
/// ```
/// use ringloop::{Action, Conn, EventHandler};
///
/// /// Echoes every byte back.
/// struct Echo;
///
/// impl EventHandler for Echo {
///     type State = ();
///
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         let data = conn.read_all();
///         match conn.write(data) {
///             Ok(_) => Action::None,
///             Err(_) => Action::Close,
///         }
///     }
/// }
/// ```
pub trait EventHandler: 'static {
    /// Per-connection state, kept by the loop next to the connection and
    /// reached with [`Conn::state`] / [`Conn::set_state`] without any dynamic
    /// type check. Use `()` when you need none.
    type State: 'static;

    /// The loop has started, before it serves any connection.
    /// [`Action::Shutdown`] stops the engine.
    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }

    /// A connection was accepted and registered on this loop. Bytes written
    /// here (a greeting) go out before anything else.
    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// New bytes arrived (or the connection was woken). The bytes are in
    /// [`Conn::peek`] / [`Conn::next`] / [`Conn::read_all`] without a copy;
    /// whatever the callback leaves unconsumed is kept for the next call.
    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// The peer closed its side (end of stream) and every byte it sent has
    /// been through [`on_traffic`](Self::on_traffic). Return
    /// [`Action::Close`] (the default) to close once what is queued is
    /// written ([`CloseReason::Eof`]), or [`Action::None`] to keep writing —
    /// a half-closed connection, as a proxy needs; it then closes when the
    /// handler closes it, or once [`Conn::shutdown_write`] has taken effect.
    fn on_read_closed(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Close
    }

    /// The connection is closing, for `reason`. Runs exactly once per
    /// connection, before its socket is released. Bytes written here are
    /// flushed best-effort. [`Action::Shutdown`] stops the engine.
    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        let _ = (conn, reason);
        Action::None
    }

    /// A dial made from a callback with [`Conn::dial`] failed (refused,
    /// unreachable, timed out); `state` is the state given to it. Dials made
    /// through [`Engine::dial`](crate::Engine::dial) report to their caller
    /// instead.
    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Self::State,
        error: &crate::Error,
    ) -> Action {
        let _ = (ctx, state, error);
        Action::None
    }

    /// The ticker fired (only with [`EngineBuilder::ticker`], on loop 0).
    /// Returns the delay until the next tick and an action.
    ///
    /// [`EngineBuilder::ticker`]: crate::EngineBuilder::ticker
    fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
        let _ = ctx;
        (Duration::from_secs(1), Action::None)
    }

    /// The engine is stopping and this loop has closed all its connections.
    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        let _ = ctx;
    }
}
