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

use crate::addr::SockAddr;
use crate::conn::Conn;
use crate::engine::Engine;

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

/// Why a connection closed; given to [`EventHandler::on_close`].
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
    /// The handler closed it for a protocol error
    /// ([`Conn::close_with_error`]; [`Framed`](crate::codec::Framed) does so
    /// for a codec error), after flushing what was queued (an error reply).
    Protocol(Box<dyn std::error::Error + Send + Sync>),
    /// A listener added with
    /// [`listen_proxied`](crate::EngineBuilder::listen_proxied) got no valid
    /// PROXY protocol header in time; the connection never opened (see
    /// [`EventHandler::on_reject`]).
    ProxyHeader(crate::proxy_protocol::ProxyHeaderError),
    /// Its source address already had
    /// [`max_conns_per_source`](crate::EngineBuilder::max_conns_per_source)
    /// connections open; the connection never opened (see
    /// [`EventHandler::on_reject`]).
    SourceLimit,
    /// The engine's buffered bytes passed its
    /// [`buffer_budget`](crate::Options::buffer_budget) and this connection
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

/// What a handler can see of the loop it runs on, in the callbacks that have
/// no connection: [`on_boot`](EventHandler::on_boot),
/// [`on_tick`](EventHandler::on_tick), [`on_shutdown`](EventHandler::on_shutdown).
///
/// ```
/// use ringloop::{Action, Engine, EventHandler, LoopContext};
/// use std::sync::mpsc;
///
/// struct Boot(mpsc::Sender<usize>);
/// impl EventHandler for Boot {
///     type State = ();
///     fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
///         let _ = self.0.send(ctx.loop_index());
///         Action::None
///     }
/// }
///
/// let (tx, rx) = mpsc::channel();
/// let server = Engine::builder(move |_| Boot(tx.clone())).listen("tcp://127.0.0.1:0").loops(2).build()?;
/// let engine = server.engine();
/// let runner = std::thread::spawn(move || server.run());
/// let mut booted = [rx.recv().unwrap(), rx.recv().unwrap()];
/// booted.sort();
/// assert_eq!(booted, [0, 1]);
/// engine.stop()?;
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Debug)]
pub struct LoopContext {
    pub(crate) index: usize,
    pub(crate) engine: Engine,
}

impl LoopContext {
    /// The index of this loop (0-based).
    ///
    /// ```
    /// # use ringloop::{Action, EventHandler, LoopContext};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
    ///     log::info!("loop {} of {} is up", ctx.loop_index(), ctx.engine().loop_count());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn loop_index(&self) -> usize {
        self.index
    }

    /// A handle to the engine (connection count, stop).
    ///
    /// ```
    /// use ringloop::{Action, Engine, EventHandler, LoopContext};
    /// use std::time::Duration;
    ///
    /// /// Stops the engine on its first tick.
    /// struct OneTick;
    /// impl EventHandler for OneTick {
    ///     type State = ();
    ///     fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
    ///         assert_eq!(ctx.engine().connection_count(), 0);
    ///         ctx.engine().stop().unwrap(); // on a loop thread: starts the stop
    ///         (Duration::from_secs(1), Action::None)
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| OneTick).listen("tcp://127.0.0.1:0").loops(1).ticker(true).build()?;
    /// server.run()?; // returns once the tick has stopped the engine
    /// # Ok::<(), ringloop::Error>(())
    /// ```
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
    ///
    /// ```
    /// use ringloop::{Action, Conn, EventHandler};
    ///
    /// /// Numbers the lines each connection sends.
    /// struct Numbered;
    ///
    /// impl EventHandler for Numbered {
    ///     type State = u64; // lines seen on this connection
    ///     fn on_open(&mut self, conn: &mut Conn<'_, u64>) -> Action {
    ///         conn.set_state(0);
    ///         Action::None
    ///     }
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
    ///         let lines = conn.read_all().iter().filter(|&&b| b == b'\n').count() as u64;
    ///         if let Some(n) = conn.state_mut() {
    ///             *n += lines;
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    type State: 'static;

    /// The loop has started, before it serves any connection.
    /// [`Action::Shutdown`] stops the engine.
    ///
    /// ```
    /// use ringloop::{Action, Engine, EventHandler, LoopContext};
    ///
    /// /// Refuses to run on more than one loop.
    /// struct Single;
    /// impl EventHandler for Single {
    ///     type State = ();
    ///     fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
    ///         if ctx.engine().loop_count() > 1 {
    ///             return Action::Shutdown;
    ///         }
    ///         Action::None
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| Single).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// server.run()?; // on_boot stops it at once
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }

    /// A connection was accepted and registered on this loop. Bytes written
    /// here (a greeting) go out before anything else.
    ///
    /// ```
    /// use ringloop::{Action, Conn, Engine, EventHandler};
    /// use std::io::Read;
    ///
    /// struct Greeter;
    /// impl EventHandler for Greeter {
    ///     type State = ();
    ///     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let _ = conn.write(b"welcome\n");
    ///         Action::None
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| Greeter).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// let mut buf = [0; 8];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"welcome\n");
    /// # drop(client);
    /// # engine.stop()?;
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// New bytes arrived (or the connection was woken). The bytes are in
    /// [`Conn::peek`] / [`Conn::next`] / [`Conn::read_all`] without a copy;
    /// whatever the callback leaves unconsumed is kept for the next call.
    ///
    /// ```
    /// use ringloop::{Action, Conn, Engine, EventHandler};
    /// use std::io::{Read, Write};
    ///
    /// /// Answers each whole line with its length; partial lines wait.
    /// struct LineLen;
    /// impl EventHandler for LineLen {
    ///     type State = ();
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         while let Some(end) = conn.peek(usize::MAX).iter().position(|&b| b == b'\n') {
    ///             let line = conn.next(end + 1);
    ///             let _ = conn.write(format!("{}\n", line.len() - 1).as_bytes());
    ///         }
    ///         Action::None
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| LineLen).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// client.write_all(b"hello\nab")?;
    /// client.write_all(b"c\n")?;
    /// let mut buf = [0; 4];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"5\n3\n");
    /// # drop(client);
    /// # engine.stop()?;
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// The peer closed its side (end of stream) and every byte it sent has
    /// been through [`on_traffic`](Self::on_traffic); whatever that left
    /// unread (say, a last request without its terminator) is readable here
    /// with [`Conn::read_all`] and friends. Return
    /// [`Action::Close`] (the default) to close once what is queued is
    /// written ([`CloseReason::Eof`]), or [`Action::None`] to keep writing —
    /// a half-closed connection, as a proxy needs; it then closes when the
    /// handler closes it, or once [`Conn::shutdown_write`] has taken effect.
    ///
    /// ```
    /// use ringloop::{Action, Conn, Engine, EventHandler};
    /// use std::io::{Read, Write};
    ///
    /// /// Counts the bytes up to the peer's FIN, then answers and closes.
    /// struct UntilEof;
    /// impl EventHandler for UntilEof {
    ///     type State = usize;
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, usize>) -> Action {
    ///         let total = conn.state().copied().unwrap_or(0) + conn.read_all().len();
    ///         conn.set_state(total);
    ///         Action::None
    ///     }
    ///     fn on_read_closed(&mut self, conn: &mut Conn<'_, usize>) -> Action {
    ///         let n = conn.state().copied().unwrap_or(0);
    ///         let _ = conn.write(format!("got {n} bytes").as_bytes());
    ///         Action::Close // after the reply is flushed
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| UntilEof).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// client.write_all(b"abc")?;
    /// client.shutdown(std::net::Shutdown::Write)?; // FIN: half-closed
    /// let mut reply = String::new();
    /// client.read_to_string(&mut reply)?;
    /// assert_eq!(reply, "got 3 bytes");
    /// # drop(client);
    /// # engine.stop()?;
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_read_closed(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Close
    }

    /// The connection is closing, for `reason`. Runs exactly once per
    /// connection, before its socket is released. Bytes written here are
    /// flushed best-effort. [`Action::Shutdown`] stops the engine.
    ///
    /// ```
    /// use ringloop::{Action, CloseReason, Conn, Engine, EventHandler};
    /// use std::sync::mpsc;
    ///
    /// struct Report(mpsc::Sender<String>);
    /// impl EventHandler for Report {
    ///     type State = ();
    ///     fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
    ///         let _ = self.0.send(reason.to_string());
    ///         Action::None
    ///     }
    /// }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let server = Engine::builder(move |_| Report(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// drop(client); // the peer closes
    /// assert_eq!(rx.recv().unwrap(), "closed by peer");
    /// engine.stop()?;
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        let _ = (conn, reason);
        Action::None
    }

    /// A dial made from a callback with [`Conn::dial`] failed (refused,
    /// unreachable, timed out); `state` is the state given to it. Dials made
    /// through [`Engine::dial`](crate::Engine::dial) report to their caller
    /// instead.
    ///
    /// ```
    /// use ringloop::{Action, Conn, EventHandler, LoopContext};
    ///
    /// /// Dials a backend per client; the client's id is the dial's state.
    /// struct Proxy;
    /// impl EventHandler for Proxy {
    ///     type State = Option<ringloop::ConnId>;
    ///     fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
    ///         if conn.listener_index().is_some() {
    ///             let client = conn.id();
    ///             let _ = conn.dial("tcp://127.0.0.1:6379", Some(client));
    ///         }
    ///         Action::None
    ///     }
    ///     fn on_dial_error(
    ///         &mut self,
    ///         ctx: &mut LoopContext,
    ///         state: Self::State,
    ///         error: &ringloop::Error,
    ///     ) -> Action {
    ///         // No backend: tell the client, then close it.
    ///         if let Some(client) = state {
    ///             let handle = ctx.engine().handle(client);
    ///             let _ = handle.async_write(format!("backend down: {error}\r\n"), |_| {});
    ///             let _ = handle.close();
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Self::State,
        error: &crate::Error,
    ) -> Action {
        let _ = (ctx, state, error);
        Action::None
    }

    /// A connection accepted on a `tls://` address closed before its TLS
    /// handshake finished, so [`on_open`](Self::on_open) (and `on_close`)
    /// never ran for it: `reason` is [`CloseReason::Tls`] (not TLS, a bad
    /// record, an alert, a refused client certificate),
    /// [`CloseReason::Timeout`] with [`TimeoutKind::Handshake`], or the
    /// socket's end ([`CloseReason::Eof`], [`CloseReason::Reset`]). Only that
    /// connection is affected. Dials report a failed handshake to their
    /// caller instead (or to [`on_dial_error`](Self::on_dial_error)).
    ///
    /// When the engine stops ([`Engine::stop`](crate::Engine::stop) or
    /// [`Action::Shutdown`]) while a handshake runs, the handshake is not
    /// waited for: the loop stops reading, writes what it already queued
    /// for the peer (until the drain deadline), then closes the socket
    /// without an alert and calls this with [`CloseReason::Shutdown`],
    /// before [`on_shutdown`](Self::on_shutdown). A dial in its handshake
    /// fails with [`Error::EngineStopped`](crate::Error::EngineStopped).
    ///
    /// ```
    /// use ringloop::{Action, CloseReason, EventHandler, LoopContext, SockAddr};
    ///
    /// struct Audit;
    /// impl EventHandler for Audit {
    ///     type State = ();
    ///     fn on_handshake_error(
    ///         &mut self,
    ///         _ctx: &mut LoopContext,
    ///         peer: &SockAddr,
    ///         reason: &CloseReason,
    ///     ) -> Action {
    ///         log::info!("TLS handshake with {peer} failed: {reason}");
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_handshake_error(
        &mut self,
        ctx: &mut LoopContext,
        peer: &SockAddr,
        reason: &CloseReason,
    ) -> Action {
        let _ = (ctx, peer, reason);
        Action::None
    }

    /// The ticker fired (only with [`EngineBuilder::ticker`], on loop 0).
    /// Returns the delay until the next tick and an action.
    ///
    /// [`EngineBuilder::ticker`]: crate::EngineBuilder::ticker
    ///
    /// ```
    /// use ringloop::{Action, Engine, EventHandler, LoopContext};
    /// use std::time::Duration;
    ///
    /// /// Ticks every 10 ms; stops the server on the third tick.
    /// struct Three(u32);
    /// impl EventHandler for Three {
    ///     type State = ();
    ///     fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
    ///         self.0 += 1;
    ///         let action = if self.0 == 3 { Action::Shutdown } else { Action::None };
    ///         (Duration::from_millis(10), action)
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| Three(0)).listen("tcp://127.0.0.1:0").loops(1).ticker(true).build()?;
    /// server.run()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
        let _ = ctx;
        (Duration::from_secs(1), Action::None)
    }

    /// The engine is stopping and this loop has closed all its connections.
    ///
    /// ```
    /// use ringloop::{Engine, EventHandler, LoopContext};
    /// use std::sync::mpsc;
    ///
    /// struct Bye(mpsc::Sender<usize>);
    /// impl EventHandler for Bye {
    ///     type State = ();
    ///     fn on_shutdown(&mut self, ctx: &mut LoopContext) {
    ///         let _ = self.0.send(ctx.loop_index()); // flush, persist, say goodbye…
    ///     }
    /// }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let server = Engine::builder(move |_| Bye(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// engine.stop()?;
    /// runner.join().unwrap()?;
    /// assert_eq!(rx.recv().unwrap(), 0);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        let _ = ctx;
    }

    /// An accepted connection from `peer` was closed before it opened
    /// (no [`on_open`](Self::on_open), no [`on_close`](Self::on_close)):
    /// [`CloseReason::ProxyHeader`] or [`CloseReason::SourceLimit`]. The
    /// default logs it at debug level.
    ///
    /// ```
    /// use ringloop::{CloseReason, EventHandler, LoopContext, SockAddr};
    ///
    /// struct Audit;
    /// impl EventHandler for Audit {
    ///     type State = ();
    ///     fn on_reject(&mut self, _ctx: &mut LoopContext, peer: &SockAddr, reason: &CloseReason) {
    ///         eprintln!("refused {peer}: {reason}");
    ///     }
    /// }
    /// ```
    fn on_reject(&mut self, ctx: &mut LoopContext, peer: &crate::SockAddr, reason: &CloseReason) {
        log::debug!("loop {}: refused {peer}: {reason}", ctx.loop_index());
    }

    /// The engine handed its listeners to a new process (an upgrade, see
    /// [`EngineBuilder::upgrade_socket`](crate::EngineBuilder::upgrade_socket)):
    /// nothing more is accepted, this loop's connections are served as
    /// usual until they close or the upgrade deadline passes. Called once
    /// per loop; [`Engine::is_draining`](crate::Engine::is_draining) tells
    /// the same from anywhere, e.g. to close a connection after the
    /// response in hand. `Shutdown` stops the engine at once.
    ///
    /// ```
    /// use ringloop::{Action, EventHandler, LoopContext};
    ///
    /// struct Polite;
    /// impl EventHandler for Polite {
    ///     type State = ();
    ///     fn on_drain(&mut self, ctx: &mut LoopContext) -> Action {
    ///         log::info!("loop {} draining for an upgrade", ctx.loop_index());
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_drain(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }
}
