//! The event-loop actor: owns a poller, a mailbox, the connections it was
//! given (and, in reuseport mode, its own listeners; always its own UDP
//! sockets), its own handler instance, and runs every callback for them.
//!
//! Nothing else ever touches a loop's connections: other threads reach them
//! only through messages (see [`crate::handle`]). A loop never blocks except
//! in its poller, and never on another actor's mailbox.
//!
//! # One turn
//!
//! ```text
//!   park: announce, re-check mailbox ──▶ epoll_wait (doorbell fd included)
//!     │
//!     ├─▶ I/O events: writable → flush queue; readable → read into the loop
//!     │               buffer → on_traffic; EOF/error → close; a listener →
//!     │               accept inline (reuseport); a UDP socket → one
//!     │               on_traffic per datagram
//!     ├─▶ edge-triggered leftovers: connections that used up their
//!     │               per-turn budget continue here
//!     ├─▶ messages (up to a budget): accepted sockets → on_open; writes,
//!     │               wakes, closes from handles; closures to run
//!     ├─▶ retry requests this loop made to full lanes
//!     └─▶ timers: ticker (loop 0, if enabled), paused listeners ──▶ park
//! ```
//!
//! # Level- and edge-triggered modes
//!
//! Level-triggered (the default): one read per readiness event, write
//! readiness armed only while a connection has bytes queued. Edge-triggered:
//! connections are registered once for both directions; each turn a
//! connection reads and writes until the socket would block or it has moved
//! [`Options::edge_triggered_chunk`] bytes, and one that hit its budget is
//! continued on the next turn, so a busy connection cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::slab::{Slab, SlotKey};
use crate::actors::Mailbox;
use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::admission::{accept_next, Accepted};
use crate::budget::LoopBudget;
use crate::conn::{
    send_datagram, Conn, ConnEntry, Connecting, Datagram, Flushed, Lingering, LoopRef, SideEffects,
    NO_LISTENER,
};
use crate::engine::{Engine, EngineShared};
use crate::error::{Error, Result};
use crate::handle::ConnHandle;
use crate::handle::ConnId;
use crate::handler::TimeoutKind;
use crate::handler::{Action, CloseReason, EventHandler, LoopContext};
use crate::listener::{Listener, LoopSockets};
use crate::message::{Completion, LoopMessage};
use crate::options::{BackPressure, KeepAlive, Options, Timeouts, WaterMarks};
use crate::stats::bump;
use crate::sys::poller::{Event, Events, Interest, Poller};
use crate::sys::{io as sysio, socket};
use crate::timer_wheel::TimerWheel;
use crate::tls::{TlsConnector, TlsOptions};

mod tls_io;

mod admit;

/// Tokens at or above this are not connections (a connection's token is its
/// slab key, far below with any slot count that fits in memory).
const RESERVED: u64 = u64::MAX - (1 << 17);
const DOORBELL: u64 = u64::MAX;
const UDP_BASE: u64 = RESERVED;
const LISTENER_BASE: u64 = RESERVED + (1 << 16);
/// Most messages handled per turn, so I/O is never starved by a flood.
const MESSAGE_BUDGET: usize = 1024;
/// Most connections accepted, or datagrams read, per readiness event.
const ACCEPT_BATCH: usize = 128;
const DATAGRAM_BATCH: usize = 64;
const MIN_EVENTS: usize = 128;
const MAX_EVENTS: usize = 4096;
/// The timer wheel: 1,024 slots of 10 ms (one turn is about 10 s; later
/// deadlines wait in their slot for their turn).
const WHEEL_SLOTS: usize = 1024;
const WHEEL_TICK_MS: u64 = 10;
/// How soon a loop retries requests waiting for room in another's lane.
const OVERFLOW_RETRY: Duration = Duration::from_millis(1);
/// How long a listener rests after accept ran out of descriptors or memory.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// How often a loop with connections paused for the buffer budget looks
/// whether the engine's total fell enough to read them again.
const BUDGET_RETRY: Duration = Duration::from_millis(20);
/// Bytes released by closed connections (or shrunk input buffers) after
/// which the loop hands free heap memory back to the system...
const TRIM_AFTER: usize = 8 << 20;
/// ...at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// What a connection callback returned (`None`: it panicked) and what it
/// asked of the loop beyond its own connection.
type Outcome<S> = (Option<Action>, Option<Box<SideEffects<S>>>);

/// An async write's completion and its outcome, held under back-pressure.
type HeldWrite = (Completion<usize>, Result<usize>);

/// Socket settings applied to every connection a loop adopts.
struct ConnSettings {
    write_cap: usize,
    nodelay: bool,
    keepalive: Option<KeepAlive>,
    recv_buffer: Option<usize>,
    send_buffer: Option<usize>,
    edge_triggered: bool,
    chunk: usize,
    timeouts: Timeouts,
    marks: WaterMarks,
    back_pressure: BackPressure,
    connect_timeout_ms: u64,
    max_inbound: usize,
    linger_ms: Option<u64>,
    tls: TlsOptions,
}

pub(crate) struct EventLoop<H: EventHandler> {
    index: usize,
    handler: H,
    ctx: LoopContext,
    poller: Poller,
    events: Events,
    ready: Vec<Event>,
    mailbox: Mailbox<LoopMessage>,
    inbox: Vec<LoopMessage>,
    conns: Slab<ConnEntry<H::State>>,
    read_buf: Vec<u8>,
    engine: Arc<EngineShared>,
    settings: ConnSettings,
    listeners: Vec<(Listener, u16)>,
    udp: Vec<(OwnedFd, u16)>,
    /// Edge-triggered connections that used up their budget this turn.
    continue_io: VecDeque<SlotKey>,
    next_tick: Option<Instant>,
    /// When paused listeners (out of descriptors) accept again.
    listeners_resume: Option<Instant>,
    warned_exhausted: bool,
    /// Requests to full lanes are waiting in this thread's overflow.
    overflow_waiting: bool,
    /// Connection timeouts: the wheel, the loop's clock and its origin.
    wheel: TimerWheel,
    epoch: Instant,
    now_ms: u64,
    /// Some connection may have a timeout (engine default or an override).
    timeouts_in_use: bool,
    due: Vec<(SlotKey, u64)>,
    /// Completions of async writes held back while their connection is over
    /// its high-water mark.
    deferred: HashMap<SlotKey, Vec<HeldWrite>>,
    /// Set once the engine stops: connections flush, then close, by then.
    drain_deadline: Option<Instant>,
    /// The engine handed its listeners to a new process and this loop has
    /// closed its own and told its handler.
    upgrade_drain_seen: bool,
    budget: LoopBudget,
    /// The connection whose input callback is being settled, if any.
    input_key: Option<SlotKey>,
    /// Buffer bytes released since the last trim (see `TRIM_AFTER`).
    released: usize,
    last_trim: Option<Instant>,
    /// Ciphertext read from a TLS connection's socket, on its way into the
    /// session (allocated on first use).
    tls_in: Vec<u8>,
}

/// Runs a handler callback; a panic is caught and logged instead of killing
/// the loop (and every other connection on it).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            log::error!("event handler panicked in {what}");
            None
        }
    }
}

/// What a [`Conn`] needs from its loop, borrowed field by field so that the
/// handler and the connection table can be borrowed mutably beside it.
fn loop_ref<'a>(
    index: usize,
    settings: &ConnSettings,
    engine: &'a Arc<EngineShared>,
    now_ms: u64,
) -> LoopRef<'a> {
    LoopRef {
        loop_index: index as u32,
        write_cap: settings.write_cap,
        engine,
        counters: &engine.loops[index].counters,
        now_ms,
    }
}

/// The earliest moment one of `entry`'s timeouts can expire, with its kind.
fn next_deadline<S>(entry: &ConnEntry<S>, defaults: &Timeouts) -> Option<(u64, TimeoutKind)> {
    if let Some(connecting) = &entry.connecting {
        return Some((connecting.deadline_ms, TimeoutKind::Connect));
    }
    if let Some(crate::deploy::ProxyState::Awaiting { deadline_ms, .. }) = entry.proxy.as_deref() {
        return Some((*deadline_ms, TimeoutKind::Read));
    }
    if let Some(lingering) = &entry.lingering {
        // A graceful close past its deadline (reported with its own reason).
        return Some((lingering.deadline_ms, TimeoutKind::Write));
    }
    if let Some(at) = entry.tls.as_ref().and_then(|t| t.handshake_deadline_ms()) {
        return Some((at, TimeoutKind::Handshake));
    }
    // By reference: the common case below must not copy the whole set.
    let t: &Timeouts = match entry.overrides.as_ref().and_then(|o| o.timeouts.as_ref()) {
        Some(t) => t,
        None => defaults,
    };
    // The common case with the default timeouts, answered in a few compares:
    // nothing waiting either way and both directions open.
    if entry.outbound.is_empty()
        && entry.inbound.is_empty()
        && !entry.read_closed
        && !entry.shutdown_done
        && t.idle.is_none()
        && t.read.is_none()
    {
        return None;
    }
    let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u64;
    let idle = t.idle.map(|d| {
        (
            entry.last_read_ms.max(entry.last_write_ms) + ms(d),
            TimeoutKind::Idle,
        )
    });
    let read = t
        .read
        .map(|d| (entry.last_read_ms + ms(d), TimeoutKind::Read));
    let write = t
        .write
        .filter(|_| !entry.outbound.is_empty())
        .map(|d| (entry.last_write_ms + ms(d), TimeoutKind::Write));
    let incomplete = t
        .incomplete
        .filter(|_| !entry.inbound.is_empty())
        .map(|d| (entry.input_since_ms + ms(d), TimeoutKind::Incomplete));
    let half_closed = t
        .half_closed
        .filter(|_| entry.read_closed || entry.shutdown_done)
        .map(|d| {
            (
                entry.last_read_ms.max(entry.last_write_ms) + ms(d),
                TimeoutKind::HalfClosed,
            )
        });
    [idle, read, write, incomplete, half_closed]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

fn handler_panicked() -> CloseReason {
    CloseReason::Error(io::Error::other("the event handler panicked"))
}

/// Accept errors that mean "out of resources": pause, don't spin.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

impl<H: EventHandler> EventLoop<H> {
    pub(crate) fn new(
        index: usize,
        handler: H,
        mailbox: Mailbox<LoopMessage>,
        sockets: LoopSockets,
        engine: Engine,
        options: &Options,
    ) -> Result<Self> {
        let poller = Poller::new().map_err(|e| Error::io("create a loop's poller", e))?;
        poller
            .add_doorbell(mailbox.doorbell(), DOORBELL)
            .map_err(|e| Error::io("register a loop's doorbell", e))?;
        for (i, (fd, _)) in sockets.udp.iter().enumerate() {
            poller
                .add(fd.as_fd(), UDP_BASE + i as u64, Interest::READABLE)
                .map_err(|e| Error::io("register a UDP socket", e))?;
        }
        for (i, (listener, _)) in sockets.listeners.iter().enumerate() {
            poller
                .add(
                    listener.fd.as_fd(),
                    LISTENER_BASE + i as u64,
                    Interest::READABLE,
                )
                .map_err(|e| Error::io("register a listener", e))?;
        }
        let shared = engine.shared.clone();
        let budget = LoopBudget::new(&shared.budget, options.loops);
        Ok(Self {
            index,
            handler,
            ctx: LoopContext { index, engine },
            poller,
            events: Events::with_capacity(MIN_EVENTS),
            ready: Vec::with_capacity(MIN_EVENTS),
            mailbox,
            inbox: Vec::new(),
            conns: Slab::new(),
            read_buf: vec![0; options.read_buffer_size],
            engine: shared,
            settings: ConnSettings {
                write_cap: options.write_buffer_cap,
                nodelay: options.tcp_nodelay,
                keepalive: options.tcp_keepalive,
                recv_buffer: options.recv_buffer_size,
                send_buffer: options.send_buffer_size,
                edge_triggered: options.edge_triggered,
                chunk: options.edge_triggered_chunk,
                timeouts: options.timeouts,
                marks: options.write_water_marks,
                back_pressure: options.back_pressure,
                max_inbound: options.max_inbound,
                linger_ms: options
                    .lingering_close
                    .map(|d| d.as_millis().min(u128::from(u32::MAX)) as u64),
                connect_timeout_ms: options
                    .connect_timeout
                    .as_millis()
                    .min(u128::from(u32::MAX)) as u64,
                tls: options.tls.clone(),
            },
            listeners: sockets.listeners,
            udp: sockets.udp,
            continue_io: VecDeque::new(),
            next_tick: (options.ticker && index == 0).then(Instant::now),
            listeners_resume: None,
            warned_exhausted: false,
            overflow_waiting: false,
            wheel: TimerWheel::new(WHEEL_SLOTS, WHEEL_TICK_MS, 0),
            epoch: Instant::now(),
            now_ms: 0,
            timeouts_in_use: options.timeouts.any(),
            due: Vec::new(),
            deferred: HashMap::new(),
            drain_deadline: None,
            upgrade_drain_seen: false,
            budget,
            input_key: None,
            released: 0,
            last_trim: None,
            tls_in: Vec::new(),
        })
    }

    /// The actor's thread body: serves until the engine stops, then closes
    /// every connection.
    pub(crate) fn run(mut self) -> Result<()> {
        if let Some(Action::Shutdown) = guarded("on_boot", || self.handler.on_boot(&mut self.ctx)) {
            self.engine.request_stop();
        }
        let outcome = self.serve();
        self.shutdown();
        outcome
    }

    fn serve(&mut self) -> Result<()> {
        loop {
            if !self.upgrade_drain_seen && self.engine.deploy.is_draining() {
                self.begin_upgrade_drain();
            }
            if self.engine.loops_stopping() {
                let deadline = match self.drain_deadline {
                    Some(d) => d,
                    None => self.begin_drain(),
                };
                if self.conns.is_empty() || Instant::now() >= deadline {
                    return Ok(());
                }
            }
            let timeout = if self.overflow_waiting {
                // Nothing wakes a loop when another's lane frees up: retry soon.
                Some(OVERFLOW_RETRY)
            } else if !self.budget.paused.is_empty() {
                // Nor when other loops' connections free buffer budget.
                Some(BUDGET_RETRY)
            } else if self.continue_io.is_empty() {
                // A trim put off (too soon after the last) must still come.
                let trim = self
                    .last_trim
                    .filter(|_| self.trim_due())
                    .map(|t| t + TRIM_EVERY);
                [self.next_tick, self.listeners_resume, trim]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let wheel = self
                .wheel
                .poll_timeout_ms(self.now_ms)
                .map(Duration::from_millis);
            let drain = self
                .drain_deadline
                .map(|t| t.saturating_duration_since(Instant::now()));
            let timeout = [timeout, wheel, drain].into_iter().flatten().min();
            let (poller, events) = (&self.poller, &mut self.events);
            if timeout == Some(Duration::ZERO) {
                // Not going to sleep: poll without announcing a park, which
                // would only make senders ring a doorbell nobody waits on.
                poller
                    .wait(events, timeout)
                    .map_err(|e| Error::io("wait for events", e))?;
            } else {
                self.mailbox
                    .park_with(|may_block| {
                        poller.wait(
                            events,
                            if may_block {
                                timeout
                            } else {
                                Some(Duration::ZERO)
                            },
                        )
                    })
                    .map_err(|e| Error::io("wait for events", e))?;
            }
            // The loop's clock: one read per turn (a vDSO call, far cheaper
            // than the epoll_wait before it). Connections are stamped with
            // it, so it must be fresh even before any timeout is set: a
            // per-connection timeout counts from the stamps it finds.
            self.now_ms = self.epoch.elapsed().as_millis() as u64;
            self.process_events();
            self.continue_edge_triggered();
            self.process_messages();
            self.overflow_waiting = self.engine.flush_loop_overflow();
            self.timers();
            self.expire_timeouts();
            self.enforce_budget();
        }
    }

    /// Stop reading from every connection; close the idle ones now and the
    /// others once their queues are flushed (or at the deadline).
    fn begin_drain(&mut self) -> Instant {
        // First apply what is already queued (writes sent before the stop
        // must reach their connections, not find them closed). Bounded: a
        // sender that keeps sending does not keep the drain from starting.
        for _ in 0..64 {
            if !self.mailbox.has_messages() {
                break;
            }
            self.process_messages();
        }
        let deadline = Instant::now() + self.engine.drain_timeout();
        self.drain_deadline = Some(deadline);
        for key in self.conns.keys() {
            self.settle(key, Action::None);
        }
        deadline
    }

    // ----- I/O -----

    fn process_events(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter());
        if ready.len() == self.events.capacity() && ready.len() < MAX_EVENTS {
            self.events = Events::with_capacity(ready.len() * 2);
        }
        for event in &ready {
            match event.token {
                DOORBELL => {
                    if self.mailbox.doorbell().needs_drain() {
                        let _ = self.mailbox.doorbell().drain();
                    }
                }
                t if t >= LISTENER_BASE => self.accept((t - LISTENER_BASE) as usize),
                t if t >= UDP_BASE => self.receive_datagrams((t - UDP_BASE) as usize),
                _ => self.on_io(*event),
            }
        }
        self.ready = ready;
    }

    fn on_io(&mut self, event: Event) {
        let key = SlotKey::from_token(event.token);
        let Some(entry) = self.conns.get_mut(key) else {
            return; // an event for a connection closed earlier this turn
        };
        if entry.connecting.is_some() {
            if event.writable || event.error || event.hangup {
                self.finish_connect(key);
            }
            return;
        }
        if Self::awaiting_header(entry) {
            self.read_proxy_header(key);
            return;
        }
        if event.error {
            let reason = match socket::take_error(entry.fd.as_fd()) {
                Ok(Some(e)) => CloseReason::from_io(e),
                Ok(None) => CloseReason::Error(io::Error::other("socket error")),
                Err(e) => CloseReason::from_io(e),
            };
            self.close_conn(key, reason);
            return;
        }
        if event.writable && !self.flush(key) {
            return;
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if (event.readable || event.read_closed) && !entry.read_closed {
            self.read(key);
            return;
        }
        if event.hangup {
            // Both directions are gone: nothing queued can be delivered.
            let reason = if entry.outbound.is_empty() {
                CloseReason::Eof
            } else {
                CloseReason::Reset
            };
            self.close_conn(key, reason);
            return;
        }
        self.settle(key, Action::None);
    }

    /// Writes the queue (within the budget in edge-triggered mode). Returns
    /// `false` if the connection was closed.
    fn flush(&mut self, key: SlotKey) -> bool {
        let budget = if self.settings.edge_triggered {
            self.settings.chunk
        } else {
            usize::MAX
        };
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return false;
        };
        if entry.outbound.is_empty() {
            return true;
        }
        match entry.flush_limited(budget, &lp) {
            Ok(Flushed::BudgetSpent) => self.continue_io.push_back(key),
            Ok(_) => {}
            Err(e) => {
                self.close_conn(key, CloseReason::from_io(e));
                return false;
            }
        }
        if entry.paused {
            // Back under the low-water mark: resume before the caller reads
            // (an edge-triggered connection gets no new event for it).
            self.settle(key, Action::None);
            return self.conns.get(key).is_some();
        }
        true
    }

    /// Reads into the loop buffer and hands the bytes to the handler: once
    /// (level-triggered), or until the socket is drained or the per-turn
    /// budget is spent (edge-triggered).
    fn read(&mut self, key: SlotKey) {
        let mut moved = 0;
        loop {
            let Some(entry) = self.conns.get(key) else {
                return;
            };
            match &entry.lingering {
                Some(l) if l.draining => {
                    self.drain_lingering(key);
                    return;
                }
                Some(_) => return,
                None => {}
            }
            let held = entry.budget_held;
            if entry.read_closed || self.drain_deadline.is_some() || self.reading_blocked(key) {
                return;
            }
            if LoopBudget::should_pause(&self.engine.budget, held) && self.pause_for_budget(key) {
                // Near the budget: no more reads into a connection holding
                // this much (checked before the read, not after).
                self.settle(key, Action::None);
                return;
            }
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            if entry.tls.is_some() {
                // As below, with the session between the socket and on_traffic.
                let Some(n) = self.read_tls(key) else {
                    return;
                };
                moved += n;
                if !self.settings.edge_triggered || n < self.tls_in.len() {
                    return;
                }
                if moved >= self.settings.chunk {
                    self.continue_io.push_back(key);
                    return;
                }
                continue;
            }
            match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
                Ok(0) if entry.is_datagram => {
                    // An empty datagram on a connected UDP socket.
                    self.traffic(key, 0);
                    return;
                }
                Ok(0) => {
                    // The peer closed its side: ask the handler whether to
                    // close (once flushed) or to keep writing. The end of
                    // stream counts as input (the half-closed clock starts).
                    entry.read_closed = true;
                    entry.last_read_ms = self.now_ms;
                    self.read_closed(key);
                    return;
                }
                Ok(n) => {
                    entry.last_read_ms = self.now_ms;
                    bump(&self.engine.loops[self.index].counters.bytes_in, n as u64);
                    self.traffic(key, n);
                    moved += n;
                    // A short read drained the socket; new bytes make a new edge.
                    if !self.settings.edge_triggered || n < self.read_buf.len() {
                        return;
                    }
                    if moved >= self.settings.chunk {
                        self.continue_io.push_back(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close_conn(key, CloseReason::from_io(e));
                    return;
                }
            }
        }
    }

    /// Edge-triggered connections that spent their budget last turn carry on.
    fn continue_edge_triggered(&mut self) {
        for _ in 0..self.continue_io.len() {
            let Some(key) = self.continue_io.pop_front() else {
                break;
            };
            if !self.flush(key) {
                continue;
            }
            self.read(key);
            if let Some(entry) = self.conns.get(key) {
                if entry.read_closed && entry.outbound.is_empty() {
                    self.settle(key, Action::None);
                }
            }
        }
    }

    /// Runs `on_traffic` over leftover + `fresh` bytes of the loop buffer.
    fn traffic(&mut self, key: SlotKey, fresh: usize) {
        let (queued, was_paused) = self
            .conns
            .get(key)
            .map_or((0, false), |e| (e.outbound.len(), e.user_paused));
        if let Some((action, side)) =
            self.run_on_input(key, fresh, "on_traffic", |h, conn| h.on_traffic(conn))
        {
            if let Some(entry) = self.conns.get(key) {
                if was_paused && !entry.user_paused && self.settings.edge_triggered {
                    // Resumed: no new edge will come for bytes already waiting.
                    self.continue_io.push_back(key);
                }
                // Output the callback queued answers this input: past the
                // high-water mark it stops the reading (see `settle`).
                if entry.outbound.len() > queued {
                    self.input_key = Some(key);
                }
            }
            self.after_callback(key, action, side);
            self.input_key = None;
        }
    }

    /// Runs `on_read_closed` (over what `on_traffic` left unread): `Close`
    /// (the default) closes once flushed, `None` keeps the connection
    /// half-open.
    fn read_closed(&mut self, key: SlotKey) {
        let Some((action, side)) =
            self.run_on_input(key, 0, "on_read_closed", |h, conn| h.on_read_closed(conn))
        else {
            return;
        };
        let action = match action {
            Some(Action::None) => {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.half_open = true;
                }
                Some(Action::None)
            }
            // Close once flushed: settle does that for a read-closed peer.
            Some(Action::Close) => Some(Action::None),
            other => other,
        };
        self.after_callback(key, action, side);
    }

    /// Runs a callback whose input is the connection's leftover plus `fresh`
    /// bytes of the loop buffer (zero-copy when there is no leftover), and
    /// keeps what it leaves unread (never for a datagram: its unread bytes go
    /// with it). Returns `None` if the connection is gone.
    fn run_on_input(
        &mut self,
        key: SlotKey,
        fresh: usize,
        what: &str,
        call: impl FnOnce(&mut H, &mut Conn<'_, H::State>) -> Action,
    ) -> Option<Outcome<H::State>> {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let entry = self.conns.get_mut(key)?;
        let keeps_unread = !entry.is_datagram;
        let leftover = std::mem::take(&mut entry.inbound);
        let had_leftover = !leftover.is_empty();
        let handler = &mut self.handler;
        let fresh = &self.read_buf[..fresh];
        let (action, side, rest, consumed) = if leftover.is_empty() {
            let mut conn = Conn::new(fresh, &mut self.conns, key, &lp);
            let action = guarded(what, || call(handler, &mut conn));
            let consumed = conn.consumed();
            let side = conn.take_side_effects();
            let rest = (keeps_unread && consumed < fresh.len()).then(|| fresh[consumed..].to_vec());
            (action, side, rest, consumed)
        } else {
            let mut buf = leftover;
            buf.extend_from_slice(fresh);
            let mut conn = Conn::new(&buf, &mut self.conns, key, &lp);
            let action = guarded(what, || call(handler, &mut conn));
            let consumed = conn.consumed();
            let side = conn.take_side_effects();
            drop(conn);
            let rest = (keeps_unread && consumed < buf.len()).then(|| {
                buf.drain(..consumed);
                buf
            });
            (action, side, rest, consumed)
        };
        if let (Some(rest), Some(entry)) = (rest, self.conns.get_mut(key)) {
            // Unfinished input starts (or restarts, after progress) the
            // incomplete-input clock; a callback that consumes nothing of
            // what was already waiting leaves it running.
            if consumed > 0 || !had_leftover {
                entry.input_since_ms = self.now_ms;
            }
            if rest.len() > self.settings.max_inbound {
                entry.close_with(CloseReason::InboundLimit);
            }
            entry.inbound = rest;
        }
        Some((action, side))
    }

    /// After a connection's callback: its action (a panic closes it), then
    /// what it did to the loop's other connections and the dials it asked for.
    fn after_callback(
        &mut self,
        key: SlotKey,
        action: Option<Action>,
        side: Option<Box<SideEffects<H::State>>>,
    ) {
        match action {
            Some(action) => self.settle(key, action),
            None => self.close_conn(key, handler_panicked()),
        }
        self.apply_side_effects(key, side);
    }

    /// Syncs the other connections a callback of `key` wrote to or closed,
    /// and starts the dials it asked for.
    fn apply_side_effects(&mut self, key: SlotKey, side: Option<Box<SideEffects<H::State>>>) {
        let Some(side) = side else {
            return;
        };
        let SideEffects { touched, dials } = *side;
        for other in touched {
            if other != key {
                self.settle(other, Action::None);
            }
        }
        for (addr, state, tls) in dials {
            self.start_dial(addr, Some(state), None, tls);
        }
    }

    /// `true` while reading `entry` must wait: its own queue, or the queue of
    /// the connection it feeds, is over the high-water mark.
    fn reading_blocked(&self, key: SlotKey) -> bool {
        let Some(entry) = self.conns.get(key) else {
            return true;
        };
        let links = entry.overrides.as_ref();
        // A connection fed by another (a relay's side) fills up with the
        // *other* side's bytes: not reading it would not drain it, and would
        // stall a relay whose peer is blocked writing to it. Its fullness
        // stops the feeder instead (the `target.paused` check below).
        let own = (entry.replies_paused && links.and_then(|o| o.fed_by).is_none())
            || entry.budget_paused
            || entry.user_paused;
        own || links
            .and_then(|o| o.feeds)
            .and_then(|target| self.conns.get(target))
            .is_some_and(|target| target.paused)
    }

    /// After a callback or I/O: apply the action, close if due, otherwise make
    /// the poller interest match what the connection needs.
    fn settle(&mut self, key: SlotKey, action: Action) {
        match action {
            Action::Close => {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.close_with(CloseReason::Local);
                }
            }
            Action::Shutdown => self.engine.request_stop(),
            _ => {}
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(reason) = entry.close_reason.take() {
            let graceful = matches!(
                reason,
                CloseReason::Local | CloseReason::Requested | CloseReason::Protocol(_)
            );
            if graceful && !entry.outbound.is_empty() && entry.lingering.is_none() {
                // Write what is queued first (reading stops), then close; at
                // the drain deadline, close anyway.
                self.timeouts_in_use = true;
                let deadline_ms = self.now_ms + self.engine.drain_timeout().as_millis() as u64;
                entry.lingering = Some(Box::new(Lingering {
                    reason,
                    deadline_ms,
                    draining: false,
                }));
                entry.timer_tick = self.wheel.schedule(key, deadline_ms);
            } else if graceful {
                self.finish_graceful_close(key, reason);
                return;
            } else {
                self.close_conn(key, reason);
                return;
            }
        }
        if entry.lingering.as_ref().is_some_and(|l| !l.draining) && entry.outbound.is_empty() {
            let reason = entry.take_lingering_reason();
            self.finish_graceful_close(key, reason);
            return;
        }
        if entry.shutdown_wanted && !entry.shutdown_done && entry.tls.is_some() {
            // TLS half-close: close_notify goes out before the FIN.
            let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
            entry.tls_close_notify(&lp);
        }
        if entry.shutdown_wanted && !entry.shutdown_done && entry.outbound.is_empty() {
            entry.shutdown_done = true;
            if let Err(e) = socket::shutdown_write(entry.fd.as_fd()) {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let both_done = entry.read_closed && entry.shutdown_done;
        if entry.read_closed && entry.outbound.is_empty() && (!entry.half_open || both_done) {
            self.close_conn(key, CloseReason::Eof);
            return;
        }
        if self.drain_deadline.is_some() && entry.outbound.is_empty() {
            // Input never read (a paused connection's next requests) makes a
            // close send a reset, and a reset throws away the replies the
            // peer has not read yet: discard that input first, so the peer
            // reads every reply and then the end of stream.
            for _ in 0..16 {
                match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
            self.close_conn(key, CloseReason::Shutdown);
            return;
        }
        self.account(key);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        // Back-pressure: above the high-water mark hold async-write
        // completions, and pause reading if the connection's own callback
        // queued the output (its replies); resume at or below the low-water
        // mark. Async writes alone never stop the reading: a peer echoing
        // them back would otherwise wait for us while we wait for it.
        let marks = entry
            .overrides
            .as_ref()
            .and_then(|o| o.marks)
            .unwrap_or(self.settings.marks);
        let queued = entry.outbound.len();
        if !entry.paused && queued > marks.high {
            bump(
                &self.engine.loops[self.index].counters.back_pressure_events,
                1,
            );
            if self.settings.back_pressure == BackPressure::Close {
                self.close_conn(key, CloseReason::BackPressure);
                return;
            }
            entry.paused = true;
            entry.replies_paused = self.input_key == Some(key);
            if let Some(feeder) = entry.overrides.as_ref().and_then(|o| o.fed_by) {
                // Stop reading the connection whose bytes fill this one.
                self.settle(feeder, Action::None);
            }
        } else if entry.paused && !entry.replies_paused && self.input_key == Some(key) {
            // Replies to input, queued behind async writes: stop reading too.
            entry.replies_paused = true;
        } else if entry.paused && queued <= marks.low {
            entry.paused = false;
            entry.replies_paused = false;
            if let Some(feeder) = entry.overrides.as_ref().and_then(|o| o.fed_by) {
                if self.settings.edge_triggered {
                    self.continue_io.push_back(feeder);
                }
                self.settle(feeder, Action::None);
            }
            if self.settings.edge_triggered {
                // No new edge will come for bytes already waiting.
                self.continue_io.push_back(key);
            }
            if let Some(held) = self.deferred.remove(&key) {
                for (done, result) in held {
                    done.complete(result);
                }
            }
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if self.timeouts_in_use
            || entry
                .overrides
                .as_ref()
                .is_some_and(|o| o.timeouts.is_some())
        {
            self.timeouts_in_use = true;
            if let Some((at, _)) = next_deadline(entry, &self.settings.timeouts) {
                if entry.timer_tick == 0 || self.wheel.tick_of(at) < entry.timer_tick {
                    entry.timer_tick = self.wheel.schedule(key, at);
                }
            }
        }
        if self.settings.edge_triggered {
            return; // registered once for both directions
        }
        let want_write = !entry.outbound.is_empty();
        let draining = entry.lingering.as_ref().is_some_and(|l| l.draining);
        let want_read = !entry.read_closed
            && (draining
                || (entry.lingering.is_none()
                    && self.drain_deadline.is_none()
                    && !self.reading_blocked(key)));
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if want_write != entry.write_armed || want_read != entry.read_armed {
            let interest = Interest {
                readable: want_read,
                writable: want_write,
                edge: false,
            };
            if let Err(e) = self.poller.modify(entry.fd.as_fd(), key.token(), interest) {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
            entry.write_armed = want_write;
            entry.read_armed = want_read;
        }
    }

    /// Runs `on_close` once, flushes what it can, releases the socket.
    fn close_conn(&mut self, key: SlotKey, reason: CloseReason) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.connecting.is_some() {
            // Never opened: the dial fails instead (no close callback).
            let error = match reason {
                CloseReason::Shutdown => Error::EngineStopped,
                other => Error::io("connect", io::Error::other(other.to_string())),
            };
            self.fail_dial(key, error);
            return;
        }
        if Self::awaiting_header(entry) {
            // Never opened: no close callback.
            self.refuse_unopened(key, reason);
            return;
        }
        if entry.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            // Never opened either: no on_close, the handshake failed.
            self.fail_handshake(key, reason);
            return;
        }
        let leftover = std::mem::take(&mut entry.inbound);
        let handler = &mut self.handler;
        let (action, side) = {
            let mut conn = Conn::new(&leftover, &mut self.conns, key, &lp);
            let action = guarded("on_close", || handler.on_close(&mut conn, &reason));
            (action, conn.take_side_effects())
        };
        if let Some(Action::Shutdown) = action {
            self.engine.request_stop();
        }
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        if !matches!(
            reason,
            CloseReason::Reset | CloseReason::Error(_) | CloseReason::Tls(_)
        ) {
            entry.tls_close_notify(&lp);
        }
        if !entry.outbound.is_empty()
            && !matches!(reason, CloseReason::Reset | CloseReason::Error(_))
        {
            // Best effort: whatever the socket takes right now.
            let _ = entry.flush_queue(&lp);
        }
        if let Some(held) = self.deferred.remove(&key) {
            // Held for back-pressure: written if the queue got out whole,
            // else the connection closed before they drained.
            let delivered = entry.outbound.is_empty();
            for (done, result) in held {
                done.complete(if delivered {
                    result
                } else {
                    Err(Error::ConnectionClosed)
                });
            }
        }
        let _ = self.poller.delete(entry.fd.as_fd());
        let fed_by = entry.overrides.as_ref().and_then(|o| o.fed_by);
        let held = entry.budget_held;
        drop(entry); // closes the fd, after on_close, never before
        self.count_buffered(held, 0);
        self.engine.loops[self.index].remove_connection();
        if let Some(feeder) = fed_by {
            // Its relay target is gone: it may be read again.
            self.settle(feeder, Action::None);
        }
        self.apply_side_effects(key, side);
    }

    // ----- lingering close (Options::lingering_close) -----

    /// Closes `key` after a graceful close flushed its queue: at once, or,
    /// with lingering enabled and the peer possibly still sending, after
    /// shutting the write side and draining the peer's input.
    fn finish_graceful_close(&mut self, key: SlotKey, reason: CloseReason) {
        let Some(linger_ms) = self.settings.linger_ms else {
            self.close_conn(key, reason);
            return;
        };
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let lingers = !entry.read_closed
            && !entry.is_datagram
            && self.drain_deadline.is_none()
            && socket::shutdown_write(entry.fd.as_fd()).is_ok();
        if !lingers {
            self.close_conn(key, reason);
            return;
        }
        entry.shutdown_done = true;
        let deadline_ms = self.now_ms + linger_ms;
        entry.lingering = Some(Box::new(Lingering {
            reason,
            deadline_ms,
            draining: true,
        }));
        self.timeouts_in_use = true;
        entry.timer_tick = self.wheel.schedule(key, deadline_ms);
        if self.settings.edge_triggered {
            // Input already waiting brings no new edge.
            self.continue_io.push_back(key);
        }
        self.settle(key, Action::None);
    }

    /// Reads and discards a lingering connection's input; closes it at the
    /// peer's end of stream (or an error).
    fn drain_lingering(&mut self, key: SlotKey) {
        for _ in 0..16 {
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => {
                    let reason = entry.take_lingering_reason();
                    self.close_conn(key, reason);
                    return;
                }
            }
        }
        if self.settings.edge_triggered {
            self.continue_io.push_back(key);
        }
    }

    // ----- the buffer budget (see crate::budget) -----

    /// Counts what connection `key` holds now against the budget, and
    /// pauses its reading if the engine is near the budget and it holds
    /// the most.
    fn account(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let held = entry.inbound.capacity() + entry.outbound.len();
        if held == entry.budget_held && held < crate::budget::PAUSE_MIN {
            return; // nothing changed and too small to pause: the common case
        }
        let old = std::mem::replace(&mut entry.budget_held, held);
        if old >= held + (1 << 20) {
            // A large input buffer went (output blocks are reused at once).
            self.released += old - held;
        }
        let pause = self.budget.update(&self.engine.budget, old, held);
        if old != held {
            self.publish_buffered();
        }
        if pause {
            self.pause_for_budget(key);
        }
    }

    /// Stops reading `key` until the engine's total falls back (see
    /// `enforce_budget`). Returns whether it was newly paused.
    fn pause_for_budget(&mut self, key: SlotKey) -> bool {
        let Some(entry) = self.conns.get_mut(key) else {
            return false;
        };
        if entry.budget_paused {
            return false;
        }
        entry.budget_paused = true;
        self.budget.paused.push(key);
        bump(&self.engine.loops[self.index].counters.budget_pauses, 1);
        true
    }

    /// A closed connection's bytes leave the budget.
    fn count_buffered(&mut self, old: usize, new: usize) {
        self.released += old.saturating_sub(new);
        let _ = self.budget.update(&self.engine.budget, old, new);
        self.publish_buffered();
    }

    fn publish_buffered(&self) {
        // Relaxed: a gauge with one writer (this loop), read as a snapshot.
        self.engine.loops[self.index].counters.buffered.store(
            self.budget.held() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether freed buffers should go back to the system: after a large
    /// release, or once the loop has no connections left (the end of a
    /// burst; without it up to `TRIM_AFTER` per loop would stay with the
    /// allocator for good).
    fn trim_due(&self) -> bool {
        self.released >= TRIM_AFTER || (self.released > 0 && self.conns.is_empty())
    }

    /// Once a turn: closes this loop's largest connections while the engine
    /// is over its budget and this loop over its share; reads paused
    /// connections again once the total fell back.
    fn enforce_budget(&mut self) {
        if self.trim_due() && !matches!(self.last_trim, Some(t) if t.elapsed() < TRIM_EVERY) {
            // After a burst: give the freed buffers back to the system, not
            // only to the allocator (RSS would otherwise stay at its peak).
            self.released = 0;
            self.last_trim = Some(Instant::now());
            crate::sys::memory::release_free_memory();
        }
        if self.budget.over {
            self.budget.over = false;
            while self.budget.must_shed(&self.engine.budget) {
                let largest = self
                    .conns
                    .keys()
                    .into_iter()
                    .filter_map(|k| self.conns.get(k).map(|e| (k, e.budget_held)))
                    .filter(|&(_, held)| held > 0)
                    .max_by_key(|&(_, held)| held);
                let Some((key, held)) = largest else {
                    break;
                };
                log::warn!(
                    "loop {}: buffered bytes over the engine's budget ({} in all); closing a connection holding {held}",
                    self.index,
                    self.engine.budget.used()
                );
                bump(&self.engine.loops[self.index].counters.budget_closes, 1);
                self.close_conn(key, CloseReason::BufferBudget);
            }
        }
        if !self.budget.paused.is_empty() && self.budget.may_resume(&self.engine.budget) {
            for key in std::mem::take(&mut self.budget.paused) {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.budget_paused = false;
                    if self.settings.edge_triggered {
                        self.continue_io.push_back(key);
                    }
                    self.settle(key, Action::None);
                }
            }
        }
    }

    // ----- dialling and enrolling -----

    /// Starts a non-blocking connect onto this loop. `state` (a dial from a
    /// callback) is the new connection's initial state; `done` (a dial through
    /// the engine) is told the outcome.
    fn start_dial(
        &mut self,
        addr: ListenAddr,
        state: Option<H::State>,
        done: Option<Completion<ConnHandle>>,
        tls: Option<Box<TlsConnector>>,
    ) {
        if self.engine.loops_stopping() {
            self.dial_failed(state, done, Error::EngineStopped);
            return;
        }
        let session = match self.dial_session(&addr, tls) {
            Ok(session) => session,
            Err(e) => {
                self.dial_failed(state, done, e);
                return;
            }
        };
        let attempt = match (addr.transport(), addr.sock_addr()) {
            (Transport::Tcp, SockAddr::Inet(sa)) => {
                socket::tcp_connect(*sa).map(|(fd, now)| (fd, now, true, false))
            }
            (Transport::Unix, SockAddr::Unix(Some(path))) => {
                socket::unix_connect(path).map(|(fd, now)| (fd, now, false, false))
            }
            (Transport::Udp, SockAddr::Inet(sa)) => {
                socket::udp_connect(*sa).map(|fd| (fd, true, false, true))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address does not match its scheme",
            )),
        };
        let (fd, connected, is_tcp, is_datagram) = match attempt {
            Ok(attempt) => attempt,
            Err(e) => {
                self.dial_failed(state, done, Error::io("connect", e));
                return;
            }
        };
        let mut entry = ConnEntry::new(fd, addr.sock_addr().clone(), NO_LISTENER, is_tcp);
        entry.is_datagram = is_datagram;
        entry.state = state;
        entry.tls = session;
        if connected {
            self.engine.loops[self.index].add_connection();
            self.adopt(entry, done);
            return;
        }
        // In progress: wait for writability, with the connect timeout on the wheel.
        self.timeouts_in_use = true;
        let deadline_ms = self.now_ms + self.settings.connect_timeout_ms;
        entry.connecting = Some(Box::new(Connecting { deadline_ms, done }));
        let Some(key) = self.conns.insert(entry) else {
            log::error!("loop {} cannot hold more connections", self.index);
            return;
        };
        let entry = self.conns.get_mut(key).expect("just inserted");
        if let Err(e) = self
            .poller
            .add(entry.fd.as_fd(), key.token(), Interest::WRITABLE)
        {
            self.fail_dial(key, Error::io("register a connecting socket", e));
            return;
        }
        entry.write_armed = true;
        entry.timer_tick = self.wheel.schedule(key, deadline_ms);
    }

    /// A connect in progress finished: open the connection, or fail the dial.
    fn finish_connect(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        match socket::take_error(entry.fd.as_fd()) {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.fail_dial(key, Error::io("connect", e));
                return;
            }
        }
        let done = entry.connecting.take().and_then(|c| c.done);
        let Some(entry) = self.conns.remove(key) else {
            return;
        };
        let _ = self.poller.delete(entry.fd.as_fd());
        self.engine.loops[self.index].add_connection();
        self.adopt(entry, done);
    }

    /// Drops a connection that never opened and reports why.
    fn fail_dial(&mut self, key: SlotKey, error: Error) {
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        let _ = self.poller.delete(entry.fd.as_fd());
        let done = entry.connecting.take().and_then(|c| c.done);
        let state = entry.state.take();
        drop(entry);
        self.dial_failed(state, done, error);
    }

    fn dial_failed(
        &mut self,
        state: Option<H::State>,
        done: Option<Completion<ConnHandle>>,
        error: Error,
    ) {
        log::debug!("loop {}: dial failed: {error}", self.index);
        // A dial through the engine reports to its caller only.
        if let (Some(state), None) = (state, &done) {
            let (ctx, handler) = (&mut self.ctx, &mut self.handler);
            if let Some(Action::Shutdown) = guarded("on_dial_error", || {
                handler.on_dial_error(ctx, state, &error)
            }) {
                self.engine.request_stop();
            }
        }
        if let Some(done) = done {
            done.complete(Err(error));
        }
    }

    /// Adopts an already-connected stream socket handed over by the engine.
    fn enroll(&mut self, fd: OwnedFd, state: Option<H::State>, done: Completion<ConnHandle>) {
        if self.engine.loops_stopping() {
            done.complete(Err(Error::EngineStopped));
            return;
        }
        let prepared = socket::prepare_enrolled(fd.as_fd()).and_then(|is_stream| {
            if !is_stream {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only stream sockets can be enrolled",
                ));
            }
            let peer = socket::peer_addr(fd.as_fd())?;
            Ok(peer)
        });
        match prepared {
            Ok(peer) => {
                let is_tcp = matches!(peer, SockAddr::Inet(_));
                self.engine.loops[self.index].add_connection();
                let mut entry = ConnEntry::new(fd, peer, NO_LISTENER, is_tcp);
                entry.state = state;
                self.adopt(entry, Some(done));
            }
            Err(e) => done.complete(Err(Error::io("enroll a socket", e))),
        }
    }

    // ----- listeners (reuseport mode) and datagrams -----

    /// Accepts inline on this loop's own listener `i`.
    fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some((listener, listen_index)) = self.listeners.get(i) else {
                return;
            };
            let is_tcp = listener.is_tcp();
            let listen_index = *listen_index;
            match accept_next(listener.fd.as_fd(), &self.engine.deploy.gate) {
                Ok(Accepted::Conn(fd, peer, admission)) => {
                    self.warned_exhausted = false;
                    self.engine.loops[self.index].add_connection();
                    self.admit(fd, peer, listen_index, is_tcp, admission);
                }
                Ok(Accepted::Empty) => return,
                Ok(Accepted::Wait(until)) => {
                    // A limit is reached: the backlog holds the rest.
                    self.set_listening(false);
                    self.listeners_resume = Some(until);
                    return;
                }
                Err(e) => {
                    if is_exhaustion(&e) {
                        self.pause_listeners(&e);
                    } else {
                        log::warn!("accept on {} failed: {e}", listener.addr);
                    }
                    return;
                }
            }
        }
    }

    fn pause_listeners(&mut self, e: &io::Error) {
        if !self.warned_exhausted {
            log::warn!(
                "loop {}: accept failed ({e}); pausing accepts for {EXHAUSTED_PAUSE:?}, open connections are unaffected",
                self.index
            );
            self.warned_exhausted = true;
        }
        self.set_listening(false);
        self.listeners_resume = Some(Instant::now() + EXHAUSTED_PAUSE);
    }

    fn set_listening(&self, on: bool) {
        let interest = Interest {
            readable: on,
            writable: false,
            edge: false,
        };
        for (i, (listener, _)) in self.listeners.iter().enumerate() {
            if let Err(e) =
                self.poller
                    .modify(listener.fd.as_fd(), LISTENER_BASE + i as u64, interest)
            {
                log::error!("could not pause or resume a listener: {e}");
            }
        }
    }

    /// Reads datagrams from UDP socket `i`: one `on_traffic` each.
    fn receive_datagrams(&mut self, i: usize) {
        for _ in 0..DATAGRAM_BATCH {
            let Some((fd, listener)) = self.udp.get(i) else {
                return;
            };
            let (n, peer) = match sysio::recv_from(fd.as_fd(), &mut self.read_buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; they
                    // concern one peer, not the socket.
                    log::debug!("UDP receive on loop {}: {e}", self.index);
                    continue;
                }
            };
            bump(&self.engine.loops[self.index].counters.bytes_in, n as u64);
            let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
            let datagram = Datagram {
                fd: fd.as_fd(),
                peer,
                socket: i as u32,
                listener: *listener,
                state: None,
            };
            let handler = &mut self.handler;
            let mut conn = Conn::datagram(&self.read_buf[..n], datagram, &lp);
            if let Some(Action::Shutdown) = guarded("on_traffic", || handler.on_traffic(&mut conn))
            {
                self.engine.request_stop();
            }
        }
    }

    // ----- messages -----

    fn process_messages(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let n = self.mailbox.drain(MESSAGE_BUDGET, |m| inbox.push(m));
        if n > 0 {
            bump(&self.engine.loops[self.index].counters.messages, n as u64);
        }
        for message in inbox.drain(..) {
            self.handle_message(message);
        }
        self.inbox = inbox;
    }

    fn conn_key(&self, id: ConnId) -> Option<SlotKey> {
        let key = id.key();
        (id.loop_index as usize == self.index && self.conns.get(key).is_some()).then_some(key)
    }

    fn handle_message(&mut self, message: LoopMessage) {
        match message {
            LoopMessage::Accepted {
                fd,
                peer,
                listener,
                is_tcp,
                admission,
            } => {
                if self.engine.loops_stopping() {
                    self.engine.loops[self.index].remove_connection();
                    return;
                }
                self.admit(fd, peer, listener, is_tcp, admission);
            }
            LoopMessage::Write { id, data, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    let result = entry.write_owned(data, &lp);
                    self.complete_write(key, done, result);
                }
            },
            LoopMessage::Writev { id, bufs, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
                    let result = entry.writev_bytes(&refs, &lp);
                    self.complete_write(key, done, result);
                }
            },
            LoopMessage::SendTo {
                socket,
                peer,
                data,
                done,
            } => match self.udp.get(socket as usize) {
                Some((fd, _)) => done.complete(send_datagram(fd.as_fd(), &data, &peer)),
                None => done.complete(Err(Error::ConnectionClosed)),
            },
            LoopMessage::Dial {
                addr,
                done,
                tls,
                state,
            } => match crate::message::initial_state(state) {
                Ok(state) => self.start_dial(*addr, state, Some(done), tls),
                Err(e) => done.complete(Err(e)),
            },
            LoopMessage::Enroll { fd, done, state } => match crate::message::initial_state(state) {
                Ok(state) => self.enroll(fd, state, done),
                Err(e) => done.complete(Err(e)),
            },
            LoopMessage::Wake { id } => {
                if let Some(key) = self.conn_key(id) {
                    self.traffic(key, 0);
                }
            }
            LoopMessage::Close { id, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    self.close_conn(key, CloseReason::Requested);
                    done.complete(Ok(()));
                }
            },
            LoopMessage::Reading { id, on } => {
                if let Some(key) = self.conn_key(id) {
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    entry.user_paused = !on;
                    let waiting = on && !entry.inbound.is_empty();
                    if on && self.settings.edge_triggered {
                        // No new edge will come for bytes already waiting.
                        self.continue_io.push_back(key);
                    }
                    if waiting {
                        self.traffic(key, 0);
                    } else {
                        self.settle(key, Action::None);
                    }
                }
            }
            LoopMessage::Execute(task) => {
                let ctx = &mut self.ctx;
                guarded("an executed task", || task(ctx));
            }
            LoopMessage::Stop => {}
        }
    }

    /// Answers an async write once applied, or holds the answer while its
    /// connection is over the high-water mark: the writer feels the
    /// back-pressure.
    fn complete_write(&mut self, key: SlotKey, done: Completion<usize>, result: Result<usize>) {
        self.settle(key, Action::None);
        match self.conns.get(key) {
            Some(entry) if entry.paused && result.is_ok() => {
                self.deferred.entry(key).or_default().push((done, result));
            }
            Some(_) => done.complete(result),
            // Closed while applying it (a write error, or back-pressure).
            None => done.complete(result.and(Err(Error::ConnectionClosed))),
        }
    }

    /// Takes ownership of a connected socket: options, registration,
    /// on_open; `done` (a dial or enroll through the engine) gets its handle.
    fn adopt(&mut self, mut entry: ConnEntry<H::State>, done: Option<Completion<ConnHandle>>) {
        self.apply_socket_options(&entry);
        if let Err(e) = self.accept_tls(&mut entry) {
            log::warn!("no TLS session for a connection from {}: {e}", entry.peer);
            self.engine.loops[self.index].remove_connection();
            if let Some(done) = done {
                done.complete(Err(e));
            }
            return;
        }
        let Some(key) = self.conns.insert(entry) else {
            log::error!("loop {} cannot hold more connections", self.index);
            self.engine.loops[self.index].remove_connection();
            if let Some(done) = done {
                done.complete(Err(Error::ConnectionClosed));
            }
            return;
        };
        let entry = self.conns.get_mut(key).expect("just inserted");
        let interest = if self.settings.edge_triggered {
            Interest::BOTH.edge_triggered()
        } else {
            Interest::READABLE
        };
        if let Err(e) = self.poller.add(entry.fd.as_fd(), key.token(), interest) {
            log::warn!("could not register a connection from {}: {e}", entry.peer);
            self.conns.remove(key);
            self.engine.loops[self.index].remove_connection();
            if let Some(done) = done {
                done.complete(Err(Error::io("register a connection", e)));
            }
            return;
        }
        entry.read_armed = true;
        entry.write_armed = self.settings.edge_triggered;
        // A dialled record moved slots: its wheel entry (the connect
        // timeout) names the old key and will be skipped, so schedule anew.
        entry.timer_tick = 0;
        entry.last_read_ms = self.now_ms;
        entry.last_write_ms = self.now_ms;
        if let Some((at, _)) = Self::awaiting_header(entry)
            .then(|| next_deadline(entry, &self.settings.timeouts))
            .flatten()
        {
            // Opened once its PROXY header is in (or refused at the deadline).
            self.timeouts_in_use = true;
            entry.timer_tick = self.wheel.schedule(key, at);
            return;
        }
        self.start_session(key, done);
    }

    /// Starts a registered connection's session once its PROXY header (if
    /// any) is in: counts it as opened, then runs `on_open`, or starts the
    /// TLS handshake, whose end runs it. `done` (a dial or enroll through
    /// the engine) gets its handle.
    fn start_session(&mut self, key: SlotKey, done: Option<Completion<ConnHandle>>) {
        bump(
            &self.engine.loops[self.index].counters.connections_opened,
            1,
        );
        if self.conns.get(key).is_some_and(|entry| entry.tls.is_some()) {
            // on_open waits for the handshake.
            self.begin_handshake(key, done);
            return;
        }
        self.open(key, done);
    }

    /// Runs `on_open`; `done` (a dial or enroll through the engine) gets the
    /// handle.
    fn open(&mut self, key: SlotKey, done: Option<Completion<ConnHandle>>) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let handler = &mut self.handler;
        let (action, side, handle) = {
            let mut conn = Conn::new(&[], &mut self.conns, key, &lp);
            let action = guarded("on_open", || handler.on_open(&mut conn));
            (action, conn.take_side_effects(), conn.handle())
        };
        self.after_callback(key, action, side);
        if let Some(done) = done {
            match self.conns.get(key) {
                Some(_) => done.complete(Ok(handle)),
                None => done.complete(Err(Error::ConnectionClosed)),
            }
        }
    }

    fn apply_socket_options(&self, entry: &ConnEntry<H::State>) {
        let fd = entry.fd.as_fd();
        let s = &self.settings;
        let mut results = Vec::new();
        if entry.is_tcp {
            results.push(("TCP_NODELAY", socket::set_nodelay(fd, s.nodelay)));
            if let Some(ka) = s.keepalive {
                results.push(("keepalive", socket::set_keepalive(fd, Some(ka.to_sys()))));
            }
        }
        if let Some(n) = s.recv_buffer {
            results.push(("SO_RCVBUF", socket::set_recv_buffer_size(fd, n)));
        }
        if let Some(n) = s.send_buffer {
            results.push(("SO_SNDBUF", socket::set_send_buffer_size(fd, n)));
        }
        for (what, result) in results {
            if let Err(e) = result {
                log::debug!(
                    "could not set {what} on a connection from {}: {e}",
                    entry.peer
                );
            }
        }
    }

    // ----- timers and shutdown -----

    fn timers(&mut self) {
        if self.next_tick.is_none() && self.listeners_resume.is_none() {
            return; // no clock read on the hot path
        }
        let now = Instant::now();
        if self.listeners_resume.is_some_and(|t| now >= t) {
            self.listeners_resume = None;
            self.set_listening(true);
        }
        let Some(due) = self.next_tick else { return };
        if now < due {
            return;
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        let (delay, action) = guarded("on_tick", || handler.on_tick(ctx))
            .unwrap_or((Duration::from_secs(1), Action::None));
        self.next_tick = Some(now + delay);
        if action == Action::Shutdown {
            self.engine.request_stop();
        }
    }

    /// Closes connections whose timeout expired; re-arms the others.
    fn expire_timeouts(&mut self) {
        if self.wheel.len() == 0 {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(self.now_ms, &mut due);
        for (key, tick) in due.drain(..) {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            if entry.timer_tick != tick {
                continue; // superseded by an earlier entry
            }
            entry.timer_tick = 0;
            match next_deadline(entry, &self.settings.timeouts) {
                Some((_, TimeoutKind::Connect))
                    if entry
                        .connecting
                        .as_ref()
                        .is_some_and(|c| c.deadline_ms <= self.now_ms) =>
                {
                    let error = Error::io(
                        "connect",
                        io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                    );
                    self.fail_dial(key, error);
                }
                Some((at, _)) if at <= self.now_ms && Self::awaiting_header(entry) => {
                    self.refuse_header(key, crate::proxy_protocol::ProxyHeaderError::Timeout);
                }
                Some((at, _)) if at <= self.now_ms && entry.lingering.is_some() => {
                    let reason = entry.take_lingering_reason();
                    log::debug!(
                        "loop {}: closing with unsent bytes after the drain deadline",
                        self.index
                    );
                    self.close_conn(key, reason);
                }
                Some((at, kind)) if at <= self.now_ms => {
                    bump(&self.engine.loops[self.index].counters.timeouts, 1);
                    self.close_conn(key, CloseReason::Timeout(kind));
                }
                Some((at, _)) => entry.timer_tick = self.wheel.schedule(key, at),
                None => {}
            }
        }
        self.due = due;
    }

    fn shutdown(&mut self) {
        // Apply what was already queued (writes reach their connections before
        // those close); anything sent from now on is refused.
        for message in self.mailbox.close_and_drain() {
            self.handle_message(message);
        }
        let left = self.conns.keys();
        let unflushed = left
            .iter()
            .filter(|k| self.conns.get(**k).is_some_and(|e| !e.outbound.is_empty()))
            .count();
        if unflushed > 0 {
            log::warn!(
                "loop {}: closing {unflushed} connections with unsent bytes after the drain deadline",
                self.index
            );
        }
        for key in left {
            self.close_conn(key, CloseReason::Shutdown);
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        guarded("on_shutdown", || handler.on_shutdown(ctx));
        log::info!(
            "loop {} stopped: {}",
            self.index,
            self.engine.stats_of(self.index)
        );
    }
}
