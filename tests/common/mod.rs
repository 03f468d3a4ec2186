//! Helpers shared by the integration tests: running an engine on a thread,
//! deterministic payloads, clients with bounded waits, fd counting.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringloop::{
    Action, CloseReason, Conn, Datagram, Engine, EngineBuilder, EngineHandle, EventHandler,
    SockAddr,
};

/// Generous bound on any single wait, so a broken server fails a test
/// instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running engine and the thread running it.
pub struct Running {
    pub engine: EngineHandle,
    pub thread: JoinHandle<ringloop::Result<()>>,
}

impl Running {
    pub fn start<H: EventHandler>(builder: EngineBuilder<H>) -> Running {
        let server = builder.build().expect("engine builds");
        let engine = server.handle();
        let thread = std::thread::spawn(move || server.run());
        Running { engine, thread }
    }

    /// The TCP address of listener `i`.
    pub fn tcp_addr(&self, i: usize) -> std::net::SocketAddr {
        match self.engine.local_addrs()[i].sock_addr() {
            SockAddr::Inet(sa) => *sa,
            other => panic!("listener {i} is not TCP: {other}"),
        }
    }

    /// Stops the engine and checks that `run` returned `Ok`.
    pub fn stop(self) {
        self.engine.stop();
        self.join();
    }

    /// Waits for `run` to return and checks it returned `Ok`.
    pub fn join(self) {
        self.thread
            .join()
            .expect("run thread")
            .expect("run returned an error");
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A TCP client with bounded reads and writes.
pub fn tcp_client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// A Unix-socket client with bounded reads and writes.
pub fn unix_client(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Writes `data` and reads back exactly as many bytes, then checks they match.
pub fn echo_round_trip<S: Read + Write>(stream: &mut S, data: &[u8]) {
    stream.write_all(data).expect("write");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read echo");
    assert!(back == data, "echo of {} bytes differs", data.len());
}

/// Reads until EOF (or an error such as a reset); returns what was read.
pub fn read_to_end<S: Read>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Polls `cond` until it holds or `PATIENCE` passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringloop-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Makes closing `s` send a reset (SO_LINGER with a zero timeout).
pub fn reset_on_close(s: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger).expect("SO_LINGER");
}

// ----- helpers added for the async-write, worker-pool and transport suites -----

impl Running {
    /// The UDP address of listener `i`.
    pub fn udp_addr(&self, i: usize) -> std::net::SocketAddr {
        self.tcp_addr(i)
    }

    /// The socket path of Unix listener `i`.
    pub fn unix_path(&self, i: usize) -> PathBuf {
        self.engine.local_addrs()[i]
            .sock_addr()
            .as_unix_path()
            .unwrap_or_else(|| panic!("listener {i} is not a Unix socket"))
            .to_path_buf()
    }

    /// Waits (bounded) for `run` to return by itself and checks it returned `Ok`.
    pub fn join_within_patience(self) {
        wait_until("run to return", || self.thread.is_finished());
        self.join();
    }
}

/// A UDP client on 127.0.0.1 with bounded reads.
pub fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP client");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Sends `data` as one datagram and checks that the reply is the same bytes.
pub fn udp_round_trip(s: &UdpSocket, to: std::net::SocketAddr, data: &[u8]) {
    s.send_to(data, to).expect("send a datagram");
    let mut buf = vec![0u8; 65536];
    let (n, from) = s.recv_from(&mut buf).expect("receive the echo");
    assert_eq!(from, to, "the reply comes from the server's address");
    assert!(
        buf[..n] == *data,
        "datagram echo of {} bytes differs ({n} back)",
        data.len()
    );
}

/// A stream that can be split into a reading and a writing half.
pub trait Duplex: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> Self;
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> Self {
        self.try_clone().expect("clone a TCP stream")
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> Self {
        self.try_clone().expect("clone a Unix stream")
    }
}

/// Writes every payload back to back from a second thread while this one
/// reads the echo, then checks it is their exact concatenation.
pub fn pipelined_echo<S: Duplex>(stream: &mut S, payloads: Vec<Vec<u8>>) {
    let expected: Vec<u8> = payloads.concat();
    let mut writer = stream.duplicate();
    let writing = std::thread::spawn(move || {
        for p in &payloads {
            writer.write_all(p).expect("write");
        }
    });
    let mut back = vec![0u8; expected.len()];
    stream.read_exact(&mut back).expect("read the echo");
    writing.join().expect("writer thread");
    if back != expected {
        let at = back.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "echo of {} bytes differs, first at byte {at:?}",
            expected.len()
        );
    }
}

/// A latch that blocks callers of [`Gate::wait`] until [`Gate::open`].
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cond.notify_all();
    }

    /// Waits until the gate opens; `false` if it stayed shut for `PATIENCE`.
    pub fn wait(&self) -> bool {
        let guard = self.open.lock().unwrap();
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, PATIENCE, |open| !*open)
            .unwrap();
        *guard
    }

    pub fn is_open(&self) -> bool {
        *self.open.lock().unwrap()
    }
}

type OpenHook<S> = Arc<dyn Fn(&mut Conn<'_, S>) -> Action + Send + Sync>;
type CloseHook<S> = Arc<dyn Fn(&mut Conn<'_, S>, &CloseReason) -> Action + Send + Sync>;
type DatagramHook = Arc<dyn Fn(&mut Datagram<'_>) -> Action + Send + Sync>;

/// A handler made of closures, shared by every loop (one clone per loop).
pub struct Hooks<S> {
    open: Option<OpenHook<S>>,
    traffic: Option<OpenHook<S>>,
    close: Option<CloseHook<S>>,
    datagram: Option<DatagramHook>,
}

impl<S> Clone for Hooks<S> {
    fn clone(&self) -> Self {
        Hooks {
            open: self.open.clone(),
            traffic: self.traffic.clone(),
            close: self.close.clone(),
            datagram: self.datagram.clone(),
        }
    }
}

impl<S: 'static> Hooks<S> {
    pub fn new() -> Self {
        Hooks {
            open: None,
            traffic: None,
            close: None,
            datagram: None,
        }
    }

    pub fn on_open(
        mut self,
        f: impl Fn(&mut Conn<'_, S>) -> Action + Send + Sync + 'static,
    ) -> Self {
        self.open = Some(Arc::new(f));
        self
    }

    pub fn on_traffic(
        mut self,
        f: impl Fn(&mut Conn<'_, S>) -> Action + Send + Sync + 'static,
    ) -> Self {
        self.traffic = Some(Arc::new(f));
        self
    }

    pub fn on_close(
        mut self,
        f: impl Fn(&mut Conn<'_, S>, &CloseReason) -> Action + Send + Sync + 'static,
    ) -> Self {
        self.close = Some(Arc::new(f));
        self
    }

    pub fn on_datagram(
        mut self,
        f: impl Fn(&mut Datagram<'_>) -> Action + Send + Sync + 'static,
    ) -> Self {
        self.datagram = Some(Arc::new(f));
        self
    }

    /// An engine builder whose every loop runs these hooks.
    pub fn builder(self) -> EngineBuilder<Hooks<S>> {
        Engine::builder(move |_| self.clone())
    }
}

impl<S: 'static> EventHandler for Hooks<S> {
    type State = S;

    fn on_open(&mut self, conn: &mut Conn<'_, S>) -> Action {
        self.open.as_ref().map_or(Action::None, |f| f(conn))
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, S>) -> Action {
        self.traffic.as_ref().map_or(Action::None, |f| f(conn))
    }

    fn on_close(&mut self, conn: &mut Conn<'_, S>, reason: &CloseReason) -> Action {
        self.close
            .as_ref()
            .map_or(Action::None, |f| f(conn, reason))
    }

    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        self.datagram.as_ref().map_or(Action::None, |f| f(dgram))
    }
}

/// The tests' echo server handler: stream bytes straight back
/// ([`echo_now`]), each datagram back to its sender.
pub struct Echo;

impl EventHandler for Echo {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        echo_now(conn)
    }
    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        let _ = dgram.reply(dgram.payload());
        Action::None
    }
}

/// Echoes every byte straight back.
pub fn echo_now<S>(conn: &mut Conn<'_, S>) -> Action {
    let data = conn.read_all();
    match conn.write(data) {
        Ok(_) => Action::None,
        Err(_) => Action::Close,
    }
}

/// A short name for a close reason.
pub fn reason_kind(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Eof => "eof",
        CloseReason::Reset => "reset",
        CloseReason::Error(_) => "error",
        CloseReason::Local => "local",
        CloseReason::Requested => "requested",
        CloseReason::Shutdown => "shutdown",
        _ => "other",
    }
}

/// Whether the command-line tool `cmd` (from Debian package `package`) can be
/// run. If it is missing and this process runs as root with `apt-get`
/// available, tries once to install the package (CI's `.ci/run` installs
/// them beforehand). On failure prints why the calling test is skipped.
pub fn have_tool(cmd: &str, package: &str) -> bool {
    use std::process::{Command, Stdio};
    let present = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present(cmd) {
        return true;
    }
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !present(cmd) && root && present("apt-get") {
        eprintln!("{cmd} not found: trying `apt-get install -y {package}`");
        let _ = Command::new("timeout")
            .args([
                "300",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
            ])
            .arg(package)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if present(cmd) {
        return true;
    }
    eprintln!(
        "SKIPPED: `{cmd}` is not installed (Debian package `{package}`); \
         install it to run this test (.ci/run does)"
    );
    false
}

/// Fetches `{base}/plaintext` and `{base}/` of the http example with one
/// curl run (`-i -v`, HTTP/1.1; `extra` comes first, e.g. `--cacert` and
/// `--resolve` for TLS), checks that curl succeeded and both answered
/// `200 OK` with the example's body, and returns curl's output and its
/// verbose log for the caller's own checks.
pub fn curl_plaintext_twice(base: &str, extra: &[String]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "-v", "--http1.1", "--max-time", "20"])
        .args(extra)
        .arg(format!("{base}/plaintext"))
        .arg(format!("{base}/"))
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl failed: {stderr}");
    assert_eq!(stdout.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("Hello, World!").count(), 2, "{stdout}");
    (stdout, stderr)
}

pub mod certs;

/// A small deterministic generator (xorshift) for batch, packet and split
/// sizes.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Makes the child started by `cmd` die (SIGKILL) if this test process dies
/// first, so no example outlives a failed test.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec and only makes the
    // prctl(2) system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unused_imports)] // each test binary uses a different subset
pub use example::example_binary;
pub mod child;
pub mod deploy_example;
pub mod example;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children
/// started afterwards inherit it) and returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard.max(soft)
}

/// Open file descriptors of process `pid`.
pub fn fd_count_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `kB` line (`VmRSS`, `VmHWM`, ...) of `/proc/PID/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    proc_status_bytes(pid, "VmRSS")
}

/// User plus system CPU time of every thread of `pid` (fields 14 and 15 of
/// `/proc/PID/stat`; one clock tick of resolution).
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a ')' in stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3, so field N is fields[N - 3].
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// The byte at `offset` of an endless deterministic stream (different per
/// `seed`): lets a reader check every byte of a long push without keeping
/// a copy of it.
pub fn stream_byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 56) as u8 ^ (offset >> 12) as u8
}

/// `len` bytes of [`stream_byte`]'s stream for `seed`, from `offset`.
pub fn stream_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| stream_byte(seed, offset + i))
        .collect()
}

/// Checks that `got` is the stream for `seed` at `offset`; panics naming the
/// first differing byte.
pub fn check_stream(seed: u64, offset: u64, got: &[u8]) {
    for (i, &b) in got.iter().enumerate() {
        let at = offset + i as u64;
        let want = stream_byte(seed, at);
        assert!(
            b == want,
            "stream {seed}: byte {at} is {b:#04x}, expected {want:#04x}"
        );
    }
}

/// Warnings and errors logged by ringloop in this process (once
/// [`capture_logs`] was called).
pub fn captured_logs() -> Vec<String> {
    LOGS.lock().unwrap().clone()
}

static LOGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGS.lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

/// Installs a logger keeping ringloop's warnings and errors for
/// [`captured_logs`] (idempotent).
pub fn capture_logs() {
    static CAPTURE: Capture = Capture;
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

// ----- peers for client-side tests -----

/// A TCP address on 127.0.0.1 where nothing listens: a port the kernel just
/// handed out and took back (connects to it are refused).
pub fn closed_tcp_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// A listener on 127.0.0.1 that never accepts, with a backlog of 0 whose
/// accept queue is kept full: Linux drops further SYNs (`ListenOverflows`),
/// so a connect to it neither succeeds nor fails until the connector gives
/// up. A black hole on loopback without touching the firewall.
pub struct BlackHole {
    pub addr: std::net::SocketAddr,
    _listener: std::os::fd::OwnedFd,
    _queued: Vec<TcpStream>,
}

impl BlackHole {
    /// Builds one and proves it: a plain connect to it must time out.
    pub fn new() -> Result<BlackHole, String> {
        use nix::sys::socket::{
            bind, getsockname, listen, socket, AddressFamily, Backlog, SockFlag, SockType,
            SockaddrIn,
        };
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))
            .map_err(|e| format!("bind: {e}"))?;
        listen(&fd, Backlog::new(0).expect("backlog 0")).map_err(|e| format!("listen: {e}"))?;
        let addr: SockaddrIn =
            getsockname(fd.as_raw_fd()).map_err(|e| format!("getsockname: {e}"))?;
        let addr = std::net::SocketAddr::V4(addr.into());
        let mut queued = Vec::new();
        // The first connect fills the queue; the next one must hang.
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Ok(BlackHole {
                        addr,
                        _listener: fd,
                        _queued: queued,
                    })
                }
                Err(e) => return Err(format!("connect to the full listener failed: {e}")),
            }
        }
        Err(format!(
            "{} connects to a listener with backlog 0 that never accepts all \
             succeeded: this kernel does not drop SYNs on a full accept queue",
            queued.len()
        ))
    }
}

impl BlackHole {
    /// Turns the black hole into a server after `delay`: it accepts (and
    /// drops) the connections that filled its queue, then serves everything
    /// else with `serve`, one thread per connection. A connect attempted
    /// during the delay succeeds on a SYN retransmit (about 1 s after the
    /// first SYN): a backend that is slow to answer.
    pub fn open_after(
        self,
        delay: Duration,
        serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        let BlackHole {
            _listener: fd,
            _queued: queued,
            ..
        } = self;
        let fillers = queued.len();
        let serve = std::sync::Arc::new(serve);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let listener = std::net::TcpListener::from(fd);
            for _ in 0..fillers {
                let _ = listener.accept();
            }
            drop(queued);
            // Serve until the test process ends (bounded by each
            // connection's own timeouts).
            while let Ok((s, _)) = listener.accept() {
                let _ = s.set_read_timeout(Some(PATIENCE));
                let _ = s.set_write_timeout(Some(PATIENCE));
                let serve = serve.clone();
                std::thread::spawn(move || serve(Box::new(s)));
            }
        })
    }
}

/// Where a test peer listens.
#[derive(Clone, Debug)]
pub enum PeerAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl PeerAddr {
    /// The address in ringloop's URL form.
    pub fn url(&self) -> String {
        match self {
            PeerAddr::Tcp(a) => format!("tcp://{a}"),
            PeerAddr::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// A blocking std connection to it, with bounded reads and writes.
    pub fn connect(&self) -> std::os::fd::OwnedFd {
        match self {
            PeerAddr::Tcp(a) => tcp_client(*a).into(),
            PeerAddr::Unix(p) => unix_client(p).into(),
        }
    }
}

/// A stream of a test peer, whatever its transport.
pub trait PeerStream: Read + Write + Send + 'static {
    /// Sends EOF; reading goes on.
    fn shutdown_write(&self) -> std::io::Result<()>;
    /// Closes abruptly: a reset for TCP, both directions shut for Unix.
    fn abort(self: Box<Self>);
}

impl PeerStream for TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
    fn abort(self: Box<Self>) {
        reset_on_close(&self);
    }
}

impl PeerStream for UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
    fn abort(self: Box<Self>) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// What a [`StdServer`] runs for each connection, on its own thread.
pub type Serve = std::sync::Arc<dyn Fn(Box<dyn PeerStream>) + Send + Sync>;

/// A plain std stream server (TCP or Unix) on 127.0.0.1, one thread per
/// connection running its `Serve`. Stops accepting when dropped; connection
/// threads end with their connections (reads and writes are bounded by
/// `PATIENCE`).
pub struct StdServer {
    pub addr: PeerAddr,
    /// Connections accepted so far.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl StdServer {
    /// A TCP server on a fresh port.
    pub fn tcp(serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static) -> StdServer {
        Self::tcp_on("127.0.0.1:0".parse().unwrap(), serve)
    }

    /// A TCP server on `addr` (port 0 picks one).
    pub fn tcp_on(
        addr: std::net::SocketAddr,
        serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static,
    ) -> StdServer {
        Self::tcp_with(addr, None, serve)
    }

    /// A TCP server whose connections have `SO_RCVBUF` and `SO_SNDBUF` of
    /// `buffers` bytes (set on the listener, before any connection
    /// arrives, so accepted sockets inherit them), when given.
    pub fn tcp_with(
        addr: std::net::SocketAddr,
        buffers: Option<usize>,
        serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static,
    ) -> StdServer {
        let l = std::net::TcpListener::bind(addr).expect("bind a TCP peer");
        if let Some(n) = buffers {
            use nix::sys::socket::{setsockopt, sockopt};
            setsockopt(&l, sockopt::RcvBuf, &n).expect("SO_RCVBUF");
            setsockopt(&l, sockopt::SndBuf, &n).expect("SO_SNDBUF");
        }
        let addr = PeerAddr::Tcp(l.local_addr().unwrap());
        Self::start(addr, None, std::sync::Arc::new(serve), move || {
            let (s, _) = l.accept()?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(PATIENCE))?;
            s.set_write_timeout(Some(PATIENCE))?;
            Ok(Box::new(s) as Box<dyn PeerStream>)
        })
    }

    /// A Unix-socket server in a fresh directory.
    pub fn unix(serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static) -> StdServer {
        let dir = TempDir::new("std-peer");
        let path = dir.join("peer.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind a Unix peer");
        let addr = PeerAddr::Unix(path);
        Self::start(addr, Some(dir), std::sync::Arc::new(serve), move || {
            let (s, _) = l.accept()?;
            s.set_read_timeout(Some(PATIENCE))?;
            s.set_write_timeout(Some(PATIENCE))?;
            Ok(Box::new(s) as Box<dyn PeerStream>)
        })
    }

    /// A TCP or Unix server, as `unix` says.
    pub fn new(
        unix: bool,
        serve: impl Fn(Box<dyn PeerStream>) + Send + Sync + 'static,
    ) -> StdServer {
        if unix {
            Self::unix(serve)
        } else {
            Self::tcp(serve)
        }
    }

    fn start(
        addr: PeerAddr,
        dir: Option<TempDir>,
        serve: Serve,
        mut accept: impl FnMut() -> std::io::Result<Box<dyn PeerStream>> + Send + 'static,
    ) -> StdServer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            std::thread::spawn(move || loop {
                let conn = accept();
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(conn));
                }
            })
        };
        StdServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The TCP address (panics for a Unix server).
    pub fn tcp_addr(&self) -> std::net::SocketAddr {
        match &self.addr {
            PeerAddr::Tcp(a) => *a,
            PeerAddr::Unix(p) => panic!("{} is not TCP", p.display()),
        }
    }
}

impl Drop for StdServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept call so the thread sees the flag.
        let _ = match &self.addr {
            PeerAddr::Tcp(a) => TcpStream::connect(a).map(drop),
            PeerAddr::Unix(p) => UnixStream::connect(p).map(drop),
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `Serve` body: echoes every byte; on the peer's EOF, finishes writing and
/// half-closes in turn (so a half-closing client gets all its bytes and then
/// EOF).
pub fn echo_stream(mut s: Box<dyn PeerStream>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown_write();
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A UDP echo on 127.0.0.1 (one datagram back for each one in), stopped
/// when dropped.
pub struct UdpEcho {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start() -> UdpEcho {
        use std::sync::atomic::Ordering;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
        };
        UdpEcho {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP client split into a buffered reader and a writer, Nagle off, with
/// bounded waits (the HTTP and kv tests add their protocol's calls to it).
pub struct SplitClient {
    pub reader: std::io::BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl SplitClient {
    pub fn connect(addr: std::net::SocketAddr) -> SplitClient {
        let s = tcp_client(addr);
        s.set_nodelay(true).unwrap();
        SplitClient {
            reader: std::io::BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write a request");
    }
}

/// Edge-triggered mode for `b` (with `chunk` bytes per connection and turn,
/// if given), on the epoll driver: the mode has no meaning on io_uring
/// (a multishot receive reports every arrival), so a suite run on io_uring
/// (`RINGLOOP_BACKEND=io-uring`) says so and runs these cases on epoll.
pub fn edge_triggered_on_epoll<H: EventHandler>(
    b: EngineBuilder<H>,
    chunk: Option<usize>,
) -> EngineBuilder<H> {
    if std::env::var("RINGLOOP_BACKEND").is_ok_and(|v| v != "epoll") {
        eprintln!("edge-triggered mode has no meaning on io_uring: this case runs on epoll");
    }
    let b = b.backend(ringloop::Backend::Epoll);
    match chunk {
        Some(bytes) => b.edge_triggered_chunk(bytes),
        None => b.edge_triggered(true),
    }
}

/// Whether io_uring works here (else the io_uring-only tests say so and
/// check the fallback instead).
pub fn uring_available() -> bool {
    match ringloop::Engine::builder(|_| Echo)
        .backend(ringloop::Backend::IoUring)
        .loops(1)
        .build()
    {
        Ok(_) => true,
        Err(ringloop::Error::BackendUnavailable { reason, .. }) => {
            eprintln!("io_uring unavailable here ({reason}): skipping the io_uring part");
            false
        }
        Err(e) => panic!("unexpected build error: {e}"),
    }
}
