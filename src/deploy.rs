//! Running in production: the builder settings and engine queries for
//! connection limits, PROXY protocol listeners, inherited sockets (`fd://N`,
//! systemd) and upgrades.
//!
//! Owns what the engine shares about them ([`DeployShared`]: the admission
//! gate, which listeners expect a PROXY header and how long one may take,
//! the draining flag, the upgrade control socket), which listen addresses are
//! taken over instead of bound ([`Inherited`]) and where those sockets go,
//! and the [`EngineBuilder`]/[`Engine`] methods that set and read all this.
//! The work itself lives elsewhere: [`crate::admission`] (accepting), the
//! loop's `admit` step (headers, draining), [`crate::upgrade`] (the handoff),
//! [`crate::sys::handoff`] (descriptor calls). It makes no socket call of
//! its own beyond those.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::admission::{AcceptRate, AdmissionStats, Gate, Limits};
use crate::engine::EngineShared;
use crate::engine::{Engine, EngineBuilder};
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::listener::{Listener, LoopSockets};
use crate::options::Options;
use crate::proxy_protocol::ProxyHeader;
use crate::sys;
use crate::upgrade::{Control, Takeover};

/// How long a proxied connection may take to send its header, by default.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Builder-side settings kept beside the options.
#[derive(Debug)]
pub(crate) struct DeployConfig {
    /// Listen-address indexes that expect a PROXY header.
    pub(crate) proxied: BTreeSet<usize>,
    /// Every stream listener expects a PROXY header.
    pub(crate) all_proxied: bool,
    pub(crate) header_timeout: Duration,
    /// Why `listen_systemd` found no sockets (reported by `build`).
    pub(crate) systemd_error: Option<Error>,
    /// The upgrade control socket, if the engine serves one.
    pub(crate) upgrade_path: Option<PathBuf>,
    pub(crate) upgrade_deadline: Duration,
    /// A handoff under way: sockets received, `READY` not yet sent.
    pub(crate) takeover: Option<Takeover>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            proxied: BTreeSet::new(),
            all_proxied: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            systemd_error: None,
            upgrade_path: None,
            upgrade_deadline: crate::upgrade::DEFAULT_DEADLINE,
            takeover: None,
        }
    }
}

impl DeployConfig {
    /// Checks the settings against the parsed listen addresses.
    pub(crate) fn validate(&self, addrs: &[ListenAddr]) -> Result<()> {
        for &i in &self.proxied {
            if addrs
                .get(i)
                .is_some_and(|a| a.transport() == Transport::Udp)
            {
                return Err(Error::InvalidConfig(format!(
                    "{}: the PROXY protocol needs a stream listener (tcp:// or unix://)",
                    addrs[i]
                )));
            }
        }
        if self.header_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "the PROXY header timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What every actor of a running engine shares about deployment.
pub(crate) struct DeployShared {
    pub(crate) gate: Arc<Gate>,
    /// Set once the listeners went to a new process: accept nothing more.
    draining: AtomicBool,
    /// Actors (the acceptor, reuseport loops) still holding listeners;
    /// each counts itself out once it closed them while draining.
    accepting: AtomicUsize,
    /// The upgrade control socket, until its thread takes it.
    control: Mutex<Option<Control>>,
    /// Indexed by listen address: does it expect a PROXY header?
    proxied: Vec<bool>,
    pub(crate) header_timeout: Duration,
}

impl DeployShared {
    pub(crate) fn new(
        config: &DeployConfig,
        limits: Limits,
        addrs: &[ListenAddr],
        control: Option<Control>,
        accepting_actors: usize,
    ) -> Self {
        let stream = |a: &ListenAddr| a.transport() != Transport::Udp;
        Self {
            gate: Gate::new(limits),
            draining: AtomicBool::new(false),
            accepting: AtomicUsize::new(accepting_actors),
            control: Mutex::new(control),
            proxied: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| config.proxied.contains(&i) || (config.all_proxied && stream(a)))
                .collect(),
            header_timeout: config.header_timeout,
        }
    }

    /// `true` once this engine handed its listeners to a new process.
    pub(crate) fn is_draining(&self) -> bool {
        // Acquire: pairs with the Release in `begin_upgrade_drain`.
        self.draining.load(Ordering::Acquire)
    }

    /// An actor closed its listeners while draining: every connection it
    /// accepted is counted in its loop by now.
    pub(crate) fn stopped_accepting(&self) {
        // Release: pairs with the Acquire in `still_accepting`, so the
        // connection counts it updated before are seen.
        self.accepting.fetch_sub(1, Ordering::Release);
    }

    /// Actors that have not yet closed their listeners.
    pub(crate) fn still_accepting(&self) -> usize {
        // Acquire: see `stopped_accepting`.
        self.accepting.load(Ordering::Acquire)
    }

    pub(crate) fn take_control(&self) -> Option<Control> {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether connections from listen address `index` start with a PROXY
    /// header.
    pub(crate) fn is_proxied(&self, index: u16) -> bool {
        self.proxied
            .get(usize::from(index))
            .copied()
            .unwrap_or(false)
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
    /// assert_eq!(server.engine().local_addrs().len(), 2);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen_proxied(mut self, addr: impl crate::to_addr::ToAddr) -> Self {
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

impl Engine {
    /// What admission control did so far: connections admitted, open under
    /// the cap, pauses at the cap or the rate, refusals.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// assert_eq!(server.engine().admission_stats().admitted, 0);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn admission_stats(&self) -> AdmissionStats {
        self.shared.deploy.gate.stats()
    }
}

/// A proxied connection's PROXY protocol state.
pub(crate) enum ProxyState {
    /// Accepted; the header is not whole yet. Not opened.
    Awaiting {
        /// The bytes received so far.
        received: Vec<u8>,
        /// When the header is due (loop clock, ms).
        deadline_ms: u64,
    },
    /// The header arrived; the connection is open.
    Received {
        header: ProxyHeader,
        /// The socket's own peer: the balancer.
        balancer: SockAddr,
    },
}

/// Listening sockets taken over instead of bound, by listen-address index.
#[derive(Default)]
pub(crate) struct Inherited {
    /// The address, its sockets, and whether a Unix socket file is ours to
    /// remove at exit (taken over in an upgrade: yes; inherited: no).
    by_index: HashMap<usize, (ListenAddr, Vec<OwnedFd>, bool)>,
}

impl Inherited {
    /// The address of inherited listen address `index`, if it is one.
    pub(crate) fn addr(&self, index: usize) -> Option<ListenAddr> {
        self.by_index.get(&index).map(|(a, _, _)| a.clone())
    }

    pub(crate) fn has(&self, index: u16) -> bool {
        self.by_index.contains_key(&usize::from(index))
    }

    /// Hands the sockets of listen address `index` to whoever accepts: the
    /// acceptor, or in reuseport mode the loops, spread evenly (a TCP
    /// address with fewer sockets than loops gets new ones bound beside
    /// them, joining their `SO_REUSEPORT` group). Every socket taken over
    /// is served: closing one would drop the connections in its queue.
    pub(crate) fn place(
        &mut self,
        index: u16,
        acceptor: &mut Vec<(Listener, u16)>,
        loops: &mut [LoopSockets],
        options: &Options,
    ) -> Result<ListenAddr> {
        let (addr, fds, owns_file) = self
            .by_index
            .remove(&usize::from(index))
            .expect("checked by has()");
        if addr.transport() == Transport::Udp {
            // Every loop reads its own socket of the SO_REUSEPORT group
            // (ours always are); loops beyond the ones handed over join it.
            let n = fds.len();
            for (i, fd) in fds.into_iter().enumerate() {
                loops[i % loops.len()].udp.push((fd, index));
            }
            for sockets in loops.iter_mut().skip(n) {
                let (fd, _) = Listener::bind_udp(&addr, options, false)?;
                sockets.udp.push((fd, index));
            }
            return Ok(addr);
        }
        if !options.reuse_port {
            acceptor.extend(
                fds.into_iter()
                    .map(|fd| (Listener::adopt(fd, addr.clone(), owns_file), index)),
            );
            return Ok(addr);
        }
        let n = fds.len();
        for (i, fd) in fds.into_iter().enumerate() {
            loops[i % loops.len()]
                .listeners
                .push((Listener::adopt(fd, addr.clone(), owns_file), index));
        }
        if addr.transport() == Transport::Tcp {
            for sockets in loops.iter_mut().skip(n) {
                match Listener::bind(&addr, options, true) {
                    Ok(listener) => sockets.listeners.push((listener, index)),
                    Err(e) => {
                        // Not in a SO_REUSEPORT group: the loops holding
                        // the inherited sockets serve them alone.
                        log::info!("{addr}: served by {n} loop(s) only ({e})");
                        break;
                    }
                }
            }
        }
        Ok(addr)
    }
}

impl DeployConfig {
    /// Takes the sockets named by `fd://N` addresses, checking each is an
    /// open, listening stream socket named once.
    pub(crate) fn take_inherited(&mut self, addrs: &[String]) -> Result<Inherited> {
        if let Some(e) = self.systemd_error.take() {
            return Err(e);
        }
        let mut inherited = Inherited::default();
        let mut taken = BTreeSet::new();
        for (i, a) in addrs.iter().enumerate() {
            let Some(number) = a.strip_prefix("fd://") else {
                continue;
            };
            let invalid = |reason: &str| Error::invalid_address(a, reason);
            let raw: RawFd = number
                .parse()
                .ok()
                .filter(|n: &RawFd| *n >= 0 && number.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| invalid("fd:// takes a descriptor number, e.g. fd://3"))?;
            if !taken.insert(raw) {
                return Err(invalid("the same descriptor is named twice"));
            }
            let fd = sys::handoff::take_inherited(raw)
                .map_err(|e| invalid(&format!("descriptor {raw} is not open ({e})")))?;
            let sock_addr = sys::handoff::listening_stream_addr(fd.as_fd())
                .map_err(|e| invalid(&format!("descriptor {raw}: {e}")))?;
            let transport = match sock_addr {
                SockAddr::Inet(_) => Transport::Tcp,
                SockAddr::Unix(_) => Transport::Unix,
            };
            // An unnamed (abstract) Unix socket has no URL form: keep its
            // address as the kernel gave it.
            let addr = ListenAddr::parse(&format!("{transport}://{sock_addr}")).or_else(|_| {
                ListenAddr::parse("unix://inherited").map(|u| u.with_sock_addr(sock_addr.clone()))
            })?;
            inherited.by_index.insert(i, (addr, vec![fd], false));
        }
        if let Some(path) = &self.upgrade_path {
            if let Some(mut takeover) = crate::upgrade::request(path)? {
                for (i, a) in addrs.iter().enumerate() {
                    let Ok(want) = ListenAddr::parse(a) else {
                        continue; // fd:// (taken above), or an error build reports
                    };
                    let taken = takeover.take_for(i, &want);
                    if let Some((addr, _)) = taken.first() {
                        let addr = addr.clone();
                        let fds = taken.into_iter().map(|(_, fd)| fd).collect();
                        inherited.by_index.insert(i, (addr, fds, true));
                    }
                }
                self.takeover = Some(takeover);
            }
        }
        Ok(inherited)
    }

    /// After every listener is in place: completes a handoff under way (the
    /// old process stops accepting) and binds the control socket for the
    /// next upgrade.
    pub(crate) fn finish_upgrade(
        &mut self,
        acceptor: &[(Listener, u16)],
        loops: &[LoopSockets],
    ) -> Result<Option<Control>> {
        if let Some(takeover) = self.takeover.take() {
            takeover.complete()?;
        }
        let Some(path) = &self.upgrade_path else {
            return Ok(None);
        };
        Control::bind(path, self.upgrade_deadline, acceptor, loops).map(Some)
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
        match systemd_fds() {
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

/// The descriptors systemd passed (`LISTEN_FDS` from `SD_LISTEN_FDS_START`,
/// for `LISTEN_PID`); removes the variables.
fn systemd_fds() -> Result<std::ops::Range<RawFd>> {
    const SD_LISTEN_FDS_START: RawFd = 3;
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Err(Error::InvalidConfig(
            "no sockets from systemd: LISTEN_PID and LISTEN_FDS are not set".into(),
        ));
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Err(Error::InvalidConfig(format!(
            "the sockets from systemd are for process {pid}, not this one ({})",
            std::process::id()
        )));
    }
    let n: RawFd = count
        .parse()
        .ok()
        .filter(|n| (1..=1024).contains(n))
        .ok_or_else(|| {
            Error::InvalidConfig(format!("LISTEN_FDS={count:?} is not a count of sockets"))
        })?;
    Ok(SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n)
}

impl EngineShared {
    /// The listeners went to a new process: every actor stops accepting
    /// (the loops keep serving their connections and tell their handlers).
    pub(crate) fn begin_upgrade_drain(&self) {
        // Release: an actor that sees the flag sees everything before it.
        self.deploy.draining.store(true, Ordering::Release);
        self.wake_actors();
    }

    /// Connections open on all loops.
    pub(crate) fn connection_count(&self) -> usize {
        // Relaxed: an estimate, polled until it reaches zero.
        self.loops
            .iter()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .sum()
    }
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Upgrades that drop nothing, through the Unix control socket `path`.
    ///
    /// At [`build`](Self::build): if a ringloop process serves `path`, its
    /// listening sockets for the same addresses (every loop's, in reuseport
    /// mode) are taken over instead of bound, and once this engine is built
    /// that process stops accepting and drains: it serves the connections
    /// it has (handlers see [`Engine::is_draining`] and
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

impl Engine {
    /// `true` once this engine handed its listeners to a new process (see
    /// [`EngineBuilder::upgrade_socket`]): it accepts nothing more and will
    /// stop when its connections have closed. A protocol can use it to
    /// finish the request in hand and close at a message boundary.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// assert!(!server.engine().is_draining());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn is_draining(&self) -> bool {
        self.shared.deploy.is_draining()
    }
}
