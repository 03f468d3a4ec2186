//! The event-loop actor: owns an I/O driver, a mailbox, the connections it was
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
//! Epoll only (on io_uring a multishot receive reports every arrival).
//! Edge-triggered (the default): connections are registered once for both
//! directions; each turn a connection reads and writes until the socket
//! would block or it has moved
//! [`EngineBuilder::edge_triggered_chunk`](crate::EngineBuilder::edge_triggered_chunk) bytes, and one that hit its budget is
//! continued on the next turn, so a busy connection cannot starve the others.
//! Level-triggered (`EngineBuilder::edge_triggered(false)`): one read per
//! readiness event, write readiness armed only while a connection has bytes
//! queued; a reported socket stays on epoll's ready list and is polled
//! again at the next wait, whether or not new input came.
//!
//! # Files
//!
//! One job per file, all of them `impl EventLoop` blocks over this struct:
//!
//! | file | job |
//! |---|---|
//! | `turn.rs` | the turn: timeout, park, the steps in order; drain; shutdown |
//! | `driver.rs` | the I/O driver and its contract (readiness today) |
//! | `token.rs` | what a poller token names |
//! | `io.rs` | readiness events, reads, flushes, input callbacks |
//! | `fast.rs` | the shortcut for input alone on a quiet connection |
//! | `forward.rs` | io_uring: an echoed input sent from its receive buffer |
//! | `settle.rs` | reconciling a connection after a callback or I/O |
//! | `close.rs` | `on_close`, graceful and lingering closes |
//! | `open.rs` | adopting a socket, `on_open` |
//! | `dial.rs` | connects and enrolled sockets |
//! | `accept.rs` | inline accept (reuseport), through [`crate::accept`] |
//! | `admit.rs` | admission limits and PROXY headers before `on_open` |
//! | `tls_io.rs` | TLS sessions, handshakes, the read path through them |
//! | `datagram.rs` | UDP datagrams |
//! | `messages.rs` | messages from other threads |
//! | `timers.rs` | the ticker, paused listeners, connection timeouts |
//! | `budget.rs` | the buffer budget and memory trimming |
//! | `entry.rs` | `ConnEntry`: a connection's record, lifecycle and write path |

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accept::Listeners;
use crate::actors::slab::{Slab, SlotKey};
use crate::actors::Mailbox;
use crate::budget::LoopBudget;
use crate::conn::SideEffects;
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::listener::LoopSockets;
use crate::options::{BackPressure, KeepAlive, Options, Timeouts, WaterMarks};
use crate::reason::{Action, CloseReason};
use crate::runtime::message::LoopContext;
use crate::runtime::message::{Completion, LoopMessage};
use crate::runtime::{EngineHandle, EngineShared};
use crate::sys::poller::{Event, Interest};
use crate::timer_wheel::TimerWheel;
use crate::tls::TlsOptions;
use driver::Driver;
use entry::{ConnEntry, LoopRef};
use token::LoopToken;

mod tls_io;
mod tls_ring;

mod accept;
mod admit;
mod budget;
mod close;
mod datagram;
mod dial;
mod driver;
pub(crate) mod entry;
mod fast;
pub(crate) mod forward;
mod io;
mod messages;
mod open;
mod settle;
mod timers;
mod token;
mod turn;

/// Most messages handled per turn, so I/O is never starved by a flood.
const MESSAGE_BUDGET: usize = 1024;
/// Most datagrams read per readiness event.
const DATAGRAM_BATCH: usize = 64;
/// The timer wheel: 1,024 slots of 10 ms (one turn is about 10 s; later
/// deadlines wait in their slot for their turn).
const WHEEL_SLOTS: usize = 1024;
const WHEEL_TICK_MS: u64 = 10;
/// How soon a loop retries requests waiting for room in another's lane.
const OVERFLOW_RETRY: Duration = Duration::from_millis(1);
/// How often a loop with connections paused for the buffer budget looks
/// whether the engine's total fell enough to read them again.
const BUDGET_RETRY: Duration = Duration::from_millis(20);
/// Bytes released by closed connections (or shrunk input buffers) after
/// which the loop hands free heap memory back to the system...
const TRIM_AFTER: usize = 8 << 20;
/// ...at most this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// What a connection callback returned (`None`: it panicked), what it
/// asked of the loop beyond its own connection, and how the connection
/// stood before it.
type Outcome<S> = (Option<Action>, Option<Box<SideEffects<S>>>, io::Before);

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
    /// No default timeout applies to an open connection with nothing
    /// waiting either way (no idle or read timeout): settling such a
    /// connection schedules nothing.
    quiet_timeouts: bool,
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
    /// The I/O driver: registrations, waiting, receives (see `driver.rs`).
    driver: Driver,
    /// The events of this turn.
    ready: Vec<Event>,
    mailbox: Mailbox<LoopMessage>,
    inbox: Vec<LoopMessage>,
    conns: Slab<ConnEntry<H::State>>,
    /// Scratch space for what does not come through the driver yet: TLS
    /// plaintext, PROXY headers, datagrams.
    read_buf: Vec<u8>,
    engine: Arc<EngineShared>,
    settings: ConnSettings,
    /// This loop's own listeners (reuseport mode), with their pauses.
    listeners: Listeners,
    udp: Vec<(OwnedFd, u16)>,
    /// Edge-triggered connections that used up their budget this turn.
    continue_io: VecDeque<SlotKey>,
    next_tick: Option<Instant>,
    /// Requests to full lanes are waiting in this thread's overflow.
    overflow_waiting: bool,
    /// Connection timeouts: the wheel, the loop's clock and its origin.
    wheel: TimerWheel,
    epoch: Instant,
    now_ms: u64,
    /// Some connection may have a timeout (engine default or an override).
    timeouts_in_use: bool,
    due: Vec<(SlotKey, u64)>,
    /// io_uring: write timeouts held back while the ring sends (see
    /// `timers::RingSendTimers`).
    ring_send_timers: timers::RingSendTimers,
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
    /// `settle` is running: connections it affects wait in `unsettled`.
    settling: bool,
    unsettled: Vec<SlotKey>,
    /// Buffer bytes released since the last trim (see `TRIM_AFTER`).
    released: usize,
    last_trim: Option<Instant>,
    /// Ciphertext read from a TLS connection's socket, on its way into the
    /// session (allocated on first use).
    tls_in: Vec<u8>,
}

/// Runs a handler callback; a panic is caught and logged instead of killing
/// the loop (and every other connection on it).
#[inline(always)]
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            callback_panicked(what);
            None
        }
    }
}

/// Logs a caught panic of the callback `what`. Out of line: inlined, the
/// logging of every callback site merged into one block that took the name
/// from a stack slot, which each call then stored before the callback.
#[cold]
#[inline(never)]
fn callback_panicked(what: &str) {
    log::error!("event handler panicked in {what}");
}

/// What a `Conn` needs from its loop, borrowed field by field so that the
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
        counters: engine.slot(index).counters(),
        now_ms,
        forward: Default::default(),
    }
}

fn handler_panicked() -> CloseReason {
    CloseReason::Error(std::io::Error::other("the event handler panicked"))
}

impl<H: EventHandler> EventLoop<H> {
    pub(crate) fn new(
        index: usize,
        handler: H,
        mailbox: Mailbox<LoopMessage>,
        sockets: LoopSockets,
        engine: EngineHandle,
        options: &Options,
    ) -> Result<Self> {
        let backend = options.backend.unwrap_or(crate::Backend::Epoll);
        let mut driver = Driver::new(backend, options.read_buffer_size)
            .map_err(|e| Error::io("create a loop's I/O driver", e))?;
        let edge_triggered = options.edge_triggered_on(
            driver.is_readiness(),
            crate::options::epoll_mode_from_env()?,
        );
        if options.edge_triggered == Some(true) && !edge_triggered && index == 0 {
            log::info!("edge-triggered mode has no meaning on io_uring: ignored");
        }
        driver
            .register_doorbell(mailbox.doorbell())
            .map_err(|e| Error::io("register a loop's doorbell", e))?;
        for (i, (fd, _)) in sockets.udp.iter().enumerate() {
            driver
                .register(fd.as_fd(), LoopToken::Udp(i), Interest::READABLE)
                .map_err(|e| Error::io("register a UDP socket", e))?;
        }
        if engine.shared.deploy().upgradable {
            // What the ring accepted is this process's; an upgrade hands
            // over only the backlog, so accept from it directly.
            driver.keep_listeners_on_epoll();
        }
        let listeners = Listeners::new(
            sockets.listeners,
            LoopToken::Listener(0).encode(),
            format!("loop {index}"),
        );
        listeners
            .register(&mut driver)
            .map_err(|e| Error::io("register a listener", e))?;
        let shared = engine.shared.clone();
        let budget = LoopBudget::new(shared.budget(), options.loops);
        Ok(Self {
            index,
            handler,
            ctx: LoopContext { index, engine },
            driver,
            ready: Vec::new(),
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
                edge_triggered,
                chunk: options.edge_triggered_chunk,
                timeouts: options.timeouts,
                quiet_timeouts: options.timeouts.idle.is_none() && options.timeouts.read.is_none(),
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
            listeners,
            udp: sockets.udp,
            continue_io: VecDeque::new(),
            next_tick: (options.ticker && index == 0).then(Instant::now),
            overflow_waiting: false,
            wheel: TimerWheel::new(WHEEL_SLOTS, WHEEL_TICK_MS, 0),
            epoch: Instant::now(),
            now_ms: 0,
            timeouts_in_use: options.timeouts.any(),
            due: Vec::new(),
            ring_send_timers: timers::RingSendTimers::default(),
            deferred: HashMap::new(),
            drain_deadline: None,
            upgrade_drain_seen: false,
            budget,
            input_key: None,
            settling: false,
            unsettled: Vec::new(),
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
}
