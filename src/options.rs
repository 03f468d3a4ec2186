//! The engine's settings: [`Options`] with their defaults and validation,
//! [`LoadBalancer`] and [`KeepAlive`].
//!
//! Owns only configuration values and the checks that reject bad ones before
//! anything starts. It must never open a socket or start a thread.

use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};

/// The most event loops an engine may run.
///
/// ```
/// use ringloop::{Engine, EventHandler, MAX_LOOPS};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let too_many = Engine::builder(|_| Quiet).loops(MAX_LOOPS + 1).build();
/// assert!(too_many.is_err());
/// ```
pub const MAX_LOOPS: usize = 1024;

/// How the acceptor picks the loop for a new connection.
///
/// ```
/// use ringloop::{Engine, EventHandler, LoadBalancer};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// assert_eq!(LoadBalancer::default(), LoadBalancer::RoundRobin);
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .load_balancer(LoadBalancer::SourceAddrHash) // a client sticks to one loop
///     .build()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadBalancer {
    /// Each loop in turn (the default).
    #[default]
    RoundRobin,
    /// The loop that currently holds the fewest connections.
    LeastConnections,
    /// A hash of the peer's IP address, so one client always lands on the
    /// same loop.
    SourceAddrHash,
}

/// What a connection whose outbound queue passes its high-water mark does.
///
/// ```
/// use ringloop::{BackPressure, Engine, EventHandler, WaterMarks};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// // Close any connection with more than 1 MiB waiting for its peer.
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .write_water_marks(WaterMarks::new(1 << 20, 256 << 10))
///     .back_pressure(BackPressure::Close)
///     .build()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackPressure {
    /// Hold the completions of async writes to the connection and, if its
    /// own callback queued the output (replies to its input), stop reading
    /// from it (so it produces no more replies), until the queue drains to
    /// the low-water mark. The default. Output queued by async writes alone
    /// does not stop the reading: a peer that echoes it back must be read
    /// for the queue to drain.
    #[default]
    PauseReading,
    /// Close the connection with [`CloseReason::BackPressure`](crate::CloseReason::BackPressure).
    Close,
}

/// Idle, read, write, incomplete-input and half-closed timeouts of
/// connections (`None`: no such timeout).
///
/// # Defaults
///
/// An engine starts with [`Timeouts::default`], which bounds what a peer can
/// hold without ever asking: a message it stops sending halfway
/// ([`incomplete`](Self::incomplete), 60 s, as nginx's
/// `client_header_timeout`), bytes it stops reading
/// ([`write`](Self::write), 60 s, as nginx's `send_timeout`), and a
/// connection left half-closed with nothing moving
/// ([`half_closed`](Self::half_closed), 60 s, as HAProxy's
/// `client-fin`/`server-fin`). Idle and read timeouts are off by default: a
/// quiet connection is legitimate for many protocols (enable TCP keepalive
/// to find dead peers). [`Timeouts::none`] turns everything off.
///
/// ```
/// use ringloop::Timeouts;
/// use std::time::Duration;
/// let t = Timeouts::none().idle(Duration::from_secs(30));
/// assert_eq!(t.idle, Some(Duration::from_secs(30)));
/// assert_eq!(t.read, None);
/// let d = Timeouts::default();
/// assert_eq!(d.incomplete, Some(Duration::from_secs(60)));
/// assert_eq!(d.write, Some(Duration::from_secs(60)));
/// assert_eq!(d.idle, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Timeouts {
    /// Close after this long with no byte read or written.
    pub idle: Option<Duration>,
    /// Close after this long with no byte read.
    pub read: Option<Duration>,
    /// Close after this long with bytes queued and none written.
    pub write: Option<Duration>,
    /// Close after this long holding input the handler left unconsumed (a
    /// request head, a frame, a bulk that stops arriving) without consuming
    /// a byte of it. Counted from when the unfinished input began, not from
    /// the last byte read, so a peer trickling one byte at a time
    /// (slowloris) is closed too. A handler that keeps partial input in its
    /// own buffers instead (after `read_all`) is not covered.
    pub incomplete: Option<Duration>,
    /// Close after this long with no byte read or written once either
    /// direction is closed (the peer's end of stream was read and the
    /// connection kept open, or this side shut its writing half).
    pub half_closed: Option<Duration>,
}

impl Default for Timeouts {
    /// Incomplete input 60 s, write 60 s, half-closed 60 s; no idle or read
    /// timeout.
    fn default() -> Self {
        Self {
            idle: None,
            read: None,
            write: Some(Duration::from_secs(60)),
            incomplete: Some(Duration::from_secs(60)),
            half_closed: Some(Duration::from_secs(60)),
        }
    }
}

impl Timeouts {
    /// No timeouts.
    ///
    /// ```
    /// use ringloop::Timeouts;
    /// let t = Timeouts::none();
    /// assert_eq!((t.idle, t.read, t.write), (None, None, None));
    /// assert_eq!((t.incomplete, t.half_closed), (None, None));
    /// assert_ne!(t, Timeouts::default()); // the defaults bound slow peers
    /// ```
    pub fn none() -> Self {
        Self {
            idle: None,
            read: None,
            write: None,
            incomplete: None,
            half_closed: None,
        }
    }

    /// Sets the idle timeout.
    ///
    /// ```
    /// use ringloop::Timeouts;
    /// use std::time::Duration;
    /// let t = Timeouts::none().idle(Duration::from_secs(60));
    /// assert_eq!(t.idle, Some(Duration::from_secs(60)));
    /// ```
    pub fn idle(mut self, d: Duration) -> Self {
        self.idle = Some(d);
        self
    }

    /// Sets the read timeout.
    ///
    /// ```
    /// use ringloop::Timeouts;
    /// use std::time::Duration;
    /// // The peer must send something at least every 30 s.
    /// let t = Timeouts::none().read(Duration::from_secs(30));
    /// assert_eq!(t.read, Some(Duration::from_secs(30)));
    /// ```
    pub fn read(mut self, d: Duration) -> Self {
        self.read = Some(d);
        self
    }

    /// Sets the write timeout.
    ///
    /// ```
    /// use ringloop::Timeouts;
    /// use std::time::Duration;
    /// // A peer that takes no byte of its backlog for 10 s is dropped.
    /// let t = Timeouts::none().write(Duration::from_secs(10));
    /// assert_eq!(t.write, Some(Duration::from_secs(10)));
    /// ```
    pub fn write(mut self, d: Duration) -> Self {
        self.write = Some(d);
        self
    }

    /// Sets the incomplete-input timeout.
    ///
    /// ```
    /// use ringloop::Timeouts;
    /// use std::time::Duration;
    /// // A request head must be complete within 30 s of its first byte.
    /// let t = Timeouts::default().incomplete(Duration::from_secs(30));
    /// assert_eq!(t.incomplete, Some(Duration::from_secs(30)));
    /// ```
    pub fn incomplete(mut self, d: Duration) -> Self {
        self.incomplete = Some(d);
        self
    }

    /// Sets the half-closed timeout.
    pub fn half_closed(mut self, d: Duration) -> Self {
        self.half_closed = Some(d);
        self
    }

    pub(crate) fn any(&self) -> bool {
        self.idle.is_some()
            || self.read.is_some()
            || self.write.is_some()
            || self.incomplete.is_some()
            || self.half_closed.is_some()
    }

    fn validate(&self) -> Result<()> {
        for (name, t) in [
            ("idle", self.idle),
            ("read", self.read),
            ("write", self.write),
            ("incomplete", self.incomplete),
            ("half-closed", self.half_closed),
        ] {
            if let Some(t) = t {
                if t < Duration::from_millis(1) || t > Duration::from_secs(1 << 30) {
                    return Err(Error::InvalidConfig(format!(
                        "{name} timeout {t:?} is outside 1 ms ..= 2^30 s"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// An outbound queue's high- and low-water marks, in bytes.
///
/// ```
/// use ringloop::WaterMarks;
/// let marks = WaterMarks::default(); // Netty's defaults
/// assert_eq!((marks.high, marks.low), (64 << 10, 32 << 10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WaterMarks {
    /// Above this, back-pressure starts.
    pub high: usize,
    /// At or below this, it ends.
    pub low: usize,
}

impl WaterMarks {
    /// Marks at `high` and `low` bytes.
    ///
    /// ```
    /// use ringloop::{Engine, EventHandler, WaterMarks};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let marks = WaterMarks::new(64 * 1024, 16 * 1024);
    /// assert_eq!(marks.high, 64 * 1024);
    /// // low must be below high: build refuses the opposite.
    /// let bad = Engine::builder(|_| Quiet).write_water_marks(WaterMarks::new(1, 2)).build();
    /// assert!(bad.is_err());
    /// ```
    pub fn new(high: usize, low: usize) -> Self {
        Self { high, low }
    }

    fn validate(&self) -> Result<()> {
        if self.high == 0 || self.low >= self.high {
            return Err(Error::InvalidConfig(format!(
                "water marks need 0 <= low < high, not low {} and high {}",
                self.low, self.high
            )));
        }
        Ok(())
    }
}

impl Default for WaterMarks {
    /// 64 KiB high, 32 KiB low: Netty's defaults, and HAProxy's order of
    /// magnitude (16 KiB buffers). Tens of KiB queued per connection keep a
    /// sender busy at full speed; more only costs memory when the peer is
    /// slow.
    fn default() -> Self {
        Self::new(64 << 10, 32 << 10)
    }
}

/// TCP keepalive probing: start after `idle` without traffic, probe every
/// `interval`, give up after `count` unanswered probes.
///
/// ```
/// use ringloop::KeepAlive;
/// use std::time::Duration;
/// let ka = KeepAlive::new(Duration::from_secs(60));
/// assert_eq!(ka.interval, Duration::from_secs(12)); // idle / 5, as gnet
/// assert_eq!(ka.count, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeepAlive {
    /// Idle time before the first probe (whole seconds, at least 1).
    pub idle: Duration,
    /// Time between probes (whole seconds, at least 1).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl KeepAlive {
    /// Keepalive after `idle`, probing every `idle / 5` (at least 1 s), 5 times.
    ///
    /// ```
    /// use ringloop::KeepAlive;
    /// use std::time::Duration;
    /// let ka = KeepAlive::new(Duration::from_secs(2));
    /// assert_eq!(ka.interval, Duration::from_secs(1)); // idle / 5, at least 1 s
    /// ```
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            interval: (idle / 5).max(Duration::from_secs(1)),
            count: 5,
        }
    }

    /// Sets the probe interval.
    ///
    /// ```
    /// use ringloop::KeepAlive;
    /// use std::time::Duration;
    /// let ka = KeepAlive::new(Duration::from_secs(60)).interval(Duration::from_secs(5));
    /// assert_eq!(ka.interval, Duration::from_secs(5));
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the probe count.
    ///
    /// ```
    /// use ringloop::KeepAlive;
    /// use std::time::Duration;
    /// let ka = KeepAlive::new(Duration::from_secs(60)).count(3);
    /// assert_eq!(ka.count, 3);
    /// ```
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    pub(crate) fn to_sys(self) -> crate::sys::socket::KeepAlive {
        crate::sys::socket::KeepAlive {
            idle: self.idle,
            interval: self.interval,
            count: self.count,
        }
    }
}

/// Every setting of an engine, filled by [`EngineBuilder`]'s setters (the
/// only way to configure an engine; each setter documents its setting, its
/// default and its range) and checked by [`validate`](Self::validate) in
/// `build`. Internal: the loops derive their own per-connection settings
/// from it once, at start.
///
/// [`EngineBuilder`]: crate::EngineBuilder
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Event loops (threads serving connections). Default: one per core.
    pub(crate) loops: usize,
    /// Size of each loop's shared read buffer: the most bytes one `read`
    /// takes from a socket. Default 64 KiB.
    pub(crate) read_buffer_size: usize,
    /// The largest block small writes are coalesced into in a connection's
    /// outbound queue. Default 64 KiB.
    pub(crate) write_buffer_cap: usize,
    /// `TCP_NODELAY` on accepted TCP connections. Default on.
    pub(crate) tcp_nodelay: bool,
    /// TCP keepalive on accepted connections. Default off.
    pub(crate) tcp_keepalive: Option<KeepAlive>,
    /// `SO_RCVBUF` for listeners and accepted sockets. Default: the kernel's.
    pub(crate) recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF` for listeners and accepted sockets. Default: the kernel's.
    pub(crate) send_buffer_size: Option<usize>,
    /// `SO_REUSEADDR` on listeners. Default on.
    pub(crate) reuse_addr: bool,
    /// SO_REUSEPORT mode: no acceptor; every loop owns its own TCP listener
    /// for each address and the kernel spreads connections (Unix listeners
    /// are then served by loop 0). Default off.
    pub(crate) reuse_port: bool,
    /// Accept on a separate acceptor thread even when there is only one
    /// loop. Default off: a single loop accepts on its own listeners (no
    /// hand-off message, doorbell wake or thread switch per connection, as
    /// tokio's current-thread runtime); with several loops (and reuseport
    /// off) the acceptor thread is used anyway.
    pub(crate) acceptor_thread: bool,
    /// Edge-triggered I/O on connections, with at most
    /// [`edge_triggered_chunk`](Self::edge_triggered_chunk) bytes read and
    /// written per connection per loop turn. `None` (the default):
    /// edge-triggered on epoll, nothing to choose on io_uring; `Some(false)`:
    /// level-triggered on epoll; `Some(true)`: asked for, which also makes
    /// [`Backend::Auto`](crate::Backend::Auto) choose epoll.
    pub(crate) edge_triggered: Option<bool>,
    /// Per-connection, per-turn byte budget in edge-triggered mode, so one
    /// busy connection cannot starve the others. Default 1 MiB.
    pub(crate) edge_triggered_chunk: usize,
    /// The I/O driver (see [`Backend`](crate::Backend)). `None` (the
    /// default): `RINGLOOP_BACKEND`, else [`Backend::Auto`](crate::Backend::Auto).
    pub(crate) backend: Option<crate::Backend>,
    /// Listen backlog. Default 1024.
    pub(crate) listen_backlog: i32,
    /// How accepted connections are spread over loops.
    pub(crate) load_balancer: LoadBalancer,
    /// Messages each mailbox lane holds. Default 1024.
    pub(crate) mailbox_capacity: usize,
    /// The loops' wake-up fd. Default: eventfd, else a pipe.
    pub(crate) doorbell: Doorbell,
    /// Call [`EventHandler::on_tick`](crate::EventHandler::on_tick). Default off.
    pub(crate) ticker: bool,
    /// Connection timeouts. Default: [`Timeouts::default`] (incomplete
    /// input, write and half-closed 60 s each; no idle or read timeout).
    pub(crate) timeouts: Timeouts,
    /// Outbound high- and low-water marks per connection. Default 64 KiB /
    /// 32 KiB.
    pub(crate) write_water_marks: WaterMarks,
    /// What passing the high-water mark does. Default: pause reading.
    pub(crate) back_pressure: BackPressure,
    /// The most bytes a connection may leave unconsumed between callbacks
    /// (a partial request waiting for the rest). A peer that pushes past it
    /// is closed with [`CloseReason::InboundLimit`](crate::CloseReason::InboundLimit).
    /// Default 64 MiB.
    pub(crate) max_inbound: usize,
    /// The most bytes all connections together may hold in memory
    /// (unconsumed input by capacity, queued output). Near it (3/4) every
    /// connection holding 64 KiB or more stops being read until the total
    /// falls to half; past it, each loop over its share (budget / loops) closes
    /// its largest connections with
    /// [`CloseReason::BufferBudget`](crate::CloseReason::BufferBudget).
    /// Default 512 MiB.
    pub(crate) buffer_budget: usize,
    /// A lingering close, as nginx's `lingering_close`: when this side closes
    /// a connection gracefully (after its last reply is flushed) while the
    /// peer may still be sending, shut the write side, read and discard the
    /// peer's input until its end of stream or for at most this long, then
    /// close. Without it, input arriving after the close makes the kernel
    /// reset the connection, and the peer can lose the last reply (an error
    /// message). The close callback runs when the connection finally closes.
    /// Default off.
    pub(crate) lingering_close: Option<Duration>,
    /// How long a dial may take to connect. Default 10 s.
    pub(crate) connect_timeout: Duration,
    /// How long a stop waits for connections to flush what they have queued
    /// before closing them hard; also how long a connection closed with
    /// [`Action::Close`](crate::Action::Close) may take to flush. Default 5 s.
    pub(crate) drain_timeout: Duration,
    /// Worker-pool threads. Default: 4 per core, at least 4.
    pub(crate) workers: usize,
    /// Jobs the worker pool's queue holds. Default 4096.
    pub(crate) job_queue_capacity: usize,
    /// What the worker pool does with queued jobs at shutdown.
    pub(crate) pool_shutdown: PoolShutdown,
    /// Connection limits: a cap on open connections, per source address,
    /// and an accept rate. Default: none.
    pub(crate) limits: crate::admission::Limits,
    /// The longest a stop waits for the worker pool (its running jobs and,
    /// under [`PoolShutdown::Finish`], its queued ones). Past it the stop
    /// goes on without them: queued jobs are dropped unrun, running ones are
    /// left to end with the process. Default 30 s.
    pub(crate) pool_shutdown_timeout: Duration,
    /// TLS: the server and client configs, the handshake timeout.
    pub(crate) tls: crate::tls::TlsOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            loops: std::thread::available_parallelism().map_or(1, usize::from),
            read_buffer_size: 64 * 1024,
            write_buffer_cap: 64 * 1024,
            tcp_nodelay: true,
            tcp_keepalive: None,
            recv_buffer_size: None,
            send_buffer_size: None,
            reuse_addr: true,
            reuse_port: false,
            acceptor_thread: false,
            edge_triggered: None,
            edge_triggered_chunk: 1 << 20,
            backend: None,
            listen_backlog: 1024,
            load_balancer: LoadBalancer::RoundRobin,
            mailbox_capacity: crate::actors::DEFAULT_LANE_CAPACITY,
            doorbell: Doorbell::Auto,
            ticker: false,
            timeouts: Timeouts::default(),
            write_water_marks: WaterMarks::default(),
            back_pressure: BackPressure::PauseReading,
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            lingering_close: None,
            max_inbound: 64 << 20,
            buffer_budget: 512 << 20,
            workers: (4 * std::thread::available_parallelism().map_or(1, usize::from)).max(4),
            job_queue_capacity: 4096,
            pool_shutdown: PoolShutdown::Finish,
            limits: crate::admission::Limits::default(),
            pool_shutdown_timeout: Duration::from_secs(30),
            tls: crate::tls::TlsOptions::default(),
        }
    }
}

impl WaterMarks {
    pub(crate) fn check(&self) -> Result<()> {
        self.validate()
    }
}

impl Timeouts {
    pub(crate) fn check(&self) -> Result<()> {
        self.validate()
    }
}

impl Options {
    /// The loops accept on their own listeners (reuseport mode, or a single
    /// loop not asked to use the acceptor thread) rather than an acceptor
    /// thread handing connections over.
    pub(crate) fn accepts_inline(&self) -> bool {
        self.reuse_port || (self.loops == 1 && !self.acceptor_thread)
    }

    /// Whether a loop serves its connections edge-triggered, given whether
    /// its driver is a readiness one (epoll) and the mode when the builder
    /// set none (`when_unset`: [`epoll_mode_from_env`], edge-triggered
    /// unless `RINGLOOP_EPOLL_MODE` says otherwise); `edge_triggered(false)`
    /// is level-triggered, `edge_triggered(true)` edge-triggered; a
    /// completion driver (io_uring) has no such mode.
    pub(crate) fn edge_triggered_on(&self, readiness_driver: bool, when_unset: bool) -> bool {
        readiness_driver && self.edge_triggered.unwrap_or(when_unset)
    }

    /// Checks every value; the first bad one is reported as
    /// [`Error::InvalidConfig`].
    pub(crate) fn validate(&self) -> Result<()> {
        fn bad(what: String) -> Result<()> {
            Err(Error::InvalidConfig(what))
        }
        if self.loops == 0 {
            return bad("loops must be at least 1".into());
        }
        if self.loops > MAX_LOOPS {
            return bad(format!(
                "{} loops is more than the maximum of {MAX_LOOPS}",
                self.loops
            ));
        }
        if !(1024..=64 << 20).contains(&self.read_buffer_size) {
            return bad(format!(
                "read buffer size {} is outside 1 KiB ..= 64 MiB",
                self.read_buffer_size
            ));
        }
        if !(1024..=64 << 20).contains(&self.write_buffer_cap) {
            return bad(format!(
                "write buffer cap {} is outside 1 KiB ..= 64 MiB",
                self.write_buffer_cap
            ));
        }
        if self.edge_triggered_chunk < 1024 {
            return bad(format!(
                "edge-triggered chunk {} is below 1 KiB",
                self.edge_triggered_chunk
            ));
        }
        if self.listen_backlog <= 0 {
            return bad(format!(
                "listen backlog {} must be positive",
                self.listen_backlog
            ));
        }
        if !(1..=1 << 20).contains(&self.mailbox_capacity) {
            return bad(format!(
                "mailbox capacity {} is outside 1 ..= 1048576",
                self.mailbox_capacity
            ));
        }
        for (name, size) in [
            ("receive buffer size", self.recv_buffer_size),
            ("send buffer size", self.send_buffer_size),
        ] {
            if let Some(size) = size {
                if size == 0 || size > i32::MAX as usize {
                    return bad(format!("{name} {size} is out of range"));
                }
            }
        }
        if !(1..=4096).contains(&self.workers) {
            return bad(format!("{} workers is outside 1 ..= 4096", self.workers));
        }
        if !(1..=1 << 24).contains(&self.job_queue_capacity) {
            return bad(format!(
                "job queue capacity {} is outside 1 ..= 16777216",
                self.job_queue_capacity
            ));
        }
        self.timeouts.validate()?;
        if self.max_inbound < self.read_buffer_size {
            return bad(format!(
                "max inbound {} is below the read buffer size {}",
                self.max_inbound, self.read_buffer_size
            ));
        }
        if self.connect_timeout < Duration::from_millis(1) {
            return bad(format!(
                "connect timeout {:?} is below 1 ms",
                self.connect_timeout
            ));
        }
        self.write_water_marks.validate()?;
        self.limits.validate()?;
        if self.buffer_budget < 64 * 1024 {
            return bad(format!(
                "buffer budget {} is below 64 KiB",
                self.buffer_budget
            ));
        }
        self.tls.validate()?;
        if let Some(ka) = self.tcp_keepalive {
            if ka.idle < Duration::from_secs(1)
                || ka.interval < Duration::from_secs(1)
                || ka.count == 0
            {
                return bad(
                    "keepalive idle and interval must be at least 1 s and count at least 1".into(),
                );
            }
        }
        Ok(())
    }
}

/// What happens to queued jobs when the pool shuts down.
///
/// ```
/// use ringloop::{PoolShutdown, WorkerPool};
/// use std::sync::mpsc::channel;
/// let pool = WorkerPool::new(1, 16, PoolShutdown::Cancel)?;
/// let (started, is_started) = channel();
/// let (release, released) = channel::<()>();
/// // Keep the only worker busy until we say so.
/// pool.submit(move || {
///     started.send(()).unwrap();
///     let _ = released.recv();
/// })
/// .unwrap();
/// is_started.recv().unwrap();
/// let (tx, rx) = channel();
/// pool.submit(move || tx.send(()).unwrap()).unwrap(); // queued behind it
/// let closer = {
///     let pool = pool.clone();
///     std::thread::spawn(move || pool.shutdown())
/// };
/// // Once submits are refused as "shut down", queued jobs are cancelled.
/// while pool.submit(|| ()).map_or_else(|e| e.is_full(), |_| true) {
///     std::thread::yield_now();
/// }
/// drop(release); // let the busy job finish
/// closer.join().unwrap();
/// assert!(rx.recv().is_err(), "the queued job was dropped, not run");
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolShutdown {
    /// Run every job queued before the shutdown (the default); an engine
    /// waits for them at most
    /// [`EngineBuilder::pool_shutdown_timeout`](crate::EngineBuilder::pool_shutdown_timeout).
    #[default]
    Finish,
    /// Drop queued jobs without running them.
    Cancel,
}

/// The environment variable that picks epoll's mode for engines whose
/// builder did not (`EngineBuilder::edge_triggered`): `edge` (the default)
/// or `level`. The test suite runs once more with `level`, so
/// level-triggered mode stays covered now that it is not the default.
pub(crate) const EPOLL_MODE_ENV: &str = "RINGLOOP_EPOLL_MODE";

/// Whether `RINGLOOP_EPOLL_MODE` leaves unset engines edge-triggered:
/// unset or empty is `true`; a value other than `edge` or `level` is an
/// [`Error::InvalidConfig`].
pub(crate) fn epoll_mode_from_env() -> Result<bool> {
    parse_epoll_mode(std::env::var(EPOLL_MODE_ENV).ok().as_deref())
}

fn parse_epoll_mode(value: Option<&str>) -> Result<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("edge") => Ok(true),
        Some("level") => Ok(false),
        Some(other) => Err(Error::InvalidConfig(format!(
            "{EPOLL_MODE_ENV}: {other:?} is neither `edge` nor `level`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_defaults_are_the_value_types_defaults() {
        let o = Options::default();
        assert_eq!(o.timeouts, Timeouts::default());
        assert_eq!(o.write_water_marks, WaterMarks::default());
        assert!(o.validate().is_ok());
    }

    #[test]
    fn epoll_is_edge_triggered_unless_told_level_triggered() {
        let mut o = Options::default();
        assert!(o.edge_triggered_on(true, true), "the default on epoll");
        assert!(
            !o.edge_triggered_on(true, false),
            "RINGLOOP_EPOLL_MODE=level, unset"
        );
        assert!(
            !o.edge_triggered_on(false, true),
            "io_uring has no such mode"
        );
        o.edge_triggered = Some(false);
        assert!(
            !o.edge_triggered_on(true, true),
            "edge_triggered(false) on epoll"
        );
        o.edge_triggered = Some(true);
        assert!(
            o.edge_triggered_on(true, true),
            "edge_triggered(true) on epoll"
        );
        assert!(
            o.edge_triggered_on(true, false),
            "edge_triggered(true) beats RINGLOOP_EPOLL_MODE=level"
        );
        assert!(!o.edge_triggered_on(false, true), "ignored on io_uring");
    }

    #[test]
    fn the_epoll_mode_variable_reads_edge_or_level() {
        assert!(parse_epoll_mode(None).unwrap());
        assert!(parse_epoll_mode(Some("")).unwrap());
        assert!(parse_epoll_mode(Some(" Edge ")).unwrap());
        assert!(!parse_epoll_mode(Some("level")).unwrap());
        let err = parse_epoll_mode(Some("lt")).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        assert!(err.to_string().contains(EPOLL_MODE_ENV), "{err}");
    }
}
