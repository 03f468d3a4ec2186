//! The load generator: closed-loop echo clients, verified byte by byte, on
//! mio (the default) or on io_uring ([`crate::load_uring`], `--client uring`).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::connect::open_confirmed;
use crate::hist::Histogram;
use crate::pattern::Pattern;
use crate::{procfs, Result};

/// What to run.
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// UDP datagrams (see [`crate::udp_load`]) instead of TCP connections.
    pub udp: bool,
    /// Concurrent connections, each with one message in flight.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Time run before measuring, to let both sides settle.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Client threads; connections are spread over them.
    pub threads: usize,
    /// Server process whose CPU time is sampled over the measured window.
    pub server_pid: Option<u32>,
    /// More processes sampled over the same window (a proxy's backend;
    /// TCP only).
    pub other_pids: Vec<u32>,
    /// How the TCP client does its I/O.
    pub client: Client,
}

/// How the TCP echo client does its I/O; the closed loop, the messages, the
/// checks and the report are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Client {
    /// Readiness on mio (edge-triggered epoll): a write, then reads until
    /// one returns `EAGAIN`. The figures published before session 7 used it.
    #[default]
    Mio,
    /// Completions on io_uring: a send and a receive entry per message, one
    /// `io_uring_enter` per batch of completions (see [`crate::load_uring`]).
    Uring,
    /// The io_uring client with one multishot receive per connection into
    /// provided buffers instead of a receive per message (a little cheaper
    /// at 512 B here, dearer at 16 KiB: see `crate::load_uring`).
    UringMultishot,
}

impl Client {
    /// Parses `mio` or `uring`.
    pub fn parse(text: &str) -> Result<Client> {
        match text {
            "mio" => Ok(Client::Mio),
            "uring" | "io-uring" => Ok(Client::Uring),
            "uring-multishot" => Ok(Client::UringMultishot),
            other => {
                Err(format!("--client {other:?}: expected mio, uring or uring-multishot").into())
            }
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Client::Mio => "mio",
            Client::Uring => "io_uring",
            Client::UringMultishot => "io_uring (multishot receives)",
        }
    }
}

/// What a run measured, over the measured window only.
pub struct LoadReport {
    /// Round trips completed.
    pub messages: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Round-trip times of those messages.
    pub latency: Histogram,
    /// Connections lost to I/O errors or an unexpected close.
    pub errors: u64,
    /// First few error descriptions.
    pub error_samples: Vec<String>,
    /// Live connections that completed no round trip in the window.
    pub stalled: usize,
    /// Server CPU time in the window, if a pid was given.
    pub server_cpu: Option<Duration>,
    /// The user-space part of `server_cpu` (utime alone), if measured.
    pub server_user: Option<Duration>,
    /// CPU time of each of `other_pids` in the window (`None`: not measured).
    pub other_cpu: Vec<Option<Duration>>,
    /// The load generator's own CPU time in the window.
    pub client_cpu: Duration,
    /// UDP only: datagrams sent in the window that got no reply in time.
    pub datagrams_lost: u64,
    /// UDP only: replies that came after their datagram was counted lost.
    pub datagrams_late: u64,
    /// The 1-minute load average when the run started, if the caller noted
    /// it (`harness bench` does).
    pub load_at_start: Option<f64>,
}

impl LoadReport {
    /// A report with nothing in it yet, for a window of `window`.
    pub fn empty(window: Duration) -> LoadReport {
        LoadReport {
            messages: 0,
            window,
            latency: Histogram::default(),
            errors: 0,
            error_samples: Vec::new(),
            stalled: 0,
            server_cpu: None,
            server_user: None,
            other_cpu: Vec::new(),
            client_cpu: Duration::ZERO,
            datagrams_lost: 0,
            datagrams_late: 0,
            load_at_start: None,
        }
    }

    /// Round trips per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.window.as_secs_f64()
    }

    /// CPU per message in microseconds.
    pub fn per_message_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }

    /// Human-readable one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:.0} msgs/s, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs, client CPU {:.2} µs/msg",
            self.rate(),
            self.latency.quantile(0.50) as f64 / 1e3,
            self.latency.quantile(0.99) as f64 / 1e3,
            self.latency.max() as f64 / 1e3,
            self.per_message_us(self.client_cpu),
        );
        if let Some(cpu) = self.server_cpu {
            s += &format!(", server CPU {:.2} µs/msg", self.per_message_us(cpu));
        }
        s += &format!(", errors {}, stalled {}", self.errors, self.stalled);
        if self.datagrams_lost + self.datagrams_late > 0 {
            s += &format!(
                ", datagrams lost {} ({:.3} %), late {}",
                self.datagrams_lost,
                100.0 * self.datagrams_lost as f64
                    / (self.messages + self.datagrams_lost).max(1) as f64,
                self.datagrams_late
            );
        }
        s
    }
}

/// Opens the connections, runs warm-up plus measured window, and reports.
/// Returns an error at once if any echoed byte differs from what was sent.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport> {
    if cfg.udp {
        return crate::udp_load::run(cfg);
    }
    if cfg.conns == 0 || cfg.size == 0 || cfg.threads == 0 {
        return Err("--conns, --size and --threads must be at least 1".into());
    }
    if cfg.duration.is_zero() {
        return Err("the measured time must be above zero".into());
    }
    let streams = open_confirmed(cfg.addr, cfg.conns, Duration::from_secs(30))?;
    let mut groups: Vec<Vec<(usize, TcpStream)>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for (id, s) in streams.into_iter().enumerate() {
        groups[id % cfg.threads].push((id, s));
    }
    let pattern = Pattern::new(cfg.size);
    let abort = AtomicBool::new(false);
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;

    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let (pattern, abort) = (&pattern, &abort);
                let client = cfg.client;
                scope.spawn(move || {
                    let r = match client {
                        Client::Mio => drive(group, pattern, start, end, abort),
                        Client::Uring | Client::UringMultishot => crate::load_uring::drive(
                            group,
                            pattern,
                            start,
                            end,
                            abort,
                            client == Client::UringMultishot,
                        ),
                    };
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();

        let sample = |pid: Option<u32>| pid.map(procfs::cpu_time).transpose();
        let others = || -> Vec<Option<Duration>> {
            cfg.other_pids
                .iter()
                .map(|&pid| procfs::cpu_time(pid).ok())
                .collect()
        };
        let user = || {
            cfg.server_pid
                .and_then(|pid| procfs::user_system_time(pid).ok().map(|(user, _)| user))
        };
        sleep_until(start, &abort);
        let (server0, client0) = (sample(cfg.server_pid), procfs::cpu_time(std::process::id()));
        let user0 = user();
        let others0 = others();
        sleep_until(end, &abort);
        let (server1, client1) = (sample(cfg.server_pid), procfs::cpu_time(std::process::id()));
        let user1 = user();
        let others1 = others();

        let mut report = LoadReport::empty(end - start);
        report.server_user = user0.zip(user1).map(|(a, b)| b.saturating_sub(a));
        report.other_cpu = others0
            .iter()
            .zip(&others1)
            .map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
            .collect();
        let results = workers
            .into_iter()
            .map(|w| w.join().expect("load thread panicked"));
        finish(report, results, (server0, client0), (server1, client1))
    })
}

/// The CPU time samples taken at one edge of the measured window: the
/// server's (if a pid was given) and the load generator's own.
pub(crate) type CpuSample = (Result<Option<Duration>>, Result<Duration>);

/// Adds every load thread's figures to `report`, then the CPU used over the
/// window; fails with the first thread's error. Shared by TCP and UDP load.
pub(crate) fn finish(
    mut report: LoadReport,
    results: impl IntoIterator<Item = Result<ThreadReport>>,
    (server0, client0): CpuSample,
    (server1, client1): CpuSample,
) -> Result<LoadReport> {
    let mut first_error = None;
    for result in results {
        match result {
            Ok(t) => {
                report.messages += t.messages;
                report.latency.merge(&t.latency);
                report.errors += t.errors;
                report.stalled += t.stalled;
                report.datagrams_lost += t.lost;
                report.datagrams_late += t.late;
                for e in t.error_samples {
                    if report.error_samples.len() < 5 {
                        report.error_samples.push(e);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // A server that died during the run has no CPU figure; its lost
    // connections are what the report is about.
    report.server_cpu = match (server0, server1) {
        (Ok(Some(a)), Ok(Some(b))) => Some(b.saturating_sub(a)),
        (Err(e), _) | (_, Err(e)) => {
            report
                .error_samples
                .push(format!("server CPU not measured: {e}"));
            None
        }
        _ => None,
    };
    report.client_cpu = client1?.saturating_sub(client0?);
    Ok(report)
}

/// Sleeps until `t`, or until a worker has failed.
pub fn sleep_until(t: Instant, abort: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= t || abort.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(20)));
    }
}

struct Conn {
    id: usize,
    stream: TcpStream,
    /// Sequence number of the message in flight.
    seq: u64,
    /// Bytes of it written so far.
    sent: usize,
    /// Bytes of its echo read so far.
    received: usize,
    started: Instant,
    /// Round trips finished inside the measured window.
    in_window: u64,
    dead: bool,
}

/// What one load thread measured (TCP or UDP).
#[derive(Default)]
pub(crate) struct ThreadReport {
    pub(crate) messages: u64,
    pub(crate) latency: Histogram,
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    pub(crate) stalled: usize,
    /// UDP only: datagrams with no reply in time, and replies after that.
    pub(crate) lost: u64,
    pub(crate) late: u64,
}

impl ThreadReport {
    /// Counts connection `conn` lost for `why`, keeping the first few
    /// reasons.
    pub(crate) fn lost(&mut self, conn: usize, why: &str) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(format!("connection {conn}: {why}"));
        }
    }
}

/// Why a connection stopped.
pub(crate) enum Stop {
    /// The connection failed; counted, the run goes on.
    Lost(String),
    /// The echo was wrong; the run fails.
    Corrupt(String),
}

fn drive(
    group: Vec<(usize, TcpStream)>,
    pattern: &Pattern,
    start: Instant,
    end: Instant,
    abort: &AtomicBool,
) -> Result<ThreadReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut conns = Vec::with_capacity(group.len());
    for (i, (id, mut stream)) in group.into_iter().enumerate() {
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            id,
            stream,
            seq: 0,
            sent: 0,
            received: 0,
            started: now,
            in_window: 0,
            dead: false,
        });
    }
    let mut report = ThreadReport::default();
    let mut buf = vec![0u8; pattern.message(0, 0).len()];
    let mut step = |c: &mut Conn, report: &mut ThreadReport| -> Result<()> {
        match pump(c, pattern, &mut buf, start, end, report) {
            Ok(()) => Ok(()),
            Err(Stop::Corrupt(msg)) => Err(msg.into()),
            Err(Stop::Lost(msg)) => {
                c.dead = true;
                report.lost(c.id, &msg);
                Ok(())
            }
        }
    };

    for c in &mut conns {
        step(c, &mut report)?;
    }
    loop {
        let now = Instant::now();
        if now >= end || abort.load(Ordering::Relaxed) {
            break;
        }
        match poll.poll(
            &mut events,
            Some((end - now).min(Duration::from_millis(50))),
        ) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            let c = &mut conns[event.token().0];
            if !c.dead {
                step(c, &mut report)?;
            }
        }
    }
    report.stalled = conns.iter().filter(|c| !c.dead && c.in_window == 0).count();
    Ok(report)
}

/// Writes and reads on one connection until both would block (the sockets
/// are edge-triggered), starting the next message whenever one completes.
fn pump(
    c: &mut Conn,
    pattern: &Pattern,
    buf: &mut [u8],
    start: Instant,
    end: Instant,
    report: &mut ThreadReport,
) -> std::result::Result<(), Stop> {
    let size = buf.len();
    loop {
        let msg = pattern.message(c.id, c.seq);
        let mut progress = false;
        if c.sent < size {
            match c.stream.write(&msg[c.sent..]) {
                Ok(0) => return Err(Stop::Lost("write returned 0".into())),
                Ok(n) => {
                    c.sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(Stop::Lost(format!("write: {e}"))),
            }
        }
        match c.stream.read(&mut buf[..size - c.received]) {
            Ok(0) => return Err(Stop::Lost("server closed the connection".into())),
            Ok(n) => {
                check_echo(c.id, c.seq, msg, c.received, &buf[..n], c.sent)?;
                c.received += n;
                progress = true;
                if c.received == size {
                    let now = Instant::now();
                    if count_round_trip(now, c.started, start, end, report) {
                        c.in_window += 1;
                    }
                    c.seq += 1;
                    c.sent = 0;
                    c.received = 0;
                    c.started = now;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(Stop::Lost(format!("read: {e}"))),
        }
        if !progress {
            return Ok(());
        }
    }
}

/// Checks that `got`, just read on connection `conn` while message `seq`
/// (`msg`) was in flight, is the next part of its echo: bytes
/// `from..from + got.len()` of `msg`, none of them beyond the `sent` bytes
/// handed to the kernel so far.
pub(crate) fn check_echo(
    conn: usize,
    seq: u64,
    msg: &[u8],
    from: usize,
    got: &[u8],
    sent: usize,
) -> std::result::Result<(), Stop> {
    let n = got.len();
    if from + n > sent {
        return Err(Stop::Corrupt(format!(
            "connection {conn} message #{seq}: server sent {} bytes back but only {sent} were sent",
            from + n,
        )));
    }
    if *got != msg[from..from + n] {
        let at = (0..n).find(|&i| got[i] != msg[from + i]).unwrap_or(0);
        return Err(Stop::Corrupt(format!(
            "connection {conn} message #{seq} byte {} of {}: sent 0x{:02x}, echoed 0x{:02x}",
            from + at,
            msg.len(),
            msg[from + at],
            got[at]
        )));
    }
    Ok(())
}

/// Counts a round trip that started at `started` and ended at `now` if it
/// ended inside the measured window `start..end`; returns whether it did.
pub(crate) fn count_round_trip(
    now: Instant,
    started: Instant,
    start: Instant,
    end: Instant,
    report: &mut ThreadReport,
) -> bool {
    if now < start || now >= end {
        return false;
    }
    report.messages += 1;
    report
        .latency
        .record((now - started).as_nanos().min(u64::MAX as u128) as u64);
    true
}
