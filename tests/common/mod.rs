//! Helpers shared by the integration tests: running an engine on a thread,
//! deterministic payloads, clients with bounded waits, fd counting.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringloop::{Engine, EngineBuilder, EventHandler, SockAddr};

/// Generous bound on any single wait, so a broken server fails a test
/// instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running engine and the thread running it.
pub struct Running {
    pub engine: Engine,
    pub thread: JoinHandle<ringloop::Result<()>>,
}

impl Running {
    pub fn start<H: EventHandler>(builder: EngineBuilder<H>) -> Running {
        let server = builder.build().expect("engine builds");
        let engine = server.engine();
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
        self.engine.stop().expect("stop");
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
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
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
