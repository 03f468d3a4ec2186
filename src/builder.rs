//! [`EngineBuilder`]: the engine's settings, and `build`, which checks them,
//! binds (or inherits) every listener and creates every mailbox.
//!
//! Bootstrap only: nothing runs until [`Engine::run`](crate::Engine::run).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::acceptor::Acceptor;
use crate::actors::{Mailbox, MailboxConfig};
use crate::addr::{ListenAddr, Transport};
use crate::admission::{AcceptRate, Limits};
use crate::deploy::DeployConfig;
use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::listener::{Listener, LoopSockets};
use crate::options::{
    BackPressure, KeepAlive, LoadBalancer, Options, PoolShutdown, Timeouts, WaterMarks,
};
use crate::runtime::deploy::DeployShared;
use crate::runtime::message::{AcceptorMessage, LoopMessage};
use crate::runtime::{EngineHandle, EngineParts, EngineShared, PoolConfig};
use crate::server::{Engine, Factory};
use crate::to_addr::ToAddr;

/// Settings and addresses of an engine; [`build`](Self::build) binds the
/// listeners, [`run`](Self::run) also serves until stopped.
///
/// ```
/// # use ringloop::{Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .loops(2)
///     .workers(4)
///     .build()?; // checks the settings and binds the listener
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct EngineBuilder<H> {
    factory: Factory<H>,
    addrs: Vec<String>,
    options: Options,
    deploy: DeployConfig,
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Adds an address to listen on, in URL form: `tcp://127.0.0.1:9000`,
    /// `tcp6://[::1]:9000`, `unix:///tmp/app.sock`, or as a
    /// `std::net::SocketAddr` (TCP) — anything [`ToAddr`]. Port 0 picks a
    /// free port (see [`EngineHandle::local_addrs`]). Checked by
    /// [`build`](Self::build).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0))) // a second listener
    ///     .build()?;
    /// let engine = server.handle();
    /// assert_eq!(engine.local_addrs().len(), 2);
    /// // A bad address is refused by build.
    /// assert!(Engine::builder(|_| Quiet).listen("tulip://x").build().is_err());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen(mut self, addr: impl ToAddr) -> Self {
        self.addrs.push(addr.to_url().into_owned());
        self
    }

    /// Number of event loops, the threads serving connections (default: one
    /// per core; 1 ..= [`MAX_LOOPS`](crate::MAX_LOOPS)).
    pub fn loops(mut self, n: usize) -> Self {
        self.options.loops = n;
        self
    }

    /// Size of each loop's shared read buffer: the most bytes one `read`
    /// takes from a socket (default 64 KiB; 1 KiB ..= 64 MiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.options.read_buffer_size = bytes;
        self
    }

    /// The largest block small writes are coalesced into in a connection's
    /// outbound queue (default 64 KiB; 1 KiB ..= 64 MiB).
    pub fn write_buffer_cap(mut self, bytes: usize) -> Self {
        self.options.write_buffer_cap = bytes;
        self
    }

    /// `TCP_NODELAY` on accepted TCP connections (default on).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.options.tcp_nodelay = on;
        self
    }

    /// TCP keepalive on accepted connections (default off; idle and
    /// interval at least 1 s, count at least 1).
    pub fn tcp_keepalive(mut self, keepalive: Option<KeepAlive>) -> Self {
        self.options.tcp_keepalive = keepalive;
        self
    }

    /// `SO_RCVBUF` for listeners and accepted sockets (default: the
    /// kernel's; 1 ..= `i32::MAX`).
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.options.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF` for listeners and accepted sockets (default: the
    /// kernel's; 1 ..= `i32::MAX`).
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.options.send_buffer_size = Some(bytes);
        self
    }

    /// `SO_REUSEADDR` on listeners (default on).
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.options.reuse_addr = on;
        self
    }

    /// SO_REUSEPORT mode: no acceptor; every loop owns its own listener for
    /// each TCP address and the kernel spreads connections (Unix listeners are
    /// then served by loop 0). Default off. Two engines in this mode can share a
    /// port.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.options.reuse_port = on;
        self
    }

    /// Accept on a separate acceptor thread even with one loop (default
    /// off: a single loop accepts on its own listeners; several loops use
    /// the acceptor unless [`reuse_port`](Self::reuse_port) is on).
    pub fn acceptor_thread(mut self, on: bool) -> Self {
        self.options.acceptor_thread = on;
        self
    }

    /// Edge-triggered (`true`) or level-triggered (`false`) I/O on
    /// connections, an epoll mode. Not set (the default): edge-triggered
    /// on epoll, unless the environment variable `RINGLOOP_EPOLL_MODE` is
    /// `level` (`edge` or unset: edge-triggered; any other value fails the
    /// build with `Error::InvalidConfig`); nothing to choose on io_uring.
    ///
    /// Edge-triggered, each turn a connection reads and writes until the
    /// socket would block or it has moved
    /// [`edge_triggered_chunk`](Self::edge_triggered_chunk) bytes (then it
    /// carries on next turn). Level-triggered, it reads once per readiness
    /// event and arms write readiness only while it has bytes queued; each
    /// reported socket goes back on epoll's ready list and is polled again
    /// at the next wait whether or not new input came, which costs CPU when
    /// every connection has one message in flight.
    ///
    /// Asking for it (`true`) with the default
    /// [`Backend::Auto`](crate::Backend::Auto) makes the engine choose
    /// epoll; `false` leaves the choice alone. On an engine running on
    /// io_uring either is ignored: a multishot receive reports every
    /// arrival (see [`crate::Backend`]).
    pub fn edge_triggered(mut self, on: bool) -> Self {
        self.options.edge_triggered = Some(on);
        self
    }

    /// Per-connection, per-turn byte budget in edge-triggered mode, so one
    /// busy connection cannot starve the others (default 1 MiB, at least
    /// 1 KiB); setting it asks for edge-triggered mode, as
    /// [`edge_triggered(true)`](Self::edge_triggered) does.
    pub fn edge_triggered_chunk(mut self, bytes: usize) -> Self {
        self.options.edge_triggered = Some(true);
        self.options.edge_triggered_chunk = bytes;
        self
    }

    /// The I/O driver: [`Backend::Auto`](crate::Backend::Auto) (io_uring
    /// where it works, else epoll), `Epoll` or `IoUring` (building fails
    /// where io_uring cannot run). Not set: `RINGLOOP_BACKEND`, else `Auto`.
    pub fn backend(mut self, backend: crate::Backend) -> Self {
        self.options.backend = Some(backend);
        self
    }

    /// Listen backlog (default 1024; positive).
    pub fn listen_backlog(mut self, backlog: i32) -> Self {
        self.options.listen_backlog = backlog;
        self
    }

    /// How accepted connections are spread over loops (default
    /// round-robin).
    pub fn load_balancer(mut self, policy: LoadBalancer) -> Self {
        self.options.load_balancer = policy;
        self
    }

    /// Messages each mailbox lane holds (default 1024; 1 ..= 1048576).
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.options.mailbox_capacity = n;
        self
    }

    /// The loops' wake-up fd (default eventfd, else a pipe).
    pub fn doorbell(mut self, kind: Doorbell) -> Self {
        self.options.doorbell = kind;
        self
    }

    /// Connection timeouts (default [`Timeouts::default`]: incomplete
    /// input, write and half-closed 60 s each; no idle or read timeout); a
    /// connection can override them with
    /// [`Conn::set_timeouts`](crate::Conn::set_timeouts).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.options.timeouts = timeouts;
        self
    }

    /// Outbound high- and low-water marks per connection (default
    /// [`WaterMarks::default`], 64 KiB / 32 KiB); a connection can override them
    /// with [`Conn::set_write_water_marks`](crate::Conn::set_write_water_marks).
    pub fn write_water_marks(mut self, marks: WaterMarks) -> Self {
        self.options.write_water_marks = marks;
        self
    }

    /// What passing the high-water mark does (default: pause reading the
    /// connection).
    pub fn back_pressure(mut self, policy: BackPressure) -> Self {
        self.options.back_pressure = policy;
        self
    }

    /// The most bytes a connection may leave unconsumed between callbacks
    /// (a partial request waiting for the rest); a peer that pushes past it is
    /// closed with [`CloseReason::InboundLimit`](crate::CloseReason::InboundLimit)
    /// (default 64 MiB; at least the read buffer size).
    pub fn max_inbound(mut self, bytes: usize) -> Self {
        self.options.max_inbound = bytes;
        self
    }

    /// How long a dial may take to connect (default 10 s; at least 1 ms).
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long a stop waits for connections to flush what they have queued
    /// before closing them hard; also how long a connection closed with
    /// [`Action::Close`](crate::Action::Close) may take to flush (default 5 s).
    pub fn drain_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.drain_timeout = timeout;
        self
    }

    /// Worker-pool threads (default: 4 per core, at least 4; 1 ..= 4096).
    /// The pool starts on first use.
    pub fn workers(mut self, n: usize) -> Self {
        self.options.workers = n;
        self
    }

    /// Jobs the worker pool's queue holds (default 4096; 1 ..= 16777216);
    /// [`EngineHandle::submit`](crate::EngineHandle::submit) hands jobs back beyond it.
    pub fn job_queue_capacity(mut self, n: usize) -> Self {
        self.options.job_queue_capacity = n;
        self
    }

    /// What the worker pool does with queued jobs at shutdown (default:
    /// finish them, see [`PoolShutdown`]).
    pub fn pool_shutdown(mut self, policy: PoolShutdown) -> Self {
        self.options.pool_shutdown = policy;
        self
    }

    /// The longest a stop waits for the worker pool (its running jobs and,
    /// under [`PoolShutdown::Finish`], its queued ones). Past it the stop goes
    /// on without them: queued jobs are dropped unrun, running ones are left to
    /// end with the process. Default 30 s.
    pub fn pool_shutdown_timeout(mut self, limit: std::time::Duration) -> Self {
        self.options.pool_shutdown_timeout = limit;
        self
    }

    /// A lingering close, as nginx's `lingering_close`: when this side closes
    /// a connection gracefully (after its last reply is flushed) while the
    /// peer may still be sending, shut the write side, read and discard the
    /// peer's input until its end of stream or for at most `limit`, then
    /// close. Without it, input arriving after the close makes the kernel
    /// reset the connection, and the peer can lose the last reply (an error
    /// message). The close callback runs when the connection finally closes.
    /// Default off.
    pub fn lingering_close(mut self, limit: Option<std::time::Duration>) -> Self {
        self.options.lingering_close = limit;
        self
    }

    /// The most bytes all connections together may hold in memory
    /// (unconsumed input by capacity, queued output). Near it (3/4) every
    /// connection holding 64 KiB or more stops being read until the total falls
    /// to half; past it, each loop over its share (budget / loops) closes its
    /// largest connections with
    /// [`CloseReason::BufferBudget`](crate::CloseReason::BufferBudget).
    /// Default 512 MiB, at least 64 KiB.
    ///
    /// It counts what connections hold, not the loops' fixed caches beside
    /// it: each loop keeps up to 4 MiB of free send buffers for reuse and,
    /// on io_uring, up to 32 provided receive buffers (528 KiB at the
    /// largest `read_buffer_size`); both are given back when the loop goes
    /// quiet.
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.options.buffer_budget = bytes;
        self
    }

    /// Calls [`EventHandler::on_tick`] on loop 0 (default off).
    pub fn ticker(mut self, on: bool) -> Self {
        self.options.ticker = on;
        self
    }

    /// The rustls server config for `tls://` listen addresses (required when
    /// there is one); [`tls::ServerTls`](crate::tls::ServerTls) makes one
    /// from PEM files. Handlers see plaintext and the session through
    /// [`Conn::tls`](crate::Conn::tls).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// # let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let (cert_pem, key_pem) = (c.cert.pem(), c.key_pair.serialize_pem());
    /// let config = ringloop::tls::ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?.build()?;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tls://127.0.0.1:0")
    ///     .listen("tcp://127.0.0.1:0") // plain and TLS side by side
    ///     .tls_server(config)
    ///     .build()?;
    /// // Without a config, a tls:// address is refused.
    /// assert!(Engine::builder(|_| Quiet).listen("tls://127.0.0.1:0").build().is_err());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tls_server(mut self, config: impl Into<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        self.options.tls.server = Some(config.into());
        self
    }

    /// The rustls client config `tls://` dials verify servers with, unless
    /// they bring a [`TlsConnector`](crate::tls::TlsConnector);
    /// [`tls::client_config`](crate::tls::client_config) makes one from a CA
    /// file's PEM.
    pub fn tls_client(mut self, config: impl Into<std::sync::Arc<rustls::ClientConfig>>) -> Self {
        self.options.tls.client = Some(config.into());
        self
    }

    /// How long a TLS handshake may take (default 10 s); a connection past
    /// it closes with [`TimeoutKind::Handshake`](crate::TimeoutKind::Handshake).
    pub fn tls_handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.tls.handshake_timeout = timeout;
        self
    }

    /// Whether open TLS 1.3 sessions seal and open their records in the
    /// loop, with the record layer taken from rustls after the handshake
    /// (default `true`; see [`TlsOptions::own_record_layer`](crate::TlsOptions::own_record_layer)).
    pub fn tls_own_record_layer(mut self, on: bool) -> Self {
        self.options.tls.own_record_layer = on;
        self
    }

    /// Checks the settings, binds every listener and creates every mailbox.
    /// Nothing runs yet; the real addresses are in [`Engine::handle`]'s
    /// [`EngineHandle::local_addrs`].
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// // Bound, not yet serving: the real port is known already.
    /// assert_eq!(server.handle().local_addrs().len(), 1);
    /// let err = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:99999").build().unwrap_err();
    /// assert!(matches!(err, ringloop::Error::InvalidAddress { .. }));
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn build(mut self) -> Result<Engine<H>> {
        self.options.validate()?;
        let backend = crate::sys::backend::choose(
            self.options.backend,
            self.options.edge_triggered == Some(true),
        )?;
        self.options.backend = Some(backend);
        // No address is fine: a client engine only dials and enrolls.
        let mut inherited = self.deploy.take_inherited(&self.addrs)?;
        let addrs = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| inherited.addr(i).map_or_else(|| ListenAddr::parse(a), Ok))
            .collect::<Result<Vec<_>>>()?;
        if addrs.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidConfig("too many listen addresses".into()));
        }
        self.deploy.validate(&addrs)?;
        if !H::SERVES_DATAGRAMS {
            if let Some(addr) = addrs.iter().find(|a| a.transport() == Transport::Udp) {
                return Err(Error::InvalidConfig(format!(
                    "{addr}: this handler serves streams only (a Framed handler has no datagram callback; serve udp:// with an EventHandler's on_datagram)"
                )));
            }
        }
        if let Some(addr) = addrs.iter().find(|a| a.is_tls()) {
            if self.options.tls.server.is_none() {
                return Err(Error::InvalidConfig(format!(
                    "{addr} needs a server config (EngineBuilder::tls_server)"
                )));
            }
        }
        let loops = self.options.loops;
        let inline = self.options.accepts_inline();
        let mut acceptor_listeners = Vec::new();
        let mut loop_sockets: Vec<LoopSockets> =
            (0..loops).map(|_| LoopSockets::default()).collect();
        let mut local_addrs = Vec::with_capacity(addrs.len());
        for (index, addr) in addrs.iter().enumerate() {
            let index = index as u16;
            match addr.transport() {
                // Taken over (fd://N, systemd, an upgrade), not bound.
                _ if inherited.has(index) => local_addrs.push(inherited.place(
                    index,
                    &mut acceptor_listeners,
                    &mut loop_sockets,
                    &self.options,
                )?),
                // Every loop gets its own socket on the same port (the first
                // bind picks the port when 0 is asked for).
                Transport::Udp => {
                    let (fd, bound) = Listener::bind_udp(addr, &self.options, true)?;
                    loop_sockets[0].udp.push((fd, index));
                    for sockets in loop_sockets.iter_mut().skip(1) {
                        let (fd, _) = Listener::bind_udp(&bound, &self.options, false)?;
                        sockets.udp.push((fd, index));
                    }
                    local_addrs.push(bound);
                }
                Transport::Tcp if self.options.reuse_port => {
                    let first = Listener::bind(addr, &self.options, true)?;
                    let bound = first.addr.clone();
                    loop_sockets[0].listeners.push((first, index));
                    for sockets in loop_sockets.iter_mut().skip(1) {
                        sockets
                            .listeners
                            .push((Listener::bind(&bound, &self.options, true)?, index));
                    }
                    local_addrs.push(bound);
                }
                // A Unix path cannot be shared: in reuseport mode loop 0
                // serves it alone (as it serves everything with one loop).
                _ if inline => {
                    let listener = Listener::bind(addr, &self.options, false)?;
                    local_addrs.push(listener.addr.clone());
                    loop_sockets[0].listeners.push((listener, index));
                }
                _ => {
                    let listener = Listener::bind(addr, &self.options, false)?;
                    local_addrs.push(listener.addr.clone());
                    acceptor_listeners.push((listener, index));
                }
            }
        }
        let control = self
            .deploy
            .finish_upgrade(&acceptor_listeners, &loop_sockets)?;
        let mailbox_config = MailboxConfig::new()
            .lane_capacity(self.options.mailbox_capacity)
            .doorbell(self.options.doorbell.kind());
        let mailbox_error = |e| Error::io("create a mailbox", e);
        let loop_mailboxes = (0..self.options.loops)
            .map(|_| {
                Mailbox::<LoopMessage>::with_config(mailbox_config.clone()).map_err(mailbox_error)
            })
            .collect::<Result<Vec<_>>>()?;
        let acceptor_mailbox =
            Mailbox::<AcceptorMessage>::with_config(mailbox_config).map_err(mailbox_error)?;
        let accepting_actors = usize::from(!acceptor_listeners.is_empty())
            + loop_sockets
                .iter()
                .filter(|s| !s.listeners.is_empty())
                .count();
        let shared = Arc::new(EngineShared::new(EngineParts {
            loops: loop_mailboxes.iter().map(Mailbox::shared_sender).collect(),
            acceptor: (!acceptor_listeners.is_empty()).then(|| acceptor_mailbox.shared_sender()),
            addrs: local_addrs,
            drain_timeout: self.options.drain_timeout,
            pool: PoolConfig {
                workers: self.options.workers,
                queue_capacity: self.options.job_queue_capacity,
                policy: self.options.pool_shutdown,
                shutdown_timeout: self.options.pool_shutdown_timeout,
            },
            buffer_budget: self.options.buffer_budget,
            backend,
            deploy: DeployShared::new(
                self.options.limits,
                self.deploy.proxied_flags(&addrs),
                self.deploy.header_timeout,
                accepting_actors,
                self.deploy.upgrade_path.is_some(),
            ),
        }));
        let acceptor = (!acceptor_listeners.is_empty()).then(|| {
            Acceptor::new(
                acceptor_listeners,
                acceptor_mailbox,
                loop_mailboxes.iter().map(Mailbox::sender).collect(),
                self.options.load_balancer,
                shared.clone(),
            )
        });
        Ok(Engine {
            engine: EngineHandle::from_shared(shared),
            factory: self.factory,
            loop_mailboxes,
            loop_sockets,
            acceptor,
            control,
            options: self.options,
        })
    }

    /// Builds and runs the engine until it stops.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::{Action, LoopContext};
    /// use std::time::Duration;
    ///
    /// struct StopAtOnce;
    /// impl EventHandler for StopAtOnce {
    ///     type State = ();
    ///     fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
    ///         (Duration::from_secs(1), Action::Shutdown)
    ///     }
    /// }
    ///
    /// // Build and serve in one call; returns when the engine stops.
    /// Engine::builder(|_| StopAtOnce).listen("tcp://127.0.0.1:0").loops(1).ticker(true).run()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn run(self) -> Result<()> {
        self.build()?.run()
    }
}

impl<H> fmt::Debug for EngineBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("addrs", &self.addrs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<H: EventHandler> Engine<H> {
    /// Starts building an engine whose loops each get a handler made by
    /// `factory(loop_index)`, on the loop's own thread.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|loop_index| {
    ///     // Runs once per loop, on that loop's thread.
    ///     let _ = loop_index;
    ///     Quiet
    /// })
    /// .listen("tcp://127.0.0.1:0")
    /// .build()?;
    /// assert_eq!(server.handle().loop_count(), 2);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn builder<F>(factory: F) -> EngineBuilder<H>
    where
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        EngineBuilder {
            factory: Arc::new(factory),
            addrs: Vec::new(),
            options: Options::default(),
            deploy: Default::default(),
        }
    }
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Upgrades that drop nothing, through the Unix control socket `path`.
    ///
    /// At [`build`](Self::build): if a ringloop process serves `path`, its
    /// listening sockets for the same addresses (every loop's, in reuseport
    /// mode) are taken over instead of bound, and once this engine is built
    /// that process stops accepting and drains: it serves the connections
    /// it has (handlers see [`EngineHandle::is_draining`] and
    /// [`on_drain`](EventHandler::on_drain)) until they close or the
    /// [`upgrade_deadline`](Self::upgrade_deadline) passes, then stops. If
    /// nobody serves `path` (no file, or a stale one), addresses are bound as
    /// usual. Either way this engine then serves `path` for the next
    /// upgrade. If the handoff fails, `build` returns the error and the old
    /// process goes on serving as before.
    ///
    /// ```no_run
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// // Run the same command again (a new binary, new settings) to upgrade.
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:9000")
    ///     .upgrade_socket("/run/myserver/upgrade.sock")
    ///     .build()?;
    /// server.run()?; // returns when stopped, or once drained after an upgrade
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn upgrade_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.deploy.upgrade_path = Some(path.into());
        self
    }

    /// How long, after handing its listeners over, this engine keeps
    /// serving connections that stay open before it stops anyway (default
    /// 30 s).
    pub fn upgrade_deadline(mut self, deadline: Duration) -> Self {
        self.deploy.upgrade_deadline = deadline;
        self
    }
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Serves the listening sockets systemd passed to this process (socket
    /// activation: `LISTEN_FDS` descriptors from 3 on, for this process as
    /// `LISTEN_PID` says), as if each were added with `listen("fd://N")`.
    /// The variables are removed, so child processes do not take them too.
    /// Without them (or for another process), [`build`](Self::build) fails
    /// saying so.
    ///
    /// ```no_run
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// // systemd-socket-activate -l 127.0.0.1:9000 ./server
    /// let server = Engine::builder(|_| Quiet).listen_systemd().build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen_systemd(mut self) -> Self {
        match crate::deploy::systemd_fds() {
            Ok(fds) => {
                for fd in fds {
                    self.addrs.push(format!("fd://{fd}"));
                }
            }
            Err(e) => self.deploy.systemd_error = Some(e),
        }
        self
    }
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Listens on `addr` (a stream address: `tcp://…` or `unix://…`) for
    /// connections relayed by a load balancer that sends the PROXY protocol
    /// (v1 or v2, told apart by their first bytes). Each connection's header
    /// is read before [`on_open`](EventHandler::on_open); then
    /// [`Conn::peer_addr`](crate::Conn::peer_addr) is the client's address
    /// and [`Conn::proxy_header`](crate::Conn::proxy_header) holds the header
    /// and the balancer's address. A connection whose header is missing,
    /// malformed, too long or later than
    /// [`proxy_header_timeout`](Self::proxy_header_timeout) is closed and
    /// reported to [`on_reject`](EventHandler::on_reject) with
    /// [`CloseReason::ProxyHeader`](crate::CloseReason::ProxyHeader).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen_proxied("tcp://127.0.0.1:0") // behind HAProxy's send-proxy-v2
    ///     .listen("tcp://127.0.0.1:0") // direct clients, no header
    ///     .build()?;
    /// assert_eq!(server.handle().local_addrs().len(), 2);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen_proxied(mut self, addr: impl ToAddr) -> Self {
        self.deploy.proxied.insert(self.addrs.len());
        self.addrs.push(addr.to_url().into_owned());
        self
    }

    /// Makes every stream listener (`tcp://`, `unix://`) expect a PROXY
    /// header, as if each were added with
    /// [`listen_proxied`](Self::listen_proxied); UDP listeners are left as
    /// they are.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .proxy_protocol(true) // e.g. from a --proxy-protocol flag
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.deploy.all_proxied = on;
        self
    }

    /// How long a connection on a [`listen_proxied`](Self::listen_proxied)
    /// address may take to send its PROXY header (default 5 s).
    pub fn proxy_header_timeout(mut self, timeout: Duration) -> Self {
        self.deploy.header_timeout = timeout;
        self
    }

    /// Sets every connection limit at once (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Caps the connections open at once (accepted from listeners; dialled
    /// and enrolled ones do not count). At the cap the engine stops
    /// accepting, so new connections wait in the kernel's backlog, and
    /// resumes as soon as one closes; nobody accepted is dropped.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .max_conns(10_000)
    ///     .max_conns_per_source(100)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn max_conns(mut self, n: usize) -> Self {
        self.options.limits.max_conns = Some(n);
        self
    }

    /// Caps the connections open at once from one source IP address; more
    /// are accepted and closed at once, reported to
    /// [`on_reject`](EventHandler::on_reject) with
    /// [`CloseReason::SourceLimit`](crate::CloseReason::SourceLimit). Behind a
    /// balancer the source is the balancer.
    pub fn max_conns_per_source(mut self, n: usize) -> Self {
        self.options.limits.max_conns_per_source = Some(n);
        self
    }

    /// Limits how fast connections are accepted (a token bucket); beyond it
    /// they wait in the kernel's backlog.
    pub fn accept_rate(mut self, rate: AcceptRate) -> Self {
        self.options.limits.accept_rate = Some(rate);
        self
    }
}
