//! A ringloop server in a child process, for the tests that need a process
//! of its own: a low descriptor limit (EMFILE), `SIGPIPE` at its default
//! (fatal) action, more descriptors than one process may hold (10,000
//! connections on each side of loopback), or an undisturbed view of one
//! server's memory, descriptors and CPU time in `/proc`.
//!
//! # How
//!
//! The test binary runs itself again. Every test binary that uses this
//! module has a test named `child_server`, ignored in normal runs, that
//! calls [`serve_if_child`]. [`ChildServer::start`] runs
//! `<this binary> child_server --exact --ignored --nocapture --test-threads=1`
//! with `RINGLOOP_TEST_CHILD=1` and the settings in the environment;
//! without that variable the ignored test does nothing.
//!
//! The child listens on `tcp://127.0.0.1:0`, prints `CHILD LISTENING addr`
//! once every loop has booted, and then talks over its standard streams:
//!
//! * stdin `stats` → stdout `CHILD STATS connections=… opened=… …` (the
//!   engine's [`total_stats`](ringloop::EngineHandle::total_stats));
//! * ringloop's warnings and errors → stdout `CHILD LOG WARN …`;
//! * stdin closed (or `stop`) → `EngineHandle::stop`, then the process exits 0.
//!
//! The parent also sets `PR_SET_PDEATHSIG`, so a child never outlives the
//! test thread that started it, and [`ChildServer`]'s `Drop` kills it.
//!
//! # What the child serves
//!
//! Echo, except on a connection whose first bytes are `PUSH <bytes>\n`: a
//! pusher thread then writes `<bytes>` bytes of [`stream_byte`]'s stream
//! (seed 0) to it through its handle, 64 KiB per `async_write`, each write
//! only after the previous one completed — the back-pressure contract:
//! completions are held while the connection is over its high-water mark.
//! The pusher stops at the first failed write.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::libc;
use ringloop::{
    Action, Conn, ConnHandle, Engine, EngineHandle, EventHandler, LoopContext, SockAddr, WaterMarks,
};

use super::{stream_bytes, PATIENCE};

const CHILD_ENV: &str = "RINGLOOP_TEST_CHILD";
const LOOPS_ENV: &str = "RINGLOOP_CHILD_LOOPS";
const REUSEPORT_ENV: &str = "RINGLOOP_CHILD_REUSEPORT";
const MARKS_ENV: &str = "RINGLOOP_CHILD_MARKS";
const SIGPIPE_ENV: &str = "RINGLOOP_CHILD_SIGPIPE_DEFAULT";
const BUDGET_ENV: &str = "RINGLOOP_CHILD_BUDGET";
const SOCK_BUFFERS_ENV: &str = "RINGLOOP_CHILD_SOCK_BUFFERS";

/// Bytes per pusher write.
pub const PUSH_CHUNK: usize = 64 * 1024;

/// How the child server is set up.
#[derive(Clone, Debug)]
pub struct ChildSettings {
    pub loops: usize,
    pub reuse_port: bool,
    /// `RLIMIT_NOFILE` (soft and hard) set in the child before it execs.
    pub nofile: Option<u64>,
    /// Put `SIGPIPE` back to its default action (kill the process) before
    /// the engine starts, so a send without `MSG_NOSIGNAL` would be fatal.
    pub sigpipe_default: bool,
    /// Outbound water marks (high, low), else the engine's defaults.
    pub marks: Option<(usize, usize)>,
    /// The engine's buffer budget in bytes, else the default.
    pub budget: Option<usize>,
    /// `SO_RCVBUF` and `SO_SNDBUF` of the child's sockets, else the kernel's.
    pub sock_buffers: Option<usize>,
}

impl Default for ChildSettings {
    fn default() -> Self {
        Self {
            loops: 2,
            reuse_port: false,
            nofile: None,
            sigpipe_default: false,
            marks: None,
            budget: None,
            sock_buffers: None,
        }
    }
}

/// The child's [`ringloop::LoopStats`] totals, as it printed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildStats {
    pub connections: u64,
    pub opened: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub back_pressure_events: u64,
    pub timeouts: u64,
    pub buffered_bytes: u64,
    pub budget_pauses: u64,
    pub budget_closes: u64,
    /// Pusher writes that completed with an error.
    pub push_errors: u64,
    /// The child runs on io_uring (1) or epoll (0).
    pub io_uring: u64,
}

/// The parent's side: a running child server.
pub struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every `CHILD LOG` line received so far.
    logs: Vec<String>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts the child and waits until it listens.
    pub fn start(settings: ChildSettings) -> ChildServer {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(LOOPS_ENV, settings.loops.to_string())
        .env(REUSEPORT_ENV, if settings.reuse_port { "1" } else { "0" })
        .env(
            SIGPIPE_ENV,
            if settings.sigpipe_default { "1" } else { "0" },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some((high, low)) = settings.marks {
            cmd.env(MARKS_ENV, format!("{high},{low}"));
        }
        if let Some(budget) = settings.budget {
            cmd.env(BUDGET_ENV, budget.to_string());
        }
        if let Some(n) = settings.sock_buffers {
            cmd.env(SOCK_BUFFERS_ENV, n.to_string());
        }
        let nofile = settings.nofile;
        // SAFETY: runs in the forked child before exec and makes only the
        // async-signal-safe prctl(2) and setrlimit(2) system calls.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with the thread that started it, should a test fail.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(n) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the child server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut server = ChildServer {
            child,
            stdin,
            lines,
            logs: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = server.expect_line("CHILD LISTENING ");
        server.addr = line.parse().expect("a socket address");
        server
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next line starting with `prefix` (keeping `CHILD LOG`
    /// lines met on the way) and returns the rest of it.
    fn expect_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!("child server: no {prefix:?} line ({e:?})"),
            };
            // libtest's "test child_server ... " may precede the first line.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].to_string();
            }
            if let Some(at) = line.find("CHILD LOG ") {
                self.logs.push(line[at + 10..].to_string());
            }
        }
    }

    /// The engine's counters, asked for over stdin.
    pub fn stats(&mut self) -> ChildStats {
        let stdin = self.stdin.as_mut().expect("child still running");
        stdin
            .write_all(b"stats\n")
            .expect("ask the child for stats");
        stdin.flush().unwrap();
        let line = self.expect_line("CHILD STATS ");
        let mut stats = ChildStats::default();
        for field in line.split_whitespace() {
            let (name, value) = field.split_once('=').expect("name=value");
            let value: u64 = value.parse().expect("a number");
            match name {
                "connections" => stats.connections = value,
                "opened" => stats.opened = value,
                "bytes_in" => stats.bytes_in = value,
                "bytes_out" => stats.bytes_out = value,
                "back_pressure_events" => stats.back_pressure_events = value,
                "timeouts" => stats.timeouts = value,
                "buffered_bytes" => stats.buffered_bytes = value,
                "budget_pauses" => stats.budget_pauses = value,
                "budget_closes" => stats.budget_closes = value,
                "push_errors" => stats.push_errors = value,
                "io_uring" => stats.io_uring = value,
                _ => {}
            }
        }
        stats
    }

    /// Polls the child's stats until `cond` holds or `PATIENCE` passes.
    pub fn wait_stats(&mut self, what: &str, cond: impl Fn(&ChildStats) -> bool) -> ChildStats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = self.stats();
            if cond(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; child stats: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every warning or error the child's ringloop logged so far.
    pub fn logs(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            if let Some(at) = line.find("CHILD LOG ") {
                self.logs.push(line[at + 10..].to_string());
            }
        }
        self.logs.clone()
    }

    /// `true` while the child has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Resident memory of the child, in bytes.
    pub fn rss(&self) -> u64 {
        super::rss_of(self.pid())
    }

    /// Open descriptors of the child.
    pub fn fd_count(&self) -> usize {
        super::fd_count_of(self.pid())
    }

    /// User plus system CPU time the child has used.
    pub fn cpu_time(&self) -> Duration {
        super::cpu_time_of(self.pid())
    }

    /// Stops the child (closing its stdin stops its engine) and checks that
    /// it exited with status 0.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "child server exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child server did not stop within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Only this value waits on the child, so the pid is still ours.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- the child's side -----

/// Pusher writes that completed with an error, over the child's life.
static PUSH_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Echo, or a push through the handle for a `PUSH <n>\n` connection.
struct ChildHandler {
    /// Loops booted so far, and how many there are.
    booted: Arc<AtomicUsize>,
    loops: usize,
}

impl EventHandler for ChildHandler {
    /// Set once the connection's mode is known.
    type State = ();

    /// The last loop to boot announces the address: from then on every
    /// descriptor of the idle server exists.
    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        if self.booted.fetch_add(1, Ordering::SeqCst) + 1 == self.loops {
            let SockAddr::Inet(addr) = ctx.engine().local_addrs()[0].sock_addr() else {
                panic!("not a TCP listener")
            };
            println!("CHILD LISTENING {addr}");
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        if conn.state().is_none() {
            let head = conn.peek(conn.inbound_buffered());
            if head.starts_with(b"PUSH ") {
                let Some(end) = head.iter().position(|&b| b == b'\n') else {
                    return Action::None; // the rest of the line is still coming
                };
                let total: u64 = std::str::from_utf8(&head[5..end])
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .expect("PUSH <bytes>");
                conn.discard(end + 1);
                conn.set_state(());
                let handle = conn.handle();
                std::thread::spawn(move || push(handle, total));
                return Action::None;
            }
            conn.set_state(());
        }
        let data = conn.read_all();
        match conn.write(data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

/// Writes `total` bytes of the seed-0 stream, one completed write at a time.
fn push(handle: ConnHandle, total: u64) {
    let mut sent = 0u64;
    while sent < total {
        let n = PUSH_CHUNK.min((total - sent) as usize);
        let (tx, rx) = mpsc::channel();
        let queued = handle.async_write(stream_bytes(0, sent, n), move |r| {
            let _ = tx.send(r);
        });
        let outcome = rx.recv_timeout(Duration::from_secs(120));
        match (queued, outcome) {
            (Ok(()), Ok(Ok(_))) => sent += n as u64,
            _ => {
                PUSH_ERRORS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Prints ringloop's warnings and errors as `CHILD LOG` lines.
struct StdoutLogger;

impl log::Log for StdoutLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!("CHILD LOG {} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The body of each test binary's `child_server` test: serves until stdin
/// closes when run by [`ChildServer::start`], does nothing otherwise.
pub fn serve_if_child() {
    if !env_flag(CHILD_ENV) {
        return;
    }
    if env_flag(SIGPIPE_ENV) {
        // SAFETY: setting a signal's disposition to its default has no
        // preconditions; no handler of ours is involved.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    static LOGGER: StdoutLogger = StdoutLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);

    let loops: usize = std::env::var(LOOPS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let booted = Arc::new(AtomicUsize::new(0));
    let mut builder = Engine::builder(move |_| ChildHandler {
        booted: booted.clone(),
        loops,
    })
    .listen("tcp://127.0.0.1:0")
    .loops(loops)
    .reuse_port(env_flag(REUSEPORT_ENV))
    .workers(1);
    if let Ok(marks) = std::env::var(MARKS_ENV) {
        let (high, low) = marks.split_once(',').expect("high,low");
        builder =
            builder.write_water_marks(WaterMarks::new(high.parse().unwrap(), low.parse().unwrap()));
    }
    if let Ok(n) = std::env::var(SOCK_BUFFERS_ENV) {
        let n = n.parse().expect("a buffer size in bytes");
        builder = builder.recv_buffer_size(n).send_buffer_size(n);
    }
    if let Ok(budget) = std::env::var(BUDGET_ENV) {
        builder = builder.buffer_budget(budget.parse().expect("a budget in bytes"));
    }
    let server = builder.build().expect("child engine builds");
    let engine = server.handle();
    let control = {
        let engine = engine.clone();
        std::thread::spawn(move || control(engine))
    };
    server.run().expect("child engine ran cleanly");
    control.join().unwrap();
}

/// Answers `stats` on stdin; stops the engine on `stop` or end of input.
fn control(engine: EngineHandle) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "stats" => {
                let s = engine.total_stats();
                println!(
                    "CHILD STATS connections={} opened={} bytes_in={} bytes_out={} \
                     back_pressure_events={} timeouts={} buffered_bytes={} budget_pauses={} \
                     budget_closes={} push_errors={} io_uring={}",
                    engine.connection_count(),
                    s.connections_opened,
                    s.bytes_in,
                    s.bytes_out,
                    s.back_pressure_events,
                    s.timeouts,
                    s.buffered_bytes,
                    s.budget_pauses,
                    s.budget_closes,
                    PUSH_ERRORS.load(Ordering::Relaxed),
                    u8::from(engine.backend() == ringloop::Backend::IoUring)
                );
            }
            "stop" => break,
            _ => {}
        }
    }
    engine.stop();
}
