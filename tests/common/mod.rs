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
