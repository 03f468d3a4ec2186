//! Running in production: the builder settings and engine queries for
//! connection limits and PROXY protocol listeners.
//!
//! Owns what the engine shares about them ([`DeployShared`]: the admission
//! gate, which listeners expect a PROXY header and how long one may take) and
//! the [`EngineBuilder`]/[`Engine`] methods that set and read them. The work
//! itself lives in [`crate::admission`] (accepting) and the loop's `admit`
//! step (headers). It must never touch a socket.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::admission::{AcceptRate, AdmissionStats, Gate, Limits};
use crate::engine::{Engine, EngineBuilder};
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::proxy_protocol::ProxyHeader;

/// How long a proxied connection may take to send its header, by default.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Builder-side settings kept beside the options.
#[derive(Clone, Debug)]
pub(crate) struct DeployConfig {
    /// Listen-address indexes that expect a PROXY header.
    pub(crate) proxied: BTreeSet<usize>,
    /// Every stream listener expects a PROXY header.
    pub(crate) all_proxied: bool,
    pub(crate) header_timeout: Duration,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            proxied: BTreeSet::new(),
            all_proxied: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
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
    /// Indexed by listen address: does it expect a PROXY header?
    proxied: Vec<bool>,
    pub(crate) header_timeout: Duration,
}

impl DeployShared {
    pub(crate) fn new(config: &DeployConfig, limits: Limits, addrs: &[ListenAddr]) -> Self {
        let stream = |a: &ListenAddr| a.transport() != Transport::Udp;
        Self {
            gate: Gate::new(limits),
            proxied: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| config.proxied.contains(&i) || (config.all_proxied && stream(a)))
                .collect(),
            header_timeout: config.header_timeout,
        }
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
    pub fn listen_proxied(mut self, addr: impl Into<String>) -> Self {
        self.deploy.proxied.insert(self.addrs.len());
        self.addrs.push(addr.into());
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
