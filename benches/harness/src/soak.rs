//! `harness soak`: ringloop's `soak-server` as a child process on loopback,
//! under a mix of traffic for a fixed time, then a report of its memory,
//! descriptors and every error seen.
//!
//! Every worker is a loop that stops by itself at the deadline:
//!
//! * **echo** — the closed-loop load generator (`load`): N connections,
//!   512 B messages, every byte verified;
//! * **churn** — connect, sometimes echo 1–4 KiB, close or reset;
//! * **slow readers** — 8 MiB echoed (the server passes its high-water mark
//!   and stops reading) or pushed by the server through a handle (its write
//!   completions are held), read back slowly and verified;
//! * **idle** — batches of silent connections that the server's idle
//!   timeout must close, neither early nor much later;
//! * **resets** — a reset in the middle of a large echo or push.
//!
//! A sampler reads the server's `VmRSS` and descriptor count from `/proc`
//! every 200 ms. At the end, with every client gone, the server's
//! descriptors must come back to their idle count, and it must exit 0 on
//! SIGTERM with no error logged.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::load::{self, LoadConfig, LoadReport};
use crate::machine::loadavg;
use crate::{procfs, stream, Result};

/// Settings of one soak run.
pub struct SoakConfig {
    /// The `soak-server` binary.
    pub server: PathBuf,
    /// How long the traffic runs.
    pub duration: Duration,
    /// The server's event loops.
    pub loops: usize,
    /// The server's idle timeout.
    pub idle_timeout: Duration,
    /// Connections of the echo load.
    pub echo_conns: usize,
}

/// Bytes each slow-reader session moves.
const SLOW_BYTES: usize = 8 << 20;
/// Silent connections per idle batch.
const IDLE_BATCH: usize = 20;
/// Most error messages kept for the report.
const ERROR_SAMPLES: usize = 20;

/// What the workers count; shared by all of them.
#[derive(Default)]
struct Tally {
    churn_cycles: AtomicU64,
    churn_errors: AtomicU64,
    slow_sessions: AtomicU64,
    slow_bytes: AtomicU64,
    slow_errors: AtomicU64,
    idle_closed: AtomicU64,
    idle_errors: AtomicU64,
    resets: AtomicU64,
    reset_errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < ERROR_SAMPLES {
            samples.push(what);
        }
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The server as a child process, its output collected.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl ServerProcess {
    fn start(cfg: &SoakConfig) -> Result<ServerProcess> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut cmd = Command::new(&cfg.server);
        cmd.args([
            format!("tcp://{addr}"),
            "--loops".into(),
            cfg.loops.to_string(),
            "--idle-timeout-ms".into(),
            cfg.idle_timeout.as_millis().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: runs in the forked child before exec and only makes the
        // prctl(2) system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cfg.server.display()))?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut readers = Vec::new();
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for output in outputs {
            let lines = lines.clone();
            readers.push(thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("log:") {
                        eprintln!("    [soak-server] {line}");
                    }
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }));
        }
        let mut server = ServerProcess {
            child,
            addr,
            lines,
            readers,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("soak-server exited ({status}) before listening").into());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(format!("soak-server did not listen on {addr} within 10 s").into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn fds(&self) -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }

    /// SIGTERM, then SIGKILL after 10 s; returns the exit problem, if any,
    /// and everything the server printed.
    fn stop(mut self) -> Result<(Option<String>, Vec<String>)> {
        if let Some(status) = self.child.try_wait()? {
            let problem = format!("soak-server exited by itself: {status}");
            return Ok((Some(problem), self.output()));
        }
        // Not reaped yet (only this value waits on it), so the pid is ours.
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let problem = loop {
            if let Some(status) = self.child.try_wait()? {
                break (!status.success())
                    .then(|| format!("soak-server did not exit cleanly: {status}"));
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                break Some("soak-server was still running 10 s after SIGTERM".into());
            }
            thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ok((problem, self.output()))
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Makes closing `s` send a reset.
fn reset_on_close(s: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger);
}

/// Writes `data` and checks it comes back whole.
fn echo(s: &mut TcpStream, data: &[u8]) -> std::result::Result<(), String> {
    s.write_all(data).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back != data {
        return Err(format!("echo of {} bytes differs", data.len()));
    }
    Ok(())
}

/// Connect, maybe echo 1–4 KiB, then close or reset; at most ~2,000 a second.
fn churn(addr: SocketAddr, deadline: Instant, tally: &Tally) {
    let mut i = 0u64;
    let mut paced = Instant::now();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        i += 1;
        if i % 100 == 0 {
            let due = paced + Duration::from_millis(50);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            paced = Instant::now();
        }
        let mut s = match client(addr, Duration::from_secs(10)) {
            Ok(s) => s,
            Err(e) => {
                tally.error(&tally.churn_errors, format!("churn connect: {e}"));
                continue;
            }
        };
        if i % 4 == 1 || i % 4 == 2 {
            let n = 1024 + (i as usize * 37) % 3072;
            stream::fill(i, 0, &mut buf[..n]);
            if let Err(e) = echo(&mut s, &buf[..n]) {
                tally.error(&tally.churn_errors, format!("churn cycle {i}: {e}"));
            }
        }
        if i % 4 >= 2 {
            reset_on_close(&s);
        }
        tally.churn_cycles.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads `len` bytes of stream `seed` in 64 KiB pieces, pausing between
/// them, and checks every byte.
fn read_slowly(
    s: &mut TcpStream,
    seed: u64,
    len: usize,
    tally: &Tally,
) -> std::result::Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0usize;
    while offset < len {
        let want = buf.len().min(len - offset);
        let n = match s.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(format!(
                    "closed by the server after {offset} of {len} bytes"
                ))
            }
            Ok(n) => n,
            Err(e) => return Err(format!("read after {offset} of {len} bytes: {e}")),
        };
        if let Some(at) = stream::mismatch(seed, offset as u64, &buf[..n]) {
            return Err(format!("byte {at} of stream {seed} differs"));
        }
        offset += n;
        tally.slow_bytes.fetch_add(n as u64, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(3));
    }
    Ok(())
}

/// Slow-reader sessions, alternately echoed and pushed.
fn slow_readers(addr: SocketAddr, deadline: Instant, tally: &Tally, id: u64) {
    let mut session = 0u64;
    while Instant::now() < deadline {
        session += 1;
        let seed = (id << 32) | session;
        let outcome = (|| -> std::result::Result<(), String> {
            let mut s = client(addr, Duration::from_secs(30)).map_err(|e| e.to_string())?;
            if session % 2 == 0 {
                // The server pushes; its completions are held while we lag.
                s.write_all(format!("PUSH {SLOW_BYTES}\n").as_bytes())
                    .map_err(|e| e.to_string())?;
                return read_slowly(&mut s, 0, SLOW_BYTES, tally);
            }
            // Echoed: we write far more than the high-water mark while
            // reading slowly, so the server stops reading us at times.
            let mut w = s.try_clone().map_err(|e| e.to_string())?;
            let writer = thread::spawn(move || -> std::io::Result<()> {
                let mut chunk = vec![0u8; 64 * 1024];
                let mut offset = 0;
                while offset < SLOW_BYTES {
                    stream::fill(seed, offset as u64, &mut chunk);
                    w.write_all(&chunk)?;
                    offset += chunk.len();
                }
                Ok(())
            });
            let read = read_slowly(&mut s, seed, SLOW_BYTES, tally);
            if read.is_err() {
                let _ = s.shutdown(Shutdown::Both);
            }
            let written = writer.join().map_err(|_| "writer panicked".to_string())?;
            read?;
            written.map_err(|e| format!("write: {e}"))
        })();
        match outcome {
            Ok(()) => {
                tally.slow_sessions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.error(
                &tally.slow_errors,
                format!("slow reader {id}/{session}: {e}"),
            ),
        }
    }
}

/// Batches of connections that echo once and fall silent: each must be
/// closed by the server's idle timeout, not before it and not more than 5 s
/// after it.
fn idle(addr: SocketAddr, deadline: Instant, idle_timeout: Duration, tally: &Tally) {
    let slack = Duration::from_millis(50);
    // The last batch must have time to be timed out.
    let last_start = deadline.checked_sub(idle_timeout + Duration::from_secs(1));
    while last_start.is_some_and(|t| Instant::now() < t) {
        let mut batch = Vec::new();
        for i in 0..IDLE_BATCH {
            let sent_at = Instant::now();
            let opened = client(addr, idle_timeout + Duration::from_secs(5))
                .map_err(|e| e.to_string())
                .and_then(|mut s| echo(&mut s, &[i as u8]).map(|()| s));
            match opened {
                Ok(s) => batch.push((s, sent_at)),
                Err(e) => tally.error(&tally.idle_errors, format!("idle connect/echo: {e}")),
            }
        }
        for (mut s, sent_at) in batch {
            let mut byte = [0u8];
            match s.read(&mut byte) {
                Ok(0) => {
                    let after = sent_at.elapsed();
                    if after + slack < idle_timeout {
                        tally.error(
                            &tally.idle_errors,
                            format!("idle connection closed after {after:?}, before the {idle_timeout:?} timeout"),
                        );
                    } else {
                        tally.idle_closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => tally.error(
                    &tally.idle_errors,
                    "idle connection got a stray byte".into(),
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    tally.error(
                        &tally.idle_errors,
                        format!(
                            "idle connection still open {:?} after its last byte",
                            sent_at.elapsed()
                        ),
                    );
                }
                Err(e) => tally.error(&tally.idle_errors, format!("idle connection: {e}")),
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Resets in the middle of a large echo or of a push.
fn resets(addr: SocketAddr, deadline: Instant, tally: &Tally) {
    let mut i = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < deadline {
        i += 1;
        let outcome = (|| -> std::result::Result<(), String> {
            let mut s = client(addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
            let mut head = vec![0u8; 16 * 1024];
            if i % 2 == 0 {
                s.write_all(format!("PUSH {}\n", 64 << 20).as_bytes())
                    .map_err(|e| e.to_string())?;
                s.read_exact(&mut head).map_err(|e| format!("push: {e}"))?;
                if stream::mismatch(0, 0, &head).is_some() {
                    return Err("pushed bytes differ".into());
                }
            } else {
                stream::fill(i, 0, &mut buf);
                s.write_all(&buf).map_err(|e| e.to_string())?;
                s.read_exact(&mut head).map_err(|e| format!("echo: {e}"))?;
                if head[..] != buf[..head.len()] {
                    return Err("echoed bytes differ".into());
                }
            }
            reset_on_close(&s);
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                tally.resets.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.error(&tally.reset_errors, format!("reset {i}: {e}")),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Peaks of what the sampler read.
#[derive(Default, Clone, Copy)]
struct Peaks {
    rss: u64,
    fds: usize,
}

/// Runs the soak and prints the markdown report on stdout (progress on
/// stderr). Returns whether it was clean.
pub fn run(cfg: &SoakConfig) -> Result<bool> {
    if !cfg.server.is_file() {
        return Err(format!(
            "the soak server is not at {}; build it with `cargo build --release -p ringloop-harness`",
            cfg.server.display()
        )
        .into());
    }
    let load_before = loadavg();
    let started_at = now_utc();
    let server = ServerProcess::start(cfg)?;
    let addr = server.addr;
    let pid = server.pid();
    eprintln!(
        "soak-server pid {pid} on {addr}; running for {:?}",
        cfg.duration
    );

    // Baseline: every thread of the server up (one connection served), no
    // connection open.
    let mut probe = client(addr, Duration::from_secs(10))?;
    echo(&mut probe, b"probe")?;
    drop(probe);
    thread::sleep(Duration::from_millis(300));
    let fds_idle = server.fds()?;
    let rss_idle = procfs::vm_rss(pid)?;
    let cpu_before = procfs::cpu_time(pid)?;

    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let echo_load = {
        let cfg = LoadConfig {
            addr,
            udp: false,
            conns: cfg.echo_conns,
            size: 512,
            warmup: Duration::ZERO,
            duration: cfg.duration,
            threads: 1,
            server_pid: None,
            other_pids: Vec::new(),
            client: load::Client::Mio,
        };
        thread::spawn(move || load::run(&cfg).map_err(|e| e.to_string()))
    };
    let mut workers = Vec::new();
    let spawn = |f: Box<dyn FnOnce() + Send>| thread::spawn(f);
    {
        let t = tally.clone();
        workers.push(spawn(Box::new(move || churn(addr, deadline, &t))));
    }
    for id in 0..2 {
        let t = tally.clone();
        workers.push(spawn(Box::new(move || {
            slow_readers(addr, deadline, &t, id)
        })));
    }
    {
        let t = tally.clone();
        let timeout = cfg.idle_timeout;
        workers.push(spawn(Box::new(move || idle(addr, deadline, timeout, &t))));
    }
    {
        let t = tally.clone();
        workers.push(spawn(Box::new(move || resets(addr, deadline, &t))));
    }

    // Sample until the deadline.
    let mut peaks = Peaks {
        rss: rss_idle,
        fds: fds_idle,
    };
    let mut next_progress = start + Duration::from_secs(30);
    let mut sampler_problems = Vec::new();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        match (procfs::vm_rss(pid), server.fds()) {
            (Ok(rss), Ok(fds)) => {
                peaks.rss = peaks.rss.max(rss);
                peaks.fds = peaks.fds.max(fds);
            }
            (Err(e), _) => {
                sampler_problems.push(format!("the server vanished: {e}"));
                break;
            }
            (_, Err(e)) => {
                sampler_problems.push(format!("the server vanished: {e}"));
                break;
            }
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(30);
            eprintln!(
                "  {:>4.0} s: VmRSS {} KiB (peak {}), fds {} (peak {}); churn {}, slow {} ({} MiB), idle closed {}, resets {}; errors {}",
                start.elapsed().as_secs_f64(),
                procfs::vm_rss(pid).unwrap_or(0) / 1024,
                peaks.rss / 1024,
                server.fds().unwrap_or(0),
                peaks.fds,
                get(&tally.churn_cycles),
                get(&tally.slow_sessions),
                get(&tally.slow_bytes) >> 20,
                get(&tally.idle_closed),
                get(&tally.resets),
                error_count(&tally),
            );
        }
    }
    for w in workers {
        if w.join().is_err() {
            sampler_problems.push("a soak worker panicked".into());
        }
    }
    let echo_report = echo_load.join().map_err(|_| "the echo load panicked")?;
    let traffic_time = start.elapsed();

    // Every client is gone: the server's descriptors must come back.
    let settle_deadline = Instant::now() + Duration::from_secs(15);
    let mut fds_end = server.fds().unwrap_or(usize::MAX);
    while fds_end != fds_idle && Instant::now() < settle_deadline {
        thread::sleep(Duration::from_millis(50));
        fds_end = server.fds().unwrap_or(usize::MAX);
    }
    let mut problems = sampler_problems;
    if fds_end != fds_idle {
        problems.push(format!(
            "the server holds {fds_end} descriptors with no client, {fds_idle} before the run"
        ));
    }
    let rss_end = procfs::vm_rss(pid).unwrap_or(0);
    let hwm = vm_hwm(pid).unwrap_or(0);
    let cpu = procfs::cpu_time(pid).unwrap_or(cpu_before) - cpu_before;
    let (stop_problem, output) = server.stop()?;
    problems.extend(stop_problem);
    let final_line = output
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("final: "))
        .map(str::to_string);
    let logged = |name: &str| -> Option<u64> {
        let line = final_line.as_deref()?;
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..].split_whitespace().next()?.parse().ok()
    };
    match (logged("errors"), logged("warnings")) {
        (Some(0), Some(_)) => {}
        (Some(n), _) => problems.push(format!("the server logged {n} error(s)")),
        _ => problems.push("the server printed no final counters".into()),
    }
    let echo = match echo_report {
        Ok(r) => {
            if r.errors > 0 || r.stalled > 0 {
                problems.push(format!(
                    "echo load: {} connection(s) lost, {} stalled: {:?}",
                    r.errors, r.stalled, r.error_samples
                ));
            }
            Some(r)
        }
        Err(e) => {
            problems.push(format!("echo load failed: {e}"));
            None
        }
    };
    let errors = error_count(&tally);
    let clean = problems.is_empty() && errors == 0;
    let report = Report {
        cfg,
        started_at: &started_at,
        load_before: &load_before,
        traffic_time,
        echo: echo.as_ref(),
        tally: &tally,
        fds_idle,
        fds_end,
        peaks,
        rss_idle,
        rss_end,
        hwm,
        cpu,
        final_line: final_line.as_deref(),
        warnings: logged("warnings").unwrap_or(0),
        push_errors: logged("push_errors").unwrap_or(0),
        problems: &problems,
        clean,
    };
    print!("{}", report.render());
    Ok(clean)
}

fn error_count(t: &Tally) -> u64 {
    get(&t.churn_errors) + get(&t.slow_errors) + get(&t.idle_errors) + get(&t.reset_errors)
}

/// Peak resident memory of `pid` (`VmHWM`), bytes.
fn vm_hwm(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM")?;
    Ok(kib * 1024)
}

/// The current UTC time as `YYYY-MM-DD HH:MM`.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (proleptic Gregorian), for the report's date only.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

struct Report<'a> {
    cfg: &'a SoakConfig,
    started_at: &'a str,
    load_before: &'a str,
    traffic_time: Duration,
    echo: Option<&'a LoadReport>,
    tally: &'a Tally,
    fds_idle: usize,
    fds_end: usize,
    peaks: Peaks,
    rss_idle: u64,
    rss_end: u64,
    hwm: u64,
    cpu: Duration,
    final_line: Option<&'a str>,
    warnings: u64,
    push_errors: u64,
    problems: &'a [String],
    clean: bool,
}

impl Report<'_> {
    fn render(&self) -> String {
        let t = self.tally;
        let secs = self.traffic_time.as_secs_f64();
        let mut out = String::new();
        let _ = writeln!(out, "## Soak (loopback)\n");
        let _ = writeln!(
            out,
            "{}: {:.0} s of traffic against `soak-server --loops {} --idle-timeout-ms {}` \
             (water marks 1 MiB / 256 KiB, pause reading); {} CPUs, Linux {}; load average {} before, {} after.\n",
            self.started_at,
            secs,
            self.cfg.loops,
            self.cfg.idle_timeout.as_millis(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            self.load_before,
            loadavg(),
        );
        let _ = writeln!(out, "| workload | what it does | done | errors |");
        let _ = writeln!(out, "|---|---|---|---|");
        match self.echo {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "| echo | {} connections, 512 B messages, closed loop, every byte verified | {} round trips ({:.0}/s, p99 {:.0} µs) | {} lost, {} stalled |",
                    self.cfg.echo_conns,
                    e.messages,
                    e.rate(),
                    e.latency.quantile(0.99) as f64 / 1e3,
                    e.errors,
                    e.stalled
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| echo | {} connections | failed | — |",
                    self.cfg.echo_conns
                );
            }
        }
        let _ = writeln!(
            out,
            "| churn | connect; half echo 1–4 KiB; half close, half reset (≤ 2,000/s) | {} cycles ({:.0}/s) | {} |",
            get(&t.churn_cycles),
            get(&t.churn_cycles) as f64 / secs,
            get(&t.churn_errors)
        );
        let _ = writeln!(
            out,
            "| slow readers | 2 at a time: 8 MiB echoed (client writes past the high-water mark) or pushed through a handle, read in 64 KiB steps 3 ms apart, verified | {} sessions, {} MiB | {} |",
            get(&t.slow_sessions),
            get(&t.slow_bytes) >> 20,
            get(&t.slow_errors)
        );
        let _ = writeln!(
            out,
            "| idle | batches of {IDLE_BATCH} silent connections; each must be closed by the idle timeout, not early, within 5 s of it | {} closed by the server | {} |",
            get(&t.idle_closed),
            get(&t.idle_errors)
        );
        let _ = writeln!(
            out,
            "| resets | reset after 16 KiB of a 256 KiB echo or of a 64 MiB push | {} | {} |",
            get(&t.resets),
            get(&t.reset_errors)
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| server | idle, before | peak | end, no client |");
        let _ = writeln!(out, "|---|---|---|---|");
        let _ = writeln!(
            out,
            "| VmRSS | {} KiB | {} KiB (VmHWM {} KiB) | {} KiB |",
            self.rss_idle / 1024,
            self.peaks.rss / 1024,
            self.hwm / 1024,
            self.rss_end / 1024
        );
        let _ = writeln!(
            out,
            "| descriptors | {} | {} | {} |",
            self.fds_idle, self.peaks.fds, self.fds_end
        );
        let _ = writeln!(
            out,
            "\nServer CPU over the run: {:.1} s ({:.0} % of one core). Server warnings logged: {}; \
             pusher writes that failed (pushes cut short by a reset): {}.",
            self.cpu.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / secs,
            self.warnings,
            self.push_errors
        );
        if let Some(line) = self.final_line {
            let _ = writeln!(out, "\nServer counters at exit: {line}");
        }
        let samples = t.samples.lock().unwrap_or_else(|e| e.into_inner());
        if !self.problems.is_empty() || !samples.is_empty() {
            let _ = writeln!(out, "\n**Problems:**\n");
            for p in self.problems.iter().chain(samples.iter()) {
                let _ = writeln!(out, "- {p}");
            }
        }
        let _ = writeln!(
            out,
            "\nResult: **{}**",
            if self.clean { "clean" } else { "FAILED" }
        );
        out
    }
}
