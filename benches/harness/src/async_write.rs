//! `harness async-write`: cross-thread writes from worker threads to event
//! loops, ringloop's `ConnHandle::async_write` against the naive design (a
//! `crossbeam-channel` per loop plus one eventfd write per message), in one
//! process, alternated, every byte verified by a reading client.
//!
//! Per run: `conns` loopback TCP connections; the server ends belong to
//! `loops` event loops, the client ends to one verifying reader thread.
//! `workers` threads each own the connections `i % workers == w` and write
//! `size`-byte messages to them round-robin, paced at `rate` msgs/s in total
//! (or as fast as the design lets them: `rate` 0). A message is a 12-byte
//! header (connection `u32`, sequence `u64`) and the pattern bytes of that
//! (connection, sequence), so the reader checks every byte and the order.
//!
//! * **ringloop**: an `EngineHandle` with no listener; the server ends are
//!   `enroll`ed; a worker calls `handle.async_write(msg, on_done)`. `on_done`
//!   runs on the loop once the bytes are written or queued on the socket.
//! * **ringloop-framed** (`--designs framed,ringloop`): the same engine
//!   running `codec::Framed`; a worker sends each message as a frame through
//!   the connection's `codec::FrameHandle` (`send_frame(&msg, on_done)`),
//!   which encodes it on the worker, then writes it as `async_write` does.
//!   The codec is a `FixedLengthCodec` of the message size, whose encoding
//!   is the message itself, so the reader checks the very same bytes: what
//!   differs from **ringloop** is only what the frame API costs (the
//!   encoding copy into a buffer of its own, the codec's checks). With
//!   `naive` absent, ratios are against **ringloop**.
//! * **naive**: one thread per loop with a mio poll holding an eventfd and
//!   the sockets; a worker sends `(conn, msg, time)` on the loop's bounded
//!   crossbeam channel (capacity 1024 per worker, the same room as ringloop's
//!   lanes) and writes 1 to the eventfd, every message. The loop wakes on the
//!   eventfd, reads it, drains the channel, writes each message to its socket
//!   (or queues what the socket does not take and flushes on writable).
//!
//! Latency is send → written: from just before `async_write` / `send` to the
//! moment the loop has written or queued the bytes (where `on_done` runs).
//! Only messages written inside the measured window count. At the end the
//! run waits until the reader has verified every message sent, so a design
//! that loses or reorders messages fails rather than looks fast.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::eventfd::{EfdFlags, EventFd};
use ringloop::codec::{FixedLengthCodec, FrameConn, FrameHandle, FrameHandler, Framed};
use ringloop::{Action, ConnHandle, Engine, EngineHandle, EventHandler};

use crate::args::{seconds, Args};
use crate::bench::{ratio_cell, spread};
use crate::hist::Histogram;
use crate::machine::{loadavg, note_run_load, take_run_loads};
use crate::pattern::Pattern;
use crate::{procfs, Result};

/// Header bytes: connection id (`u32`), sequence number (`u64`).
const HEADER: usize = 12;
/// Messages per worker a loop's channel holds (ringloop's default lane).
const CHANNEL_PER_WORKER: usize = 1024;
/// How long the end of a run may take to deliver what was sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The two designs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Design {
    Ringloop,
    Framed,
    Naive,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Ringloop => "ringloop",
            Design::Framed => "ringloop-framed",
            Design::Naive => "naive",
        }
    }

    fn loop_thread_prefix(self) -> &'static str {
        match self {
            Design::Ringloop | Design::Framed => "ringloop-loop-",
            Design::Naive => "naive-loop-",
        }
    }
}

struct Config {
    loops: usize,
    workers: usize,
    conns: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    /// Total msgs/s offered; 0 = as fast as possible.
    rates: Vec<f64>,
    rounds: usize,
    designs: Vec<Design>,
    title: Option<String>,
}

/// `harness async-write …`
pub fn main(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--loops",
            "--workers",
            "--conns",
            "--size",
            "--rates",
            "--rounds",
            "--seconds",
            "--designs",
            "--title",
        ],
        &["--quick"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let rates = args
        .value::<String>("--rates")?
        .unwrap_or_else(|| "20000,0".to_string())
        .split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .map_err(|e| format!("--rates {r:?}: {e}").into())
        })
        .collect::<Result<Vec<f64>>>()?;
    let designs = args
        .value::<String>("--designs")?
        .unwrap_or_else(|| "ringloop,naive".to_string())
        .split(',')
        .map(|d| match d.trim() {
            "ringloop" => Ok(Design::Ringloop),
            "framed" => Ok(Design::Framed),
            "naive" => Ok(Design::Naive),
            other => {
                Err(format!("unknown design {other:?}: expected ringloop, framed or naive").into())
            }
        })
        .collect::<Result<Vec<Design>>>()?;
    let cfg = Config {
        loops: args.value("--loops")?.unwrap_or(1),
        workers: args.value("--workers")?.unwrap_or(2),
        conns: args.value("--conns")?.unwrap_or(64),
        size: args.value("--size")?.unwrap_or(64),
        warmup: Duration::from_millis(500),
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 1.0 } else { 3.0 }),
            "--seconds",
        )?,
        rates,
        rounds: args.value("--rounds")?.unwrap_or(3),
        designs,
        title: args.value("--title")?,
    };
    if cfg.loops == 0 || cfg.workers == 0 || cfg.conns < cfg.workers || cfg.rounds == 0 {
        return Err(
            "--loops, --workers and --rounds must be at least 1, --conns at least --workers".into(),
        );
    }
    if cfg.size < HEADER + 4 {
        return Err(format!("--size must be at least {}", HEADER + 4).into());
    }
    if cfg.rates.iter().any(|r| !r.is_finite() || *r < 0.0) || cfg.designs.is_empty() {
        return Err("--rates must be 0 (unpaced) or positive; --designs must name one".into());
    }
    let load_before = loadavg();
    let mut results: Vec<Vec<Vec<RunReport>>> = cfg
        .rates
        .iter()
        .map(|_| cfg.designs.iter().map(|_| Vec::new()).collect())
        .collect();
    for (ri, &rate) in cfg.rates.iter().enumerate() {
        for round in 0..cfg.rounds {
            for k in crate::bench::rotation(cfg.designs.len(), round) {
                let design = cfg.designs[k];
                note_run_load();
                eprintln!(
                    "async-write · {} · round {}/{} · {}",
                    rate_label(rate),
                    round + 1,
                    cfg.rounds,
                    design.name()
                );
                let report = run_once(&cfg, design, rate)
                    .map_err(|e| format!("{} at {}: {e}", design.name(), rate_label(rate)))?;
                eprintln!("    {}", report.summary());
                results[ri][k].push(report);
            }
        }
    }
    print!("{}", render(&cfg, &results, &load_before));
    Ok(ExitCode::SUCCESS)
}

fn rate_label(rate: f64) -> String {
    if rate == 0.0 {
        "unpaced".to_string()
    } else {
        format!("{} msgs/s offered", crate::bench::thousands(rate))
    }
}

// ----- what one run measures -----

/// What the loop side saw (per loop, then summed).
#[derive(Default)]
struct LoopSide {
    latency: Histogram,
    /// Writes completed inside the window.
    in_window: u64,
    /// Writes completed in total, and those that failed.
    total: u64,
    failed: u64,
}

impl LoopSide {
    fn merge(&mut self, o: &LoopSide) {
        self.latency.merge(&o.latency);
        self.in_window += o.in_window;
        self.total += o.total;
        self.failed += o.failed;
    }
}

struct RunReport {
    window: Duration,
    loop_side: LoopSide,
    /// Messages the workers sent inside the window.
    sent_in_window: u64,
    /// Per-thread-group CPU over the window.
    loop_cpu: Duration,
    worker_cpu: Duration,
    client_cpu: Duration,
    process_cpu: Duration,
    /// Doorbell (eventfd) writes inside the window, and the loop-side
    /// messages they announced.
    doorbell_writes: u64,
    doorbell_messages: u64,
    /// Voluntary (blocked) and involuntary (preempted) context switches of
    /// the loop threads inside the window.
    loop_switches: (u64, u64),
    /// Nanoseconds the loop threads spent runnable but not running (waiting
    /// for a CPU) inside the window.
    loop_runqueue_ns: u64,
    /// Messages the reader verified over the whole run.
    verified: u64,
}

impl RunReport {
    fn rate(&self) -> f64 {
        self.loop_side.in_window as f64 / self.window.as_secs_f64()
    }

    fn per_msg(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.loop_side.in_window.max(1) as f64
    }

    fn doorbells_per_msg(&self) -> f64 {
        self.doorbell_writes as f64 / self.doorbell_messages.max(1) as f64
    }

    fn summary(&self) -> String {
        format!(
            "sent {:.0}/s, written {:.0} msgs/s, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; CPU µs/msg: loops {:.2}, \
             workers {:.2}, reader {:.2}, process {:.2}; doorbell writes/msg {:.4}; loop context \
             switches per 1,000 msgs: {:.0} voluntary, {:.0} involuntary; loop waited for a CPU \
             {:.1} µs/msg; {} verified",
            self.sent_in_window as f64 / self.window.as_secs_f64(),
            self.rate(),
            self.loop_side.latency.quantile(0.5) as f64 / 1e3,
            self.loop_side.latency.quantile(0.99) as f64 / 1e3,
            self.loop_side.latency.max() as f64 / 1e3,
            self.per_msg(self.loop_cpu),
            self.per_msg(self.worker_cpu),
            self.per_msg(self.client_cpu),
            self.per_msg(self.process_cpu),
            self.doorbells_per_msg(),
            self.loop_switches.0 as f64 * 1e3 / self.loop_side.in_window.max(1) as f64,
            self.loop_switches.1 as f64 * 1e3 / self.loop_side.in_window.max(1) as f64,
            self.loop_runqueue_ns as f64 / 1e3 / self.loop_side.in_window.max(1) as f64,
            self.verified
        )
    }
}

// ----- the measured window, shared with completions on loop threads -----

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Window start and end, in nanoseconds since `EPOCH`.
static WINDOW_START: AtomicU64 = AtomicU64::new(u64::MAX);
static WINDOW_END: AtomicU64 = AtomicU64::new(u64::MAX);

fn since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_nanos() as u64
}

fn set_window(start: Instant, end: Instant) {
    // Relaxed: written before the threads that read them are started.
    WINDOW_START.store(since_epoch(start), Ordering::Relaxed);
    WINDOW_END.store(since_epoch(end), Ordering::Relaxed);
}

thread_local! {
    /// On a ringloop loop thread: what its completions saw.
    static RINGLOOP_SIDE: RefCell<LoopSide> = RefCell::new(LoopSide::default());
}

/// Books one completed write (on the loop that wrote it).
fn on_written(side: &mut LoopSide, sent_at: Instant, ok: bool) {
    let now = Instant::now();
    side.total += 1;
    if !ok {
        side.failed += 1;
        return;
    }
    let t = since_epoch(now);
    // Relaxed: set before the run started.
    if t >= WINDOW_START.load(Ordering::Relaxed) && t < WINDOW_END.load(Ordering::Relaxed) {
        side.in_window += 1;
        side.latency
            .record((now - sent_at).as_nanos().min(u64::MAX as u128) as u64);
    }
}

// ----- messages -----

fn fill_message(pattern: &Pattern, conn: usize, seq: u64, out: &mut [u8]) {
    out[..4].copy_from_slice(&(conn as u32).to_le_bytes());
    out[4..HEADER].copy_from_slice(&seq.to_le_bytes());
    out[HEADER..].copy_from_slice(&pattern.message(conn, seq)[HEADER..]);
}

/// How a worker reaches the connections it writes to.
trait Target: Send {
    /// Sends `data` to connection `conn`; true if it was handed over.
    fn send(&mut self, conn: usize, data: Vec<u8>, sent_at: Instant) -> bool;
}

struct RingloopTarget {
    handles: Vec<Option<ConnHandle>>,
}

impl Target for RingloopTarget {
    fn send(&mut self, conn: usize, data: Vec<u8>, sent_at: Instant) -> bool {
        let handle = self.handles[conn].as_ref().expect("an owned connection");
        handle
            .async_write(data, move |r| {
                RINGLOOP_SIDE.with(|s| on_written(&mut s.borrow_mut(), sent_at, r.is_ok()))
            })
            .is_ok()
    }
}

struct FramedTarget {
    handles: Vec<Option<FrameHandle>>,
}

impl Target for FramedTarget {
    fn send(&mut self, conn: usize, data: Vec<u8>, sent_at: Instant) -> bool {
        let frames = self.handles[conn].as_ref().expect("an owned connection");
        frames
            .send_frame(&data, move |r| {
                RINGLOOP_SIDE.with(|s| on_written(&mut s.borrow_mut(), sent_at, r.is_ok()))
            })
            .is_ok()
    }
}

enum NaiveMsg {
    Write {
        conn: usize,
        data: Vec<u8>,
        sent_at: Instant,
    },
    Stop,
}

/// The naive design's way into one loop.
#[derive(Clone)]
struct NaiveLoop {
    tx: crossbeam_channel::Sender<NaiveMsg>,
    bell: Arc<EventFd>,
}

impl NaiveLoop {
    fn send(&self, m: NaiveMsg) -> bool {
        if self.tx.send(m).is_err() {
            return false;
        }
        // One eventfd write per message: the naive design.
        self.bell.write(1).is_ok()
    }
}

struct NaiveTarget {
    /// Per connection: its loop and its index there.
    routes: Vec<Option<(NaiveLoop, usize)>>,
}

impl Target for NaiveTarget {
    fn send(&mut self, conn: usize, data: Vec<u8>, sent_at: Instant) -> bool {
        let (lp, local) = self.routes[conn].as_ref().expect("an owned connection");
        lp.send(NaiveMsg::Write {
            conn: *local,
            data,
            sent_at,
        })
    }
}

struct WorkerReport {
    sent_total: u64,
    sent_in_window: u64,
}

/// Sends round-robin over `conns` until `stop`, paced at `rate` msgs/s (this
/// worker's share) when given. Counts what it sent inside [start, end).
#[allow(clippy::too_many_arguments)]
fn worker(
    mut target: Box<dyn Target>,
    conns: Vec<usize>,
    pattern: &Pattern,
    rate: Option<f64>,
    start: Instant,
    end: Instant,
    stop: &AtomicBool,
    abort: &AtomicBool,
) -> WorkerReport {
    let mut seqs = vec![0u64; conns.len()];
    let mut report = WorkerReport {
        sent_total: 0,
        sent_in_window: 0,
    };
    let size = pattern.message(0, 0).len();
    // Pacing: message k is due at t0 + k / rate. Sleeps are coarse (tens of
    // µs at best, milliseconds on a busy machine), so whatever is due is sent
    // at once, but at most 10 ms worth: a worker that was descheduled longer
    // skips those slots rather than bursting without end.
    let t0 = Instant::now();
    let mut slot: u64 = 0;
    let burst = rate.map_or(1, |r| (r * 0.010).ceil().max(1.0) as u64);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
        if let Some(rate) = rate {
            let due = (t0.elapsed().as_secs_f64() * rate) as u64;
            if slot >= due {
                let next = t0 + Duration::from_secs_f64((slot + 1) as f64 / rate);
                std::thread::sleep(
                    next.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(10)),
                );
                continue;
            }
            slot = slot.max(due.saturating_sub(burst)) + 1;
        }
        let conn = conns[i];
        let mut data = vec![0u8; size];
        fill_message(pattern, conn, seqs[i], &mut data);
        let sent_at = Instant::now();
        if !target.send(conn, data, sent_at) {
            abort.store(true, Ordering::Relaxed);
            break;
        }
        seqs[i] += 1;
        report.sent_total += 1;
        if sent_at >= start && sent_at < end {
            report.sent_in_window += 1;
        }
        i = (i + 1) % conns.len();
    }
    report
}

// ----- the reader -----

/// Reads every client end and checks each byte against what was sent.
fn reader(
    mut streams: Vec<mio::net::TcpStream>,
    pattern: &Pattern,
    received: &AtomicU64,
    stop: &AtomicBool,
) -> Result<u64> {
    let size = pattern.message(0, 0).len();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    // Per connection: next sequence number and how much of it has arrived.
    let mut seq = vec![0u64; streams.len()];
    let mut offset = vec![0usize; streams.len()];
    let mut expected: Vec<Vec<u8>> = (0..streams.len())
        .map(|c| {
            let mut m = vec![0u8; size];
            fill_message(pattern, c, 0, &mut m);
            m
        })
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(20))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            let c = event.token().0;
            loop {
                let n = match streams[c].read(&mut buf) {
                    Ok(0) => return Err(format!("connection {c} closed by the server").into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("connection {c}: read: {e}").into()),
                };
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let take = data.len().min(size - offset[c]);
                    let want = &expected[c][offset[c]..offset[c] + take];
                    if data[..take] != *want {
                        let at = (0..take).find(|&i| data[i] != want[i]).unwrap_or(0);
                        return Err(format!(
                            "connection {c} message #{} byte {} of {size}: sent 0x{:02x}, got 0x{:02x}",
                            seq[c],
                            offset[c] + at,
                            want[at],
                            data[at]
                        )
                        .into());
                    }
                    offset[c] += take;
                    data = &data[take..];
                    if offset[c] == size {
                        offset[c] = 0;
                        seq[c] += 1;
                        total += 1;
                        fill_message(pattern, c, seq[c], &mut expected[c]);
                    }
                }
            }
        }
        // Relaxed: a progress figure; the final count is the return value.
        received.store(total, Ordering::Relaxed);
    }
    Ok(total)
}

// ----- the naive loop -----

const BELL: Token = Token(usize::MAX);

struct NaiveConn {
    stream: mio::net::TcpStream,
    pending: VecDeque<u8>,
}

fn naive_loop(
    rx: crossbeam_channel::Receiver<NaiveMsg>,
    bell: Arc<EventFd>,
    streams: Vec<TcpStream>,
) -> Result<LoopSide> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    poll.registry()
        .register(&mut SourceFd(&bell.as_raw_fd()), BELL, Interest::READABLE)?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, s) in streams.into_iter().enumerate() {
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::WRITABLE)?;
        conns.push(NaiveConn {
            stream,
            pending: VecDeque::new(),
        });
    }
    let mut side = LoopSide::default();
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            if event.token() == BELL {
                // Reset the counter (EAGAIN: already zero).
                let _ = bell.read();
            } else {
                flush(&mut conns[event.token().0])?;
            }
        }
        while let Ok(m) = rx.try_recv() {
            match m {
                NaiveMsg::Write {
                    conn,
                    data,
                    sent_at,
                } => {
                    let c = &mut conns[conn];
                    let ok = write_or_queue(c, &data).is_ok();
                    on_written(&mut side, sent_at, ok);
                }
                NaiveMsg::Stop => return Ok(side),
            }
        }
    }
}

fn write_or_queue(c: &mut NaiveConn, data: &[u8]) -> std::io::Result<()> {
    if !c.pending.is_empty() {
        c.pending.extend(data);
        return Ok(());
    }
    let mut done = 0;
    while done < data.len() {
        match c.stream.write(&data[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.pending.extend(&data[done..]);
    Ok(())
}

fn flush(c: &mut NaiveConn) -> Result<()> {
    while !c.pending.is_empty() {
        let (front, _) = c.pending.as_slices();
        match c.stream.write(front) {
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("naive loop write: {e}").into()),
        }
    }
    Ok(())
}

// ----- one run -----

/// A ringloop loop-side handler that ignores input (the reader sends none).
struct Sink;

impl EventHandler for Sink {
    type State = ();
}

/// The framed design's loop-side handler: ignores input too.
struct FrameSink;

impl FrameHandler for FrameSink {
    type State = ();

    fn on_frame(&mut self, _conn: &mut FrameConn<'_, ()>, _frame: &[u8]) -> Action {
        Action::None
    }
}

/// Runs an engine with no listener and enrolls `server_ends` in it.
#[allow(clippy::type_complexity)]
fn enroll_all<H: EventHandler>(
    builder: ringloop::EngineBuilder<H>,
    server_ends: Vec<TcpStream>,
) -> Result<(
    EngineHandle,
    std::thread::JoinHandle<ringloop::Result<()>>,
    Vec<ConnHandle>,
)> {
    let server = builder.build()?;
    let e = server.handle();
    let runner = std::thread::spawn(move || server.run());
    let mut handles = Vec::with_capacity(server_ends.len());
    for s in server_ends {
        handles.push(e.enroll(s).wait()?);
    }
    Ok((e, runner, handles))
}

/// `conns` connected loopback pairs: (server end, client end).
fn socket_pairs(conns: usize) -> Result<Vec<(TcpStream, TcpStream)>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    (0..conns)
        .map(|_| {
            let client = TcpStream::connect(addr)?;
            let (server, _) = listener.accept()?;
            for s in [&client, &server] {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
            }
            Ok((server, client))
        })
        .collect()
}

fn run_once(cfg: &Config, design: Design, rate: f64) -> Result<RunReport> {
    let pattern = Pattern::new(cfg.size);
    let pairs = socket_pairs(cfg.conns)?;
    let (server_ends, client_ends): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let client_ends: Vec<mio::net::TcpStream> = client_ends
        .into_iter()
        .map(mio::net::TcpStream::from_std)
        .collect();

    // The server side, and one target per worker.
    let mut engine: Option<(EngineHandle, std::thread::JoinHandle<ringloop::Result<()>>)> = None;
    let mut naive: Vec<(NaiveLoop, std::thread::JoinHandle<Result<LoopSide>>)> = Vec::new();
    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    match design {
        Design::Ringloop => {
            let builder = Engine::builder(|_| Sink).loops(cfg.loops);
            let (e, runner, handles) = enroll_all(builder, server_ends)?;
            for w in 0..cfg.workers {
                let mine = handles
                    .iter()
                    .enumerate()
                    .map(|(c, h)| (c % cfg.workers == w).then(|| h.clone()))
                    .collect();
                targets.push(Box::new(RingloopTarget { handles: mine }));
            }
            engine = Some((e, runner));
        }
        Design::Framed => {
            let codec = FixedLengthCodec::new(cfg.size)?;
            let builder = Engine::builder(move |_| Framed::new(codec, FrameSink)).loops(cfg.loops);
            let (e, runner, handles) = enroll_all(builder, server_ends)?;
            for w in 0..cfg.workers {
                let mine = handles
                    .iter()
                    .enumerate()
                    .map(|(c, h)| {
                        (c % cfg.workers == w).then(|| FrameHandle::new(h.clone(), codec))
                    })
                    .collect();
                targets.push(Box::new(FramedTarget { handles: mine }));
            }
            engine = Some((e, runner));
        }
        Design::Naive => {
            let mut per_loop: Vec<Vec<TcpStream>> = (0..cfg.loops).map(|_| Vec::new()).collect();
            let mut routes = Vec::with_capacity(cfg.conns);
            for (c, s) in server_ends.into_iter().enumerate() {
                let l = c % cfg.loops;
                routes.push((l, per_loop[l].len()));
                per_loop[l].push(s);
            }
            for (l, streams) in per_loop.into_iter().enumerate() {
                let (tx, rx) = crossbeam_channel::bounded(CHANNEL_PER_WORKER * cfg.workers);
                let bell = Arc::new(EventFd::from_flags(
                    EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
                )?);
                let lp = NaiveLoop {
                    tx,
                    bell: bell.clone(),
                };
                let t = std::thread::Builder::new()
                    .name(format!("naive-loop-{l}"))
                    .spawn(move || naive_loop(rx, bell, streams))?;
                naive.push((lp, t));
            }
            for w in 0..cfg.workers {
                let mine = routes
                    .iter()
                    .enumerate()
                    .map(|(c, &(l, local))| {
                        (c % cfg.workers == w).then(|| (naive[l].0.clone(), local))
                    })
                    .collect();
                targets.push(Box::new(NaiveTarget { routes: mine }));
            }
        }
    }

    let abort = AtomicBool::new(false);
    let stop_reader = AtomicBool::new(false);
    let received = AtomicU64::new(0);
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    set_window(start, end);
    let per_worker = (rate > 0.0).then(|| rate / cfg.workers as f64);
    // Workers run until told, after the last CPU sample: a thread that has
    // exited has no /proc entry left to read.
    let stop_workers = AtomicBool::new(false);
    let me = std::process::id();

    let outcome = std::thread::scope(|scope| -> Result<RunReport> {
        let reader_thread = std::thread::Builder::new()
            .name("aw-reader".into())
            .spawn_scoped(scope, || {
                let r = reader(client_ends, &pattern, &received, &stop_reader);
                if r.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                r
            })?;
        let mut workers = Vec::new();
        for (w, target) in targets.into_iter().enumerate() {
            let mine: Vec<usize> = (0..cfg.conns).filter(|c| c % cfg.workers == w).collect();
            let (pattern, abort, stop) = (&pattern, &abort, &stop_workers);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("aw-worker-{w}"))
                    .spawn_scoped(scope, move || {
                        worker(target, mine, pattern, per_worker, start, end, stop, abort)
                    })?,
            );
        }

        type Sample = (
            Duration,
            Duration,
            Duration,
            Duration,
            ringloop::LoopStats,
            (u64, u64),
            (u64, u64),
        );
        let sample = || -> Result<Sample> {
            Ok((
                procfs::thread_cpu_time(me, design.loop_thread_prefix())?,
                procfs::thread_cpu_time(me, "aw-worker-")?,
                procfs::thread_cpu_time(me, "aw-reader")?,
                procfs::cpu_time(me)?,
                engine
                    .as_ref()
                    .map(|(e, _)| e.total_stats())
                    .unwrap_or_default(),
                procfs::thread_context_switches(me, design.loop_thread_prefix())?,
                procfs::thread_schedstat(me, design.loop_thread_prefix())?,
            ))
        };
        crate::load::sleep_until(start, &abort);
        let s0 = sample();
        if s0.is_err() {
            stop_workers.store(true, Ordering::Relaxed);
        }
        let s0 = s0?;
        crate::load::sleep_until(end, &abort);
        let s1 = sample();
        stop_workers.store(true, Ordering::Relaxed);
        let s1 = s1?;

        let mut sent_total = 0;
        let mut sent_in_window = 0;
        for w in workers {
            let r = w.join().expect("worker panicked");
            sent_total += r.sent_total;
            sent_in_window += r.sent_in_window;
        }
        // Everything sent must arrive, in order, byte for byte.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while received.load(Ordering::Relaxed) < sent_total
            && Instant::now() < deadline
            && !abort.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The reader first: closing the server ends is not an error then.
        stop_reader.store(true, Ordering::Relaxed);
        let verified = reader_thread.join().expect("reader panicked")?;
        // The loop side's books, gathered on the loops themselves.
        let mut side = LoopSide::default();
        if let Some((e, _)) = &engine {
            let (tx, rx) = std::sync::mpsc::channel();
            e.execute_all(move |_| {
                let s = RINGLOOP_SIDE.with(|s| std::mem::take(&mut *s.borrow_mut()));
                let _ = tx.send(s);
            })?;
            for _ in 0..cfg.loops {
                side.merge(&rx.recv_timeout(Duration::from_secs(5))?);
            }
        }
        for (lp, t) in naive.drain(..) {
            let _ = lp.send(NaiveMsg::Stop);
            side.merge(&t.join().expect("naive loop panicked")?);
        }
        if abort.load(Ordering::Relaxed) {
            return Err("a worker could not hand a message over".into());
        }
        if verified != sent_total {
            return Err(format!(
                "{sent_total} messages sent but {verified} arrived within {DRAIN_TIMEOUT:?}"
            )
            .into());
        }
        if side.total != sent_total || side.failed > 0 {
            return Err(format!(
                "{sent_total} messages sent, {} completed, {} of them failed",
                side.total, side.failed
            )
            .into());
        }
        let (doorbell_writes, doorbell_messages) = match design {
            Design::Ringloop | Design::Framed => (
                s1.4.doorbell_writes - s0.4.doorbell_writes,
                s1.4.messages - s0.4.messages,
            ),
            // One eventfd write per message sent, by construction.
            Design::Naive => (sent_in_window, sent_in_window),
        };
        Ok(RunReport {
            window: end - start,
            loop_side: side,
            sent_in_window,
            loop_cpu: s1.0.saturating_sub(s0.0),
            worker_cpu: s1.1.saturating_sub(s0.1),
            client_cpu: s1.2.saturating_sub(s0.2),
            process_cpu: s1.3.saturating_sub(s0.3),
            doorbell_writes,
            doorbell_messages,
            loop_switches: (s1.5 .0 - s0.5 .0, s1.5 .1 - s0.5 .1),
            loop_runqueue_ns: s1.6 .1.saturating_sub(s0.6 .1),
            verified,
        })
    });
    // Stop whatever is still running, whatever happened; a loop's own
    // failure explains the others.
    for (lp, t) in naive {
        let _ = lp.send(NaiveMsg::Stop);
        if let Ok(Err(e)) = t.join() {
            return Err(format!("naive loop failed: {e}").into());
        }
    }
    if let Some((e, runner)) = engine {
        e.stop();
        runner.join().expect("engine thread panicked")?;
    }
    outcome
}

// ----- the report -----

fn render(cfg: &Config, results: &[Vec<Vec<RunReport>>], load_before: &str) -> String {
    let names: Vec<&str> = cfg.designs.iter().map(|d| d.name()).collect();
    // The peer of the ratio columns: the naive design, or else (framed
    // against plain async writes) ringloop's own `async_write`.
    let peer = cfg
        .designs
        .iter()
        .position(|d| *d == Design::Naive)
        .or_else(|| {
            cfg.designs
                .contains(&Design::Framed)
                .then(|| cfg.designs.iter().position(|d| *d == Design::Ringloop))
                .flatten()
        });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {}\n",
        cfg.title.clone().unwrap_or_else(|| format!(
            "Cross-thread async writes: {} loop(s), {} worker thread(s)",
            cfg.loops, cfg.workers
        ))
    );
    let _ = writeln!(
        out,
        "{} CPUs, Linux {}; load average {} before, {} after.{} {} worker thread(s) write {}-byte \
         messages to {} loopback TCP connections served by {} loop(s); one reader thread verifies \
         every byte. {} round(s) per rate, designs alternated and rotated per round, each run {:.1} s \
         warm-up + {:.1} s measured.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_before,
        loadavg(),
        take_run_loads(),
        cfg.workers,
        cfg.size,
        cfg.conns,
        cfg.loops,
        cfg.rounds,
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64()
    );
    for design in &cfg.designs {
        let how = match design {
            Design::Ringloop => "`ConnHandle::async_write(msg, on_done)` from each worker; a lane \
                 per worker thread into each loop, a doorbell write only when the loop is parked."
                .to_string(),
            Design::Framed => "the same through `codec::Framed`: each message sent as a frame \
                 with `FrameHandle::send_frame(&msg, on_done)`, encoded on the worker by a \
                 `FixedLengthCodec` of the message size (its encoding is the message, so the \
                 bytes on the wire are the same)."
                .to_string(),
            Design::Naive => format!(
                "a bounded `crossbeam-channel` per loop ({CHANNEL_PER_WORKER} × workers) plus one \
                 eventfd write per message; the loop reads the eventfd, drains the channel, writes."
            ),
        };
        let _ = writeln!(out, "- **{}**: {how}", design.name());
    }
    let _ = writeln!(out);
    let _ = write!(
        out,
        "| offered | design | msgs/s | spread | p50 µs | p99 µs | p99.9 µs | loop CPU µs/msg | worker CPU µs/msg | process CPU µs/msg | doorbell writes/msg | loop switches per 1k msgs | loop run-queue wait µs/msg |"
    );
    if let Some(p) = peer {
        let name = names[p];
        let _ = write!(out, " msgs/s ÷ {name} | loop+worker CPU/msg ÷ {name} |");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "|{}",
        "---|".repeat(13 + if peer.is_some() { 2 } else { 0 })
    );
    for (ri, &rate) in cfg.rates.iter().enumerate() {
        for (k, runs) in results[ri].iter().enumerate() {
            let mut side = LoopSide::default();
            for r in runs {
                side.merge(&r.loop_side);
            }
            let window: f64 = runs.iter().map(|r| r.window.as_secs_f64()).sum();
            let msgs = side.in_window.max(1) as f64;
            let sum = |f: fn(&RunReport) -> Duration| -> f64 {
                runs.iter().map(|r| f(r).as_secs_f64()).sum::<f64>() * 1e6 / msgs
            };
            let rates: Vec<f64> = runs.iter().map(RunReport::rate).collect();
            let (dw, dm) = runs.iter().fold((0, 0), |(a, b), r| {
                (a + r.doorbell_writes, b + r.doorbell_messages)
            });
            let (vol, invol) = runs.iter().fold((0, 0), |(a, b), r| {
                (a + r.loop_switches.0, b + r.loop_switches.1)
            });
            let runqueue: u64 = runs.iter().map(|r| r.loop_runqueue_ns).sum();
            let rate_total = side.in_window as f64 / window;
            let lw = sum(|r| r.loop_cpu) + sum(|r| r.worker_cpu);
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.0} / {:.0} | {:.1} |",
                if rate == 0.0 {
                    "unpaced".to_string()
                } else {
                    crate::bench::thousands(rate)
                },
                names[k],
                crate::bench::thousands(rate_total),
                spread(&rates).map_or("—".to_string(), |s| format!("{:.0} %", s * 100.0)),
                side.latency.quantile(0.5) as f64 / 1e3,
                side.latency.quantile(0.99) as f64 / 1e3,
                side.latency.quantile(0.999) as f64 / 1e3,
                sum(|r| r.loop_cpu),
                sum(|r| r.worker_cpu),
                sum(|r| r.process_cpu),
                dw as f64 / dm.max(1) as f64,
                vol as f64 * 1e3 / msgs,
                invol as f64 * 1e3 / msgs,
                runqueue as f64 / 1e3 / msgs
            );
            if let Some(p) = peer {
                if p == k {
                    let _ = write!(out, " — | — |");
                } else {
                    let peer_runs = &results[ri][p];
                    let pmsgs: u64 = peer_runs.iter().map(|r| r.loop_side.in_window).sum();
                    let pwindow: f64 = peer_runs.iter().map(|r| r.window.as_secs_f64()).sum();
                    let plw: f64 = peer_runs
                        .iter()
                        .map(|r| (r.loop_cpu + r.worker_cpu).as_secs_f64())
                        .sum::<f64>()
                        * 1e6
                        / pmsgs.max(1) as f64;
                    let per_round_rate: Vec<f64> = runs
                        .iter()
                        .zip(peer_runs)
                        .map(|(a, b)| a.rate() / b.rate())
                        .collect();
                    let per_round_cpu: Vec<f64> = runs
                        .iter()
                        .zip(peer_runs)
                        .map(|(a, b)| {
                            a.per_msg(a.loop_cpu + a.worker_cpu)
                                / b.per_msg(b.loop_cpu + b.worker_cpu)
                        })
                        .collect();
                    let _ = write!(
                        out,
                        " {} | {} |",
                        ratio_cell(rate_total, pmsgs as f64 / pwindow, &per_round_rate),
                        ratio_cell(lw, plw, &per_round_cpu)
                    );
                }
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "\nmsgs/s: writes completed (written or queued on the socket) per second in the measured \
         windows; latency: from just before the worker's send to the completion on the loop; CPU: \
         utime + stime of the loop threads, the worker threads and the whole process (which also \
         holds the reader) over the window, per message; doorbell writes/msg: eventfd writes over \
         loop messages in the window (ringloop: `LoopStats::doorbell_writes` ÷ `LoopStats::messages`; \
         naive: 1 by construction); loop switches: voluntary (the loop blocked) / involuntary \
         (it was preempted) context switches of the loop threads per 1,000 messages; run-queue \
         wait: time the loop threads were runnable but waiting for a CPU \
         (`/proc/self/task/TID/schedstat`), per message. Ratios: median of \
         the per-round ratios, their range in brackets."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_connection_and_sequence() {
        let p = Pattern::new(64);
        let mut m = vec![0u8; 64];
        fill_message(&p, 5, 9, &mut m);
        assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(m[4..12].try_into().unwrap()), 9);
    }

    #[test]
    fn both_designs_deliver_and_verify() {
        for design in [Design::Ringloop, Design::Framed, Design::Naive] {
            let cfg = Config {
                loops: 2,
                workers: 2,
                conns: 4,
                size: 32,
                warmup: Duration::from_millis(50),
                duration: Duration::from_millis(200),
                rates: vec![0.0],
                rounds: 1,
                designs: vec![design],
                title: None,
            };
            let r = run_once(&cfg, design, 0.0).unwrap();
            assert!(r.loop_side.in_window > 0, "{design:?}");
            assert_eq!(r.loop_side.failed, 0);
        }
    }
}
