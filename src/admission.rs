//! Admission control: which connections the engine takes, and when.
//!
//! Owns the engine's connection limits ([`Limits`]: a cap on open
//! connections, an optional cap per source address, an accept rate) and the
//! one accept step both accept paths use ([`accept_next`]): the acceptor
//! actor and every loop in reuseport mode call it, so a limit holds the same
//! way whichever path accepts.
//!
//! At the connection cap, or with the rate spent, nothing is accepted:
//! connections wait in the kernel's backlog (as with HAProxy's `maxconn`)
//! and the caller pauses its listeners until the time [`Accepted::Wait`]
//! names, then tries again. Nobody accepted is dropped for the cap. A source
//! over its own cap is accepted and then refused ([`Admission::OverSourceLimit`]):
//! the backlog is first-in first-out, so leaving it there would block
//! everybody behind it.
//!
//! Every admitted connection holds a [`Ticket`] while the engine has limits;
//! dropping it (however the connection ends, even undelivered in a mailbox)
//! gives its place back. This module must never touch a connection beyond
//! accepting it and never block.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::addr::SockAddr;
use crate::error::{Error, Result};

/// How often a paused listener looks again whether the engine fell below its
/// connection cap.
const CAP_RECHECK: Duration = Duration::from_millis(5);

/// An accept rate limit: a token bucket refilled at `per_second`, holding at
/// most `burst` tokens; each accepted connection takes one.
///
/// ```
/// use ringloop::{AcceptRate, Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .accept_rate(AcceptRate::new(1000, 100)) // 1,000 a second, bursts of 100
///     .build()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptRate {
    /// Tokens added per second.
    pub per_second: u32,
    /// The most tokens the bucket holds (the largest burst).
    pub burst: u32,
}

impl AcceptRate {
    /// `per_second` connections a second on average, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// The engine's connection limits (all off by default).
///
/// ```
/// use ringloop::{AcceptRate, Limits};
/// let limits = Limits::default().max_conns(10_000).max_conns_per_source(100);
/// assert_eq!(limits.max_conns, Some(10_000));
/// assert_eq!(limits.accept_rate, None::<AcceptRate>);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most connections accepted and open at once; at the cap the engine
    /// stops accepting and resumes below it.
    pub max_conns: Option<usize>,
    /// Most connections open at once from one source IP address; more are
    /// accepted and closed at once with
    /// [`CloseReason::SourceLimit`](crate::CloseReason::SourceLimit).
    pub max_conns_per_source: Option<usize>,
    /// Most connections accepted per second.
    pub accept_rate: Option<AcceptRate>,
}

impl Limits {
    /// Sets the cap on open connections.
    pub fn max_conns(mut self, n: usize) -> Self {
        self.max_conns = Some(n);
        self
    }

    /// Sets the cap on open connections per source address.
    pub fn max_conns_per_source(mut self, n: usize) -> Self {
        self.max_conns_per_source = Some(n);
        self
    }

    /// Sets the accept rate limit.
    pub fn accept_rate(mut self, rate: AcceptRate) -> Self {
        self.accept_rate = Some(rate);
        self
    }

    fn any(&self) -> bool {
        self.max_conns.is_some() || self.max_conns_per_source.is_some()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidConfig(what.into()));
        if self.max_conns == Some(0) {
            return bad("max_conns must be at least 1");
        }
        if self.max_conns_per_source == Some(0) {
            return bad("max_conns_per_source must be at least 1");
        }
        if let Some(rate) = self.accept_rate {
            if rate.per_second == 0 || rate.burst == 0 {
                return bad("an accept rate needs a positive rate and burst");
            }
        }
        Ok(())
    }
}

/// What admission control did, engine-wide
/// ([`EngineHandle::admission_stats`](crate::EngineHandle::admission_stats)).
///
/// ```
/// use ringloop::{Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").max_conns(100).build()?;
/// let stats = server.handle().admission_stats();
/// assert_eq!((stats.admitted, stats.open, stats.paused_at_cap), (0, 0, 0));
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Connections accepted from listeners since start.
    pub admitted: u64,
    /// Connections counted against the cap now (only while a cap is set).
    pub open: u64,
    /// Times accepting paused because the engine was at `max_conns`.
    pub paused_at_cap: u64,
    /// Times accepting paused because the accept rate was spent.
    pub rate_limited: u64,
    /// Connections refused because their source was at its cap.
    pub refused_source_limit: u64,
    /// Connections closed because their PROXY protocol header was missing,
    /// malformed, too long or late.
    pub refused_proxy_header: u64,
}

impl fmt::Display for AdmissionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} admitted, {} open under the cap, {} pauses at the cap, {} rate-limit pauses, {} refused by source cap, {} refused for a bad PROXY header",
            self.admitted,
            self.open,
            self.paused_at_cap,
            self.rate_limited,
            self.refused_source_limit,
            self.refused_proxy_header
        )
    }
}

/// A token bucket; time is measured from `last`.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The engine-wide admission state, shared by every accepting thread.
pub(crate) struct Gate {
    limits: Limits,
    open: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    bucket: Option<Mutex<Bucket>>,
    admitted: AtomicU64,
    paused_at_cap: AtomicU64,
    rate_limited: AtomicU64,
    refused_source_limit: AtomicU64,
    refused_proxy_header: AtomicU64,
}

/// How an accepted connection was admitted; travels with the socket to its
/// loop.
pub(crate) enum Admission {
    /// The engine has no caps: nothing to give back.
    Free,
    /// Counted against the caps until dropped.
    /// (Boxed: keeps every mailbox slot within a cache line.)
    Counted(Box<Ticket>),
    /// Its source is at its cap: the loop refuses it.
    OverSourceLimit,
}

/// A place under the engine's caps, given back when dropped.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    source: Option<IpAddr>,
}

/// The outcome of one accept step.
pub(crate) enum Accepted {
    /// A connection, with its admission.
    Conn(OwnedFd, SockAddr, Admission),
    /// Nothing is waiting.
    Empty,
    /// A limit is reached: accept nothing before this moment.
    Wait(Instant),
}

fn relaxed_bump(counter: &AtomicU64) {
    // Relaxed: a statistic, written by several threads, read as a snapshot.
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Gate {
    pub(crate) fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            bucket: limits.accept_rate.map(|r| {
                Mutex::new(Bucket {
                    tokens: f64::from(r.burst),
                    last: Instant::now(),
                })
            }),
            admitted: AtomicU64::new(0),
            paused_at_cap: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            refused_source_limit: AtomicU64::new(0),
            refused_proxy_header: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        // Relaxed: a snapshot of independent counters.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AdmissionStats {
            admitted: get(&self.admitted),
            open: self.open.load(Ordering::Relaxed) as u64,
            paused_at_cap: get(&self.paused_at_cap),
            rate_limited: get(&self.rate_limited),
            refused_source_limit: get(&self.refused_source_limit),
            refused_proxy_header: get(&self.refused_proxy_header),
        }
    }

    pub(crate) fn count_proxy_refusal(&self) {
        relaxed_bump(&self.refused_proxy_header);
    }

    /// Takes a place under the cap, or says it is full.
    fn reserve(&self) -> bool {
        let Some(max) = self.limits.max_conns else {
            if self.limits.any() {
                // Relaxed: a counter; only the cap's check needs it exact.
                self.open.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        };
        // Relaxed: the count is the only shared datum; a CAS loop keeps it
        // from ever passing the cap whatever threads race here.
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        // Relaxed: see `reserve`.
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes a token from the bucket, or says when the next one comes.
    fn take_token(&self, now: Instant) -> Result<(), Instant> {
        let (Some(bucket), Some(rate)) = (&self.bucket, self.limits.accept_rate) else {
            return Ok(());
        };
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let per_second = f64::from(rate.per_second);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(f64::from(rate.burst));
        b.last = now.max(b.last);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - b.tokens) / per_second);
        Err(now + wait.max(Duration::from_millis(1)))
    }

    /// Gives back a token taken for an accept that found nobody waiting.
    fn return_token(&self) {
        if let (Some(bucket), Some(rate)) = (&self.bucket, self.limits.accept_rate) {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            b.tokens = (b.tokens + 1.0).min(f64::from(rate.burst));
        }
    }

    /// Counts one more connection from `ip`; `false` if it is at its cap.
    fn enter_source(&self, ip: IpAddr) -> bool {
        let Some(max) = self.limits.max_conns_per_source else {
            return true;
        };
        let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave_source(&self, ip: IpAddr) {
        let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(ip) = self.source {
            self.gate.leave_source(ip);
        }
        self.gate.release();
    }
}

/// The one accept step: checks the limits, accepts one connection from
/// `listener` and decides its admission. An error is the OS's (the caller
/// decides whether to back off).
pub(crate) fn accept_next(
    listener: BorrowedFd<'_>,
    gate: &Arc<Gate>,
    accept: impl FnOnce(BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, SockAddr)>>,
) -> io::Result<Accepted> {
    if gate.bucket.is_some() {
        // The clock is read only when a rate is set.
        if let Err(at) = gate.take_token(Instant::now()) {
            relaxed_bump(&gate.rate_limited);
            return Ok(Accepted::Wait(at));
        }
    }
    if !gate.reserve() {
        gate.return_token();
        relaxed_bump(&gate.paused_at_cap);
        return Ok(Accepted::Wait(Instant::now() + CAP_RECHECK));
    }
    let counted = gate.limits.any();
    let undo = || {
        if counted {
            gate.release();
        }
        gate.return_token();
    };
    let (fd, peer) = match accept(listener) {
        Ok(Some(got)) => got,
        Ok(None) => {
            undo();
            return Ok(Accepted::Empty);
        }
        Err(e) => {
            undo();
            return Err(e);
        }
    };
    relaxed_bump(&gate.admitted);
    if !counted {
        return Ok(Accepted::Conn(fd, peer, Admission::Free));
    }
    let source = peer.as_inet().map(|sa| sa.ip());
    let source = match source {
        Some(ip) if gate.limits.max_conns_per_source.is_some() => {
            if !gate.enter_source(ip) {
                gate.release();
                relaxed_bump(&gate.refused_source_limit);
                return Ok(Accepted::Conn(fd, peer, Admission::OverSourceLimit));
            }
            Some(ip)
        }
        _ => None,
    };
    let ticket = Ticket {
        gate: gate.clone(),
        source,
    };
    Ok(Accepted::Conn(
        fd,
        peer,
        Admission::Counted(Box::new(ticket)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_places_and_gives_them_back() {
        let gate = Gate::new(Limits::default().max_conns(2));
        assert!(gate.reserve());
        assert!(gate.reserve());
        assert!(!gate.reserve());
        gate.release();
        assert!(gate.reserve());
        assert_eq!(gate.stats().open, 2);
    }

    #[test]
    fn per_source_cap_is_per_address() {
        let gate = Gate::new(Limits::default().max_conns_per_source(1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(gate.enter_source(a));
        assert!(!gate.enter_source(a));
        assert!(gate.enter_source(b));
        gate.leave_source(a);
        assert!(gate.enter_source(a));
        gate.leave_source(a);
        gate.leave_source(b);
        assert!(gate.per_source.lock().unwrap().is_empty());
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let gate = Gate::new(Limits::default().accept_rate(AcceptRate::new(10, 3)));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(gate.take_token(t0).is_ok());
        }
        let next = gate.take_token(t0).unwrap_err();
        assert!(next > t0 && next <= t0 + Duration::from_millis(101));
        // 100 ms later one token has come back, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(gate.take_token(t1).is_ok());
        assert!(gate.take_token(t1).is_err());
        gate.return_token();
        assert!(gate.take_token(t1).is_ok());
    }

    #[test]
    fn limits_are_validated() {
        assert!(Limits::default().max_conns(0).validate().is_err());
        assert!(Limits::default()
            .max_conns_per_source(0)
            .validate()
            .is_err());
        assert!(Limits::default()
            .accept_rate(AcceptRate::new(0, 1))
            .validate()
            .is_err());
        assert!(Limits::default().max_conns(1).validate().is_ok());
    }
}
