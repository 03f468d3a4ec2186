//! [`Relay`]: a handler that pairs every client connection with a backend
//! connection dialled for it onto the same loop, and relays bytes both ways —
//! a layer-4 proxy in which the user writes only where to dial and, if any,
//! the transforms ([`RelayHandler`]).
//!
//! Owns the pairing protocol: the two sides' link (back-pressure both
//! ways), the client's bytes sent before its backend connected (kept, then
//! relayed once it has), half-close (a FIN, or TLS `close_notify`, is
//! forwarded and the other direction stays open; each side closes once
//! both of its halves are done), and teardown (a side that fails or is
//! closed takes its partner along; a backend that cannot be reached closes
//! its client). It must never reach outside its own pair of connections,
//! and never touch a connection through another thread: both sides live on
//! one loop and talk through [`Conn::write_to`] and friends.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::conn::Conn;
use crate::error::Error;
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::reason::{Action, CloseReason};
use crate::runtime::message::LoopContext;
use crate::tls::TlsConnector;

/// Which side of a relay a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Side {
    /// A connection the relay dials a backend for: accepted, enrolled
    /// ([`EngineHandle::enroll`](crate::EngineHandle::enroll)) or dialled through
    /// [`EngineHandle::dial`](crate::EngineHandle::dial).
    Client,
    /// The connection the relay dialled for a client.
    Backend,
}

/// The per-connection state of a [`Relay`]: which side this is, its partner,
/// and the user's own state `T` (reached through `Deref`/`DerefMut`, or
/// [`user`](Self::user)).
#[derive(Debug)]
pub struct Relayed<T> {
    side: Side,
    partner: Option<ConnId>,
    /// The client's read side closed before its backend connected: forward
    /// the FIN once the early bytes have gone.
    fin_pending: bool,
    user: T,
}

impl<T> Relayed<T> {
    fn new(side: Side, partner: Option<ConnId>, user: T) -> Self {
        Self {
            side,
            partner,
            fin_pending: false,
            user,
        }
    }

    /// Which side of the relay this connection is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The other connection of the pair: for a backend, its client; for a
    /// client, its backend once that has connected.
    pub fn partner(&self) -> Option<ConnId> {
        self.partner
    }

    /// The user's state of this connection.
    pub fn user(&mut self) -> &mut T {
        &mut self.user
    }
}

impl<T> Deref for Relayed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.user
    }
}

impl<T> DerefMut for Relayed<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.user
    }
}

/// Where a [`Relay`] dials a client's backend: an address (`tcp://…`,
/// `unix://…`, `tls://…`) and, for `tls://`, optionally how to verify the
/// server (else the engine's [`tls_client`](crate::EngineBuilder::tls_client)
/// config).
#[derive(Clone, Debug)]
pub struct Backend<'a> {
    addr: &'a str,
    tls: Option<TlsConnector>,
}

impl<'a> Backend<'a> {
    /// The backend at `addr`.
    pub fn new(addr: &'a str) -> Self {
        Self { addr, tls: None }
    }

    /// Verifies a `tls://` backend with `connector` (see
    /// [`Conn::dial_tls`]).
    pub fn tls(mut self, connector: TlsConnector) -> Self {
        self.tls = Some(connector);
        self
    }
}

impl<'a> From<&'a str> for Backend<'a> {
    fn from(addr: &'a str) -> Self {
        Self::new(addr)
    }
}

impl<'a> From<&'a String> for Backend<'a> {
    fn from(addr: &'a String) -> Self {
        Self::new(addr)
    }
}

/// What a proxy built on [`Relay`] decides: where each client's backend is,
/// and, if anything, how bytes change on their way. Every method but
/// [`backend`](Self::backend) has a default; a plain layer-4 proxy
/// implements only that one.
///
/// Callbacks run on the loop that owns both connections of a pair, as for
/// any [`EventHandler`].
pub trait RelayHandler: 'static {
    /// The user's state of each connection (either side), next to the
    /// relay's; it starts as `Default`. Use `()` when you need none.
    type State: Default + 'static;

    /// A client connection opened: where to dial its backend (onto this
    /// loop), or `None` to close the client. Set the client's own settings
    /// (timeouts, water marks) here; its `on_open` is this call.
    fn backend(&mut self, client: &mut Conn<'_, Relayed<Self::State>>) -> Option<Backend<'_>>;

    /// A client's backend connected: the pair is linked and the client's
    /// early bytes are on their way. Set the backend's own settings here.
    fn on_backend_open(&mut self, backend: &mut Conn<'_, Relayed<Self::State>>) -> Action {
        let _ = backend;
        Action::None
    }

    /// Bytes arrived on `conn` (either side: see [`Relayed::side`]); returns
    /// what to send to its partner. The default sends them all, unchanged
    /// and without a copy. Consume what you transform (with
    /// [`Conn::next`], [`Conn::read_all`]…); bytes left unconsumed (half a
    /// line) wait for the next call, and are dropped if the side's read half
    /// closes with them still there. Return an empty slice to send nothing.
    fn transform<'a>(&mut self, conn: &mut Conn<'a, Relayed<Self::State>>) -> Cow<'a, [u8]> {
        Cow::Borrowed(conn.read_all())
    }

    /// A connection of either side is closing, for `reason`; its partner is
    /// being closed along unless the reason is
    /// [`CloseReason::Eof`] (both halves finished).
    fn on_close(&mut self, conn: &mut Conn<'_, Relayed<Self::State>>, reason: &CloseReason) {
        let _ = (conn, reason);
    }

    /// The backend of `client` could not be reached (refused, unreachable,
    /// timed out, TLS refused); the client is closed after this call.
    fn on_dial_error(&mut self, ctx: &mut LoopContext, client: ConnId, error: &Error) {
        let _ = (ctx, client, error);
    }

    /// As [`EventHandler::on_boot`].
    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }

    /// As [`EventHandler::on_tick`].
    fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
        let _ = ctx;
        (Duration::from_secs(1), Action::None)
    }

    /// As [`EventHandler::on_shutdown`].
    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        let _ = ctx;
    }
}

/// A proxy's whole pairing protocol as an [`EventHandler`] (see the module
/// docs): give it a [`RelayHandler`] that says where backends are.
///
/// Serves stream connections (`tcp://`, `unix://`, `tls://`); datagrams
/// (of a `udp://` listener, or a dialled `udp://` backend) are discarded.
///
/// ```
/// use ringloop::relay::{Backend, Relay, RelayHandler, Relayed};
/// use ringloop::{Conn, Engine};
/// use std::borrow::Cow;
/// use std::io::{Read, Write};
///
/// /// Relays to `backend`, upper-casing what the backend says.
/// struct Shout {
///     backend: String,
/// }
///
/// impl RelayHandler for Shout {
///     type State = ();
///     fn backend(&mut self, _client: &mut Conn<'_, Relayed<()>>) -> Option<Backend<'_>> {
///         Some(Backend::new(&self.backend))
///     }
///     fn transform<'a>(&mut self, conn: &mut Conn<'a, Relayed<()>>) -> Cow<'a, [u8]> {
///         let data = conn.read_all();
///         match conn.state().map(Relayed::side) {
///             Some(ringloop::relay::Side::Backend) => Cow::Owned(data.to_ascii_uppercase()),
///             _ => Cow::Borrowed(data),
///         }
///     }
/// }
///
/// // A backend that echoes what it gets (a plain std thread here).
/// let backend = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let backend_url = format!("tcp://{}", backend.local_addr()?);
/// std::thread::spawn(move || {
///     let (mut s, _) = backend.accept().unwrap();
///     let mut buf = [0; 64];
///     while let Ok(n @ 1..) = s.read(&mut buf) {
///         s.write_all(&buf[..n]).unwrap();
///     }
/// });
///
/// let server = Engine::builder(move |_| Relay::new(Shout { backend: backend_url.clone() }))
///     .listen("tcp://127.0.0.1:0")
///     .loops(1)
///     .build()?;
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// client.write_all(b"hello")?; // may arrive before the backend is connected
/// client.shutdown(std::net::Shutdown::Write)?; // forwarded as the backend's FIN
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?;
/// assert_eq!(reply, "HELLO");
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Relay<H> {
    handler: H,
    early_bytes_limit: usize,
}

impl<H: RelayHandler> Relay<H> {
    /// Relays with `handler`'s decisions; a client may send at most 1 MiB
    /// before its backend connects.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            early_bytes_limit: 1 << 20,
        }
    }

    /// Most bytes a client may send before its backend has connected (kept
    /// until then); past it the client is closed
    /// ([`CloseReason::Local`]). Default 1 MiB.
    pub fn early_bytes_limit(mut self, bytes: usize) -> Self {
        self.early_bytes_limit = bytes;
        self
    }

    /// The user's handler.
    pub fn handler(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Sends what `transform` makes of `conn`'s input to `peer`, then, if
    /// `fin`, forwards the end of stream.
    fn forward(
        &mut self,
        conn: &mut Conn<'_, Relayed<H::State>>,
        peer: ConnId,
        fin: bool,
    ) -> Action {
        let data = self.handler.transform(conn);
        if !data.is_empty() && conn.write_to(peer, &data).is_err() {
            return Action::Close;
        }
        if fin && conn.shutdown_write_of(peer).is_err() {
            return Action::Close;
        }
        Action::None
    }
}

impl<H: RelayHandler> EventHandler for Relay<H> {
    type State = Relayed<H::State>;

    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        self.handler.on_boot(ctx)
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        match conn.state().map(|s| (s.side, s.partner)) {
            // A new client (accepted, enrolled or dialled through the engine).
            None => {
                let me = conn.id();
                conn.set_state(Relayed::new(Side::Client, None, H::State::default()));
                let backend_state = Relayed::new(Side::Backend, Some(me), H::State::default());
                let Some(backend) = self.handler.backend(conn) else {
                    return Action::Close;
                };
                let dialled = match backend.tls {
                    Some(tls) => conn.dial_tls(backend.addr, tls, backend_state),
                    None => conn.dial(backend.addr, backend_state),
                };
                match dialled {
                    Ok(()) => Action::None,
                    Err(e) => {
                        log::warn!("relay: cannot dial backend {}: {e}", backend.addr);
                        Action::Close
                    }
                }
            }
            // Its backend connected: pair them, link them, and relay what the
            // client sent meanwhile (the wake runs the client's on_traffic,
            // through the default on_wake).
            Some((Side::Backend, Some(client))) => {
                let me = conn.id();
                match conn.state_of_mut(client) {
                    Ok(Some(c)) if c.side == Side::Client => c.partner = Some(me),
                    _ => return Action::Close, // the client left already
                }
                if conn.link(client).is_err() {
                    return Action::Close;
                }
                let _ = conn.engine().handle(client).wake();
                self.handler.on_backend_open(conn)
            }
            Some(_) => Action::None,
        }
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        if conn.is_datagram() {
            conn.read_all();
            return Action::None;
        }
        let (peer, fin) = match conn.state_mut() {
            None => return Action::Close,
            // A FIN read before the backend connected goes after the early
            // bytes.
            Some(state) => (state.partner, std::mem::take(&mut state.fin_pending)),
        };
        match peer {
            Some(peer) => self.forward(conn, peer, fin),
            // The backend is not connected yet: keep the bytes (and the FIN),
            // within reason.
            None if conn.inbound_buffered() > self.early_bytes_limit => Action::Close,
            None => {
                if let Some(state) = conn.state_mut() {
                    state.fin_pending = fin;
                }
                Action::None
            }
        }
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let Some(state) = conn.state_mut() else {
            return Action::Close;
        };
        match (state.partner, state.side) {
            // Forward what is left and the FIN; keep this side open for the
            // other direction.
            (Some(peer), _) => self.forward(conn, peer, true),
            (None, Side::Client) => {
                // Forwarded once the backend has connected.
                state.fin_pending = true;
                Action::None
            }
            (None, Side::Backend) => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        if !matches!(reason, CloseReason::Eof) {
            // A reset, an error, a timeout or a local close takes the partner
            // along; after an end of stream it finishes on its own.
            if let Some(peer) = conn.state().and_then(Relayed::partner) {
                let _ = conn.close_other(peer);
            }
        }
        self.handler.on_close(conn, reason);
        Action::None
    }

    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Self::State,
        error: &Error,
    ) -> Action {
        if let (Side::Backend, Some(client)) = (state.side, state.partner) {
            self.handler.on_dial_error(ctx, client, error);
            let _ = ctx.engine().handle(client).close();
        }
        Action::None
    }

    fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
        self.handler.on_tick(ctx)
    }

    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        self.handler.on_shutdown(ctx)
    }
}
