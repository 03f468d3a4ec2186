//! The user's side of ringloop: the [`EventHandler`] trait. (The [`Action`] a
//! callback returns and why a connection closed, [`CloseReason`], are in
//! `reason.rs`; what a handler can see of its loop, [`LoopContext`], in
//! `runtime::message`.)
//!
//! Owns only the trait. Every callback runs on the event loop that owns
//! the connection, so a handler needs neither `Send`, `Sync` nor locks: each
//! loop builds its own handler instance with the factory given to the engine
//! builder. Handlers are actors too.

use std::time::Duration;

use crate::addr::SockAddr;
use crate::conn::Conn;
use crate::datagram::Datagram;
use crate::reason::{Action, CloseReason};
use crate::runtime::message::LoopContext;

/// The callbacks of a ringloop server. Every method has a default that does
/// nothing and returns [`Action::None`]; implement the ones you need.
///
/// One instance per event loop, built by the factory given to
/// [`Engine::builder`](crate::Engine::builder); all callbacks of an instance run on its loop's thread.
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

    /// A connection opened on this loop: accepted from a listener, dialled
    /// (once connected, through [`Conn::dial`] or
    /// [`EngineHandle::dial`](crate::EngineHandle::dial); for `tls://`, once the
    /// handshake is done) or enrolled ([`EngineHandle::enroll`](crate::EngineHandle::enroll)).
    /// Tell them apart with [`Conn::listener_index`] (`None` unless
    /// accepted) or by the state a dial gave the connection. Bytes written
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
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// let mut buf = [0; 8];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"welcome\n");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// New bytes arrived (or reading resumed over bytes held while
    /// paused). The bytes are in
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
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// client.write_all(b"hello\nab")?;
    /// client.write_all(b"c\n")?;
    /// let mut buf = [0; 4];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"5\n3\n");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// The connection was woken from another thread with
    /// [`ConnHandle::wake`](crate::ConnHandle::wake) (or from the loop with
    /// [`Conn::handle`]`().wake()`): run whatever the wake was for — write
    /// replies a worker left in shared state, flush a broadcast queue.
    /// Whatever input is waiting unread is visible through [`Conn::peek`]
    /// and friends, but nothing new arrived.
    ///
    /// **Once per wake, never merged:** every `wake()` that returned `Ok`
    /// gives exactly one `on_wake` call, in order with the other requests
    /// from the same thread (a write sent before the wake is queued before
    /// `on_wake` runs), unless the connection closed first (then nothing).
    /// Two wakes are two calls even if they arrive in the same loop turn.
    ///
    /// **The default calls [`on_traffic`](Self::on_traffic)**, which is what
    /// a wake did before this callback existed: a handler written for that
    /// keeps working unchanged (its `on_traffic` sees the waiting input,
    /// possibly empty). Override `on_wake` to tell a wake apart; then a
    /// wake never reaches `on_traffic`.
    ///
    /// ```
    /// use ringloop::{Action, Conn, Engine, EventHandler};
    /// use std::io::Read;
    ///
    /// /// Greets on every wake; echoes traffic.
    /// struct Waker;
    /// impl EventHandler for Waker {
    ///     type State = ();
    ///     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let handle = conn.handle();
    ///         std::thread::spawn(move || handle.wake());
    ///         Action::None
    ///     }
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let data = conn.read_all();
    ///         let _ = conn.write(data);
    ///         Action::None
    ///     }
    ///     fn on_wake(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let _ = conn.write(b"woken\n");
    ///         Action::None
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| Waker).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// let mut buf = [0; 6];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"woken\n");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_wake(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.on_traffic(conn)
    }

    /// A datagram arrived on a `udp://` listener: one call per datagram,
    /// with its payload, its sender and the socket to answer on
    /// ([`Datagram::reply`], [`Datagram::send_to`], and
    /// [`Datagram::handle`] for other threads). UDP has no connection: no
    /// `on_open`, `on_close` or state. [`Action::Shutdown`] stops the
    /// engine; other actions change nothing. The default drops the datagram
    /// (logged at debug level): a handler serving `udp://` implements this.
    /// (A dialled `udp://` address is a connected socket, a [`Conn`] with
    /// one `on_traffic` per datagram.)
    ///
    /// ```
    /// use ringloop::{Action, Datagram, EventHandler};
    ///
    /// /// Answers each datagram with its length.
    /// struct Len;
    /// impl EventHandler for Len {
    ///     type State = ();
    ///     fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
    ///         let len = dgram.payload().len();
    ///         let _ = dgram.reply(format!("{len}\n").as_bytes());
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        log::debug!(
            "loop {}: datagram from {} dropped (no on_datagram)",
            dgram.loop_index(),
            dgram.peer_addr()
        );
        Action::None
    }

    /// `false` for a handler that cannot serve `udp://` listeners at all
    /// (its datagrams would all be dropped): the builder then refuses such
    /// an address. Only [`Framed`](crate::codec::Framed) says so.
    #[doc(hidden)]
    const SERVES_DATAGRAMS: bool = true;

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
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// client.write_all(b"abc")?;
    /// client.shutdown(std::net::Shutdown::Write)?; // FIN: half-closed
    /// let mut reply = String::new();
    /// client.read_to_string(&mut reply)?;
    /// assert_eq!(reply, "got 3 bytes");
    /// # drop(client);
    /// # engine.stop();
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
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// drop(client); // the peer closes
    /// assert_eq!(rx.recv().unwrap(), "closed by peer");
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        let _ = (conn, reason);
        Action::None
    }

    /// A dial made from a callback with [`Conn::dial`] failed (refused,
    /// unreachable, timed out); `state` is the state given to it. Dials made
    /// through [`EngineHandle::dial`](crate::EngineHandle::dial) report to their caller
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
    /// [`CloseReason::Timeout`] with [`TimeoutKind::Handshake`](crate::TimeoutKind::Handshake), or the
    /// socket's end ([`CloseReason::Eof`], [`CloseReason::Reset`]). Only that
    /// connection is affected. Dials report a failed handshake to their
    /// caller instead (or to [`on_dial_error`](Self::on_dial_error)).
    ///
    /// When the engine stops ([`EngineHandle::stop`](crate::EngineHandle::stop) or
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
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// assert_eq!(rx.recv().unwrap(), 0);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        let _ = ctx;
    }

    /// An accepted connection from `peer` was closed before it opened
    /// (no [`on_open`](Self::on_open), no [`on_close`](Self::on_close)):
    /// [`CloseReason::ProxyHeader`] or [`CloseReason::SourceLimit`], or
    /// [`CloseReason::Shutdown`] for one the engine's stop reached first
    /// (still waiting for its PROXY header, or accepted as the stop
    /// began). The default logs it at debug level.
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
    /// per loop; [`EngineHandle::is_draining`](crate::EngineHandle::is_draining) tells
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
