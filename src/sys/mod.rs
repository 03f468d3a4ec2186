//! The platform layer: every raw file-descriptor call ringloop makes lives
//! under this module, and nothing above it calls `nix` directly.
//!
//! The backend (Linux, through `nix`) provides:
//!
//! * [`poller`]: readiness notification, an epoll instance with `Token`s,
//!   level- or edge-triggered `Interest`s, and a reusable `Events` buffer.
//! * [`socket`]: creating, binding, listening on, accepting and connecting
//!   TCP, UDP and Unix-domain sockets (always non-blocking and
//!   close-on-exec), reading their addresses and pending errors, and setting
//!   their options (`TCP_NODELAY`, keep-alive, buffer sizes, linger).
//! * [`io`]: moving bytes: `read`, `write`, `readv`, `writev` on streams and
//!   `recv_from`, `send_to` on datagram sockets. `EINTR` is retried here,
//!   `EAGAIN` surfaces as [`std::io::ErrorKind::WouldBlock`], and no write can
//!   raise `SIGPIPE`.
//!
//! Conversions between the kernel's socket addresses and the public
//! [`SockAddr`] are private to this module.
//!
//! What this layer must never do: keep state about connections, block
//! (every socket is non-blocking; only [`poller::Poller::wait`] may sleep,
//! and only as long as it is told), panic on an OS error or on bad input, or
//! leak a file descriptor (every descriptor is an [`std::os::fd::OwnedFd`]
//! from the moment the kernel hands it over).
//! * [`signal`]: blocking the server signals and waiting for them.
//! * [`memory`]: returning freed heap memory to the system.
//! * [`handoff`]: descriptors that cross processes: inherited listeners
//!   (`fd://N`, systemd) and `SCM_RIGHTS` messages (upgrades).

pub(crate) mod backend;
pub(crate) mod handoff;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod poller;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod uring;

use std::io as stdio;
use std::path::Path;

use nix::sys::socket::{SockaddrLike, SockaddrStorage, UnixAddr};

use crate::addr::SockAddr;

/// Converts an address the kernel filled in into a [`SockAddr`].
///
/// Abstract Unix addresses (a Linux extension ringloop never creates) have no
/// path and come back as `SockAddr::Unix(None)`. Families ringloop does not
/// speak are an `EAFNOSUPPORT` error.
fn from_storage(storage: &SockaddrStorage) -> stdio::Result<SockAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Ok(SockAddr::Inet(std::net::SocketAddrV4::from(*v4).into()));
    }
    if let Some(v6) = storage.as_sockaddr_in6() {
        return Ok(SockAddr::Inet(std::net::SocketAddrV6::from(*v6).into()));
    }
    if let Some(unix) = storage.as_unix_addr() {
        return Ok(SockAddr::Unix(unix.path().map(Path::to_path_buf)));
    }
    Err(stdio::Error::from_raw_os_error(
        nix::errno::Errno::EAFNOSUPPORT as i32,
    ))
}

/// Builds the kernel form of a Unix-domain path; a path that does not fit
/// `sun_path` is `ENAMETOOLONG`.
fn unix_addr(path: &Path) -> stdio::Result<UnixAddr> {
    Ok(UnixAddr::new(path)?)
}

/// Calls `f` with the kernel form of `addr`. An unnamed Unix address cannot be
/// the target of a call and is `InvalidInput`.
fn with_raw_addr<T>(
    addr: &SockAddr,
    f: impl FnOnce(&dyn SockaddrLike) -> stdio::Result<T>,
) -> stdio::Result<T> {
    match addr {
        SockAddr::Inet(inet) => f(&SockaddrStorage::from(*inet)),
        SockAddr::Unix(Some(path)) => f(&unix_addr(path)?),
        SockAddr::Unix(None) => Err(stdio::Error::new(
            stdio::ErrorKind::InvalidInput,
            "an unnamed Unix socket address cannot be used as a destination",
        )),
    }
}

/// Helpers shared by the tests of every sys file. Every wait is bounded by
/// [`testutil::BOUND`] and panics past it instead of hanging.
#[cfg(test)]
pub(crate) mod testutil {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::poller::{Event, Events, Interest, Poller};
    use super::{io as sysio, socket};
    use crate::addr::SockAddr;

    /// The longest any test waits for the kernel.
    pub(crate) const BOUND: Duration = Duration::from_secs(10);

    /// 127.0.0.1, any port.
    pub(crate) fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// The IP address inside `addr`; panics on a Unix address.
    pub(crate) fn inet(addr: SockAddr) -> SocketAddr {
        match addr {
            SockAddr::Inet(a) => a,
            other => panic!("expected an IP address, got {other}"),
        }
    }

    /// Waits until `fd` reports readiness for `interest` (or an error) and
    /// returns the event.
    pub(crate) fn wait_ready(fd: BorrowedFd<'_>, interest: Interest) -> Event {
        let poller = Poller::new().unwrap();
        poller.add(fd, 0, interest).unwrap();
        let mut events = Events::with_capacity(2);
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if let Some(ev) = events.iter().next() {
                return ev;
            }
        }
        panic!("descriptor never became ready for {interest:?}");
    }

    /// Accepts one connection, waiting for it to arrive.
    pub(crate) fn accept_one(listener: &OwnedFd) -> (OwnedFd, SockAddr) {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(pair) = socket::accept(listener.as_fd()).unwrap() {
                return pair;
            }
            assert!(Instant::now() < deadline, "accept never completed");
            wait_ready(listener.as_fd(), Interest::READABLE);
        }
    }

    /// A connected TCP pair (client, server) over 127.0.0.1.
    pub(crate) fn tcp_pair() -> (OwnedFd, OwnedFd) {
        let listener = socket::tcp_listener(loopback(), &socket::ListenOptions::default()).unwrap();
        let addr = inet(socket::local_addr(listener.as_fd()).unwrap());
        let (client, _) = socket::tcp_connect(addr).unwrap();
        let (server, _) = accept_one(&listener);
        (client, server)
    }

    /// Reads exactly `n` bytes, waiting for them to arrive.
    pub(crate) fn read_exact(fd: &OwnedFd, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + BOUND;
        while out.len() < n {
            match sysio::read(fd.as_fd(), &mut buf) {
                Ok(0) => panic!("unexpected end of stream after {} bytes", out.len()),
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "timed out reading");
                    wait_ready(fd.as_fd(), Interest::READABLE);
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        out
    }

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!(
                "ringloop-{tag}-{}-{}-{nanos}",
                std::process::id(),
                // Relaxed: only uniqueness matters, which the RMW guarantees.
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir(&path).expect("create temp dir");
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
