//! Socket setup: creating, binding, listening, accepting and connecting TCP,
//! UDP and Unix-domain stream sockets, reading their addresses and pending
//! errors, and their options.
//!
//! Owns every `socket`, `bind`, `listen`, `accept4`, `connect`,
//! `getsockopt`/`setsockopt`, `getsockname`/`getpeername` and `shutdown` call
//! of the crate. Every socket it creates is non-blocking and close-on-exec and
//! is an `OwnedFd` from the moment the kernel returns it. It never blocks,
//! never moves payload bytes (that is `sys::io`), never registers anything
//! with a poller, and never deletes a file that is not a dead Unix socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self as nixsock, sockopt, AddressFamily, Backlog, Shutdown, SockFlag, SockProtocol, SockType,
    SockaddrStorage,
};

use crate::addr::SockAddr;

/// How a listening (or bound datagram) socket is set up.
#[derive(Clone, Debug)]
pub(crate) struct ListenOptions {
    /// `SO_REUSEADDR` (IP sockets only): rebind a port whose old connections
    /// are still in `TIME_WAIT`. Default on.
    pub(crate) reuse_addr: bool,
    /// `SO_REUSEPORT` (IP sockets only): several sockets share one port and
    /// the kernel spreads the load. Default off.
    pub(crate) reuse_port: bool,
    /// The `listen` queue length. Negative is refused; values above
    /// `SOMAXCONN` ask for the system maximum (`net.core.somaxconn`).
    /// Default 1024. Ignored for datagram sockets.
    pub(crate) backlog: i32,
    /// `SO_RCVBUF`, set before `listen` so accepted sockets inherit it.
    pub(crate) recv_buffer: Option<usize>,
    /// `SO_SNDBUF`, set before `listen` so accepted sockets inherit it.
    pub(crate) send_buffer: Option<usize>,
    /// `TCP_NODELAY` on a TCP listener: Linux gives it to every socket the
    /// listener accepts, so they need no `setsockopt` of their own.
    /// Default off (the kernel's default).
    pub(crate) nodelay: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuse_addr: true,
            reuse_port: false,
            backlog: 1024,
            recv_buffer: None,
            send_buffer: None,
            nodelay: false,
        }
    }
}

/// TCP keep-alive timing. Each duration is sent to the kernel in whole
/// seconds, rounded up, and at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeepAlive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`).
    pub(crate) idle: Duration,
    /// Time between probes (`TCP_KEEPINTVL`).
    pub(crate) interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    pub(crate) count: u32,
}

const NONBLOCK_CLOEXEC: SockFlag = SockFlag::SOCK_NONBLOCK.union(SockFlag::SOCK_CLOEXEC);

fn family_of(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A new non-blocking, close-on-exec socket.
fn new_socket(
    family: AddressFamily,
    ty: SockType,
    protocol: Option<SockProtocol>,
) -> io::Result<OwnedFd> {
    Ok(nixsock::socket(family, ty, NONBLOCK_CLOEXEC, protocol)?)
}

/// Options shared by IP listeners and datagram sockets, applied before bind.
fn apply_ip_options(fd: &OwnedFd, addr: &SocketAddr, opts: &ListenOptions) -> io::Result<()> {
    if addr.is_ipv6() {
        // One family per socket: `[::]` must not silently take IPv4 too.
        nixsock::setsockopt(fd, sockopt::Ipv6V6Only, &true)?;
    }
    if opts.reuse_addr {
        nixsock::setsockopt(fd, sockopt::ReuseAddr, &true)?;
    }
    if opts.reuse_port {
        nixsock::setsockopt(fd, sockopt::ReusePort, &true)?;
    }
    apply_buffer_options(fd, opts)
}

fn apply_buffer_options(fd: &OwnedFd, opts: &ListenOptions) -> io::Result<()> {
    if let Some(n) = opts.recv_buffer {
        set_recv_buffer_size(fd.as_fd(), n)?;
    }
    if let Some(n) = opts.send_buffer {
        set_send_buffer_size(fd.as_fd(), n)?;
    }
    Ok(())
}

fn backlog(n: i32) -> io::Result<Backlog> {
    if n < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("listen backlog must not be negative (got {n})"),
        ));
    }
    if n > i32::from(Backlog::MAXCONN) {
        // -1: the kernel substitutes net.core.somaxconn.
        return Ok(Backlog::MAXALLOWABLE);
    }
    Ok(Backlog::new(n)?)
}

/// A TCP socket bound to `addr` and listening. IPv6 sockets are `V6ONLY`.
pub(crate) fn tcp_listener(addr: SocketAddr, opts: &ListenOptions) -> io::Result<OwnedFd> {
    let backlog = backlog(opts.backlog)?;
    let fd = new_socket(family_of(&addr), SockType::Stream, Some(SockProtocol::Tcp))?;
    apply_ip_options(&fd, &addr, opts)?;
    if opts.nodelay {
        set_nodelay(fd.as_fd(), true)?;
    }
    nixsock::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    nixsock::listen(&fd, backlog)?;
    Ok(fd)
}

/// A UDP socket bound to `addr`. IPv6 sockets are `V6ONLY`.
pub(crate) fn udp_socket(addr: SocketAddr, opts: &ListenOptions) -> io::Result<OwnedFd> {
    let fd = new_socket(
        family_of(&addr),
        SockType::Datagram,
        Some(SockProtocol::Udp),
    )?;
    apply_ip_options(&fd, &addr, opts)?;
    nixsock::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// A Unix-domain stream socket bound to `path` and listening.
///
/// If `path` is taken by a socket file that nobody listens on any more (left
/// by a crashed run: connecting to it is refused), the file is removed and
/// the bind retried once. If a server answers there, or `path` is anything
/// but a socket (a regular file, a directory, a symlink), this fails with
/// `AddrInUse` and touches nothing. (The probe is a real connect, so a live
/// server sees one connection open and close at once.) Another process
/// racing to bind the same path between the probe and the removal is not
/// guarded against. `reuse_addr`/`reuse_port` do not apply.
///
/// The socket file outlives the descriptor: removing it after closing is the
/// caller's business.
pub(crate) fn unix_listener(path: &Path, opts: &ListenOptions) -> io::Result<OwnedFd> {
    let backlog = backlog(opts.backlog)?;
    let addr = super::unix_addr(path)?;
    let fd = new_socket(AddressFamily::Unix, SockType::Stream, None)?;
    apply_buffer_options(&fd, opts)?;
    match nixsock::bind(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            remove_stale_socket(path)?;
            nixsock::bind(fd.as_raw_fd(), &addr)?;
        }
        Err(e) => return Err(e.into()),
    }
    nixsock::listen(&fd, backlog)?;
    Ok(fd)
}

/// Called when binding `path` found it in use: removes it if it is a dead
/// socket, otherwise explains why it must stay.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let in_use = |why: &str| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: {why}", path.display()),
        )
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Gone since the bind: nothing to remove, let the retry decide.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(in_use("exists and is not a socket; refusing to remove it"));
    }
    let probe = new_socket(AddressFamily::Unix, SockType::Stream, None)?;
    match nixsock::connect(probe.as_raw_fd(), &super::unix_addr(path)?) {
        Err(Errno::ECONNREFUSED) => {
            log::debug!("removing stale Unix socket file {}", path.display());
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(Errno::ENOENT) => Ok(()),
        // Connected, in progress, or a full backlog (EAGAIN): somebody lives
        // there.
        Ok(()) | Err(Errno::EINPROGRESS) | Err(Errno::EAGAIN) => {
            Err(in_use("a server is listening on it"))
        }
        Err(e) => Err(in_use(&format!("cannot tell whether it is in use ({e})"))),
    }
}

/// Accepts one pending connection, non-blocking and close-on-exec, with the
/// peer's address, which the kernel writes in the same `accept4` (as mio
/// does): no `getpeername` afterwards.
///
/// `Ok(None)` when nothing is pending. `EINTR` and `ECONNABORTED` (a peer that
/// gave up while queued) are retried. Every other error, including
/// `EMFILE`/`ENFILE`, is returned: the caller decides whether to back off.
#[allow(unsafe_code)] // accept4 with an address buffer; adopting the descriptor it returns
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, SockAddr)>> {
    use nix::libc;
    use nixsock::SockaddrLike;
    loop {
        // SAFETY: all-zero bytes are a valid `sockaddr_storage` (a plain C
        // struct of integers).
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` and `len` live across the call and `len` holds the
        // buffer's size, so the kernel writes at most that many bytes.
        let raw = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                NONBLOCK_CLOEXEC.bits(),
            )
        };
        if raw < 0 {
            match Errno::last() {
                Errno::EAGAIN => return Ok(None),
                Errno::EINTR | Errno::ECONNABORTED => continue,
                e => return Err(e.into()),
            }
        }
        // SAFETY: accept4 just returned `raw` as a new descriptor that nothing
        // else owns; wrapping it at once makes it closed on every path.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the kernel wrote a socket address of `len` bytes (at most
        // the buffer's size) into `storage`.
        let peer = unsafe {
            SockaddrStorage::from_raw(
                (&storage as *const libc::sockaddr_storage).cast(),
                Some(len),
            )
        };
        let peer = peer.ok_or_else(|| io::Error::from(Errno::EAFNOSUPPORT))?;
        return Ok(Some((fd, super::from_storage(&peer)?)));
    }
}

/// Starts a non-blocking connect. The flag says whether it completed at once
/// (`false` on `EINPROGRESS`: wait for writability, then `take_error`).
fn start_connect(fd: OwnedFd, addr: &dyn nixsock::SockaddrLike) -> io::Result<(OwnedFd, bool)> {
    match nixsock::connect(fd.as_raw_fd(), addr) {
        Ok(()) => Ok((fd, true)),
        // EINTR on a non-blocking connect: it goes on asynchronously.
        Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => Ok((fd, false)),
        Err(e) => Err(e.into()),
    }
}

/// A non-blocking TCP connect to `addr`; `true` if already connected.
pub(crate) fn tcp_connect(addr: SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let fd = new_socket(family_of(&addr), SockType::Stream, Some(SockProtocol::Tcp))?;
    start_connect(fd, &SockaddrStorage::from(addr))
}

/// A non-blocking TCP socket of `addr`'s family, not connected yet (the
/// caller connects it, through io_uring for instance).
pub(crate) fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    new_socket(family_of(&addr), SockType::Stream, Some(SockProtocol::Tcp))
}

/// A non-blocking Unix-domain stream connect to `path`; `true` if already
/// connected. A listener whose backlog is full makes this fail with
/// `WouldBlock` (Unix connects never go on in the background).
pub(crate) fn unix_connect(path: &Path) -> io::Result<(OwnedFd, bool)> {
    let addr = super::unix_addr(path)?;
    let fd = new_socket(AddressFamily::Unix, SockType::Stream, None)?;
    start_connect(fd, &addr)
}

/// A UDP socket connected to `addr` (a datagram "connection": it sends to and
/// receives from that peer only).
pub(crate) fn udp_connect(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = new_socket(
        family_of(&addr),
        SockType::Datagram,
        Some(SockProtocol::Udp),
    )?;
    nixsock::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// Makes an adopted socket non-blocking and close-on-exec, and says whether
/// it is a connected stream socket (the only kind that can be enrolled).
pub(crate) fn prepare_enrolled(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(nixsock::getsockopt(&fd, sockopt::SockType)? == SockType::Stream)
}

/// Takes (and clears) the socket's pending error (`SO_ERROR`).
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let code = nixsock::getsockopt(&fd, sockopt::SocketError)?;
    Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
}

/// The socket's own address.
pub(crate) fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SockAddr> {
    super::from_storage(&nixsock::getsockname::<SockaddrStorage>(fd.as_raw_fd())?)
}

/// The connected peer's address (`ENOTCONN` if there is none).
pub(crate) fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SockAddr> {
    super::from_storage(&nixsock::getpeername::<SockaddrStorage>(fd.as_raw_fd())?)
}

/// Turns Nagle's algorithm off (`true`) or on.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(nixsock::setsockopt(&fd, sockopt::TcpNoDelay, &on)?)
}

#[cfg(test)] // the getters serve this layer's tests; users read options through `Conn::socket`
/// Whether `TCP_NODELAY` is set.
pub(crate) fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(nixsock::getsockopt(&fd, sockopt::TcpNoDelay)?)
}

/// Whole seconds, rounded up, at least 1, saturating.
fn keepalive_secs(d: Duration) -> u32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// `None` turns keep-alive off; `Some` turns it on with the given timing.
/// Values the kernel refuses (Linux: idle and interval above 32767 s, count
/// 0 or above 127) are its `EINVAL`.
pub(crate) fn set_keepalive(fd: BorrowedFd<'_>, keepalive: Option<KeepAlive>) -> io::Result<()> {
    match keepalive {
        None => Ok(nixsock::setsockopt(&fd, sockopt::KeepAlive, &false)?),
        Some(k) => {
            nixsock::setsockopt(&fd, sockopt::TcpKeepIdle, &keepalive_secs(k.idle))?;
            nixsock::setsockopt(&fd, sockopt::TcpKeepInterval, &keepalive_secs(k.interval))?;
            nixsock::setsockopt(&fd, sockopt::TcpKeepCount, &k.count)?;
            Ok(nixsock::setsockopt(&fd, sockopt::KeepAlive, &true)?)
        }
    }
}

#[cfg(test)] // the getters serve this layer's tests; users read options through `Conn::socket`
/// The keep-alive setting as the kernel has it: `None` when off.
pub(crate) fn keepalive(fd: BorrowedFd<'_>) -> io::Result<Option<KeepAlive>> {
    if !nixsock::getsockopt(&fd, sockopt::KeepAlive)? {
        return Ok(None);
    }
    Ok(Some(KeepAlive {
        idle: Duration::from_secs(nixsock::getsockopt(&fd, sockopt::TcpKeepIdle)?.into()),
        interval: Duration::from_secs(nixsock::getsockopt(&fd, sockopt::TcpKeepInterval)?.into()),
        count: nixsock::getsockopt(&fd, sockopt::TcpKeepCount)?,
    }))
}

/// The kernel takes buffer sizes as a C int.
fn buffer_size(n: usize) -> io::Result<usize> {
    if n > i32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket buffer size {n} is larger than the kernel accepts"),
        ));
    }
    Ok(n)
}

/// Sets `SO_RCVBUF`. Linux doubles the value (for its bookkeeping) and caps
/// it at `net.core.rmem_max`; read it back to see what was granted.
pub(crate) fn set_recv_buffer_size(fd: BorrowedFd<'_>, n: usize) -> io::Result<()> {
    Ok(nixsock::setsockopt(&fd, sockopt::RcvBuf, &buffer_size(n)?)?)
}

#[cfg(test)] // the getters serve this layer's tests; users read options through `Conn::socket`
/// `SO_RCVBUF` as granted.
pub(crate) fn recv_buffer_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(nixsock::getsockopt(&fd, sockopt::RcvBuf)?)
}

/// Sets `SO_SNDBUF`. Linux doubles the value and caps it at
/// `net.core.wmem_max`.
pub(crate) fn set_send_buffer_size(fd: BorrowedFd<'_>, n: usize) -> io::Result<()> {
    Ok(nixsock::setsockopt(&fd, sockopt::SndBuf, &buffer_size(n)?)?)
}

#[cfg(test)] // the getters serve this layer's tests; users read options through `Conn::socket`
/// `SO_SNDBUF` as granted.
pub(crate) fn send_buffer_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(nixsock::getsockopt(&fd, sockopt::SndBuf)?)
}

/// Half-closes the write side: the peer reads end-of-stream once it has read
/// everything sent before.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nixsock::shutdown(fd.as_raw_fd(), Shutdown::Write)?)
}

/// `SO_LINGER` on with a zero timeout: closing the socket then discards
/// unsent data and sends a reset instead of a graceful FIN.
pub(crate) fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    Ok(nixsock::setsockopt(&fd, sockopt::Linger, &linger)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::io as sysio;
    use crate::sys::poller::{Event, Interest};
    use crate::sys::testutil::{
        accept_one, inet, loopback, read_exact, wait_ready, TempDir, BOUND,
    };
    use std::time::Instant;

    fn wait_writable(fd: &OwnedFd) -> Event {
        wait_ready(fd.as_fd(), Interest::WRITABLE)
    }

    #[test]
    fn tcp_listen_connect_accept_round_trip() {
        let listener = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
        let addr = inet(local_addr(listener.as_fd()).unwrap());
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);

        // Nothing pending yet.
        assert!(accept(listener.as_fd()).unwrap().is_none());

        let (client, connected) = tcp_connect(addr).unwrap();
        if !connected {
            let ev = wait_writable(&client);
            assert!(ev.writable());
            assert!(!ev.error());
        }
        assert!(take_error(client.as_fd()).unwrap().is_none());

        let (server, peer) = accept_one(&listener);
        assert_eq!(peer, local_addr(client.as_fd()).unwrap());
        assert_eq!(peer_addr(client.as_fd()).unwrap(), SockAddr::Inet(addr));
        assert_eq!(peer_addr(server.as_fd()).unwrap(), peer);

        sysio::write(client.as_fd(), b"ping").unwrap();
        assert_eq!(read_exact(&server, 4), b"ping");
        sysio::write(server.as_fd(), b"pong").unwrap();
        assert_eq!(read_exact(&client, 4), b"pong");

        // Drained: a further accept finds nothing.
        assert!(accept(listener.as_fd()).unwrap().is_none());
    }

    #[test]
    fn connect_to_closed_port_is_refused() {
        // Bind a port, then close it, so nobody listens there.
        let addr = {
            let l = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
            inet(local_addr(l.as_fd()).unwrap())
        };
        match tcp_connect(addr) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok((fd, true)) => panic!("connected to a closed port: {fd:?}"),
            Ok((fd, false)) => {
                let ev = wait_writable(&fd);
                assert!(ev.error() || ev.hangup(), "{ev:?}");
                let err = take_error(fd.as_fd()).unwrap().expect("a pending error");
                assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
                // Taking it cleared it.
                assert!(take_error(fd.as_fd()).unwrap().is_none());
            }
        }
    }

    #[test]
    fn sockets_are_nonblocking_and_cloexec() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        let listener = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
        let (client, _) = tcp_connect(inet(local_addr(listener.as_fd()).unwrap())).unwrap();
        let (server, _) = accept_one(&listener);
        for fd in [&listener, &client, &server] {
            let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(fl.contains(OFlag::O_NONBLOCK));
            let fdfl = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
            assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
        }
    }

    #[test]
    fn listener_options_are_applied() {
        let opts = ListenOptions {
            reuse_port: true,
            backlog: 100_000, // above SOMAXCONN: asks for the system maximum
            recv_buffer: Some(64 * 1024),
            send_buffer: Some(64 * 1024),
            ..ListenOptions::default()
        };
        let listener = tcp_listener(loopback(), &opts).unwrap();
        assert!(nixsock::getsockopt(&listener, sockopt::ReuseAddr).unwrap());
        assert!(nixsock::getsockopt(&listener, sockopt::ReusePort).unwrap());
        assert!(recv_buffer_size(listener.as_fd()).unwrap() >= 64 * 1024);
        assert!(send_buffer_size(listener.as_fd()).unwrap() >= 64 * 1024);

        // A second listener may share the port only with SO_REUSEPORT.
        let addr = inet(local_addr(listener.as_fd()).unwrap());
        let twin = tcp_listener(addr, &opts).unwrap();
        assert_eq!(local_addr(twin.as_fd()).unwrap(), SockAddr::Inet(addr));
        let err = tcp_listener(addr, &ListenOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        let bad = ListenOptions {
            backlog: -5,
            ..ListenOptions::default()
        };
        assert_eq!(
            tcp_listener(loopback(), &bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn stream_socket_options_round_trip() {
        let listener = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
        let (client, _) = tcp_connect(inet(local_addr(listener.as_fd()).unwrap())).unwrap();
        let fd = client.as_fd();

        set_nodelay(fd, true).unwrap();
        assert!(nodelay(fd).unwrap());
        set_nodelay(fd, false).unwrap();
        assert!(!nodelay(fd).unwrap());

        set_recv_buffer_size(fd, 32 * 1024).unwrap();
        assert!(recv_buffer_size(fd).unwrap() >= 32 * 1024);
        set_send_buffer_size(fd, 32 * 1024).unwrap();
        assert!(send_buffer_size(fd).unwrap() >= 32 * 1024);
        assert_eq!(
            set_recv_buffer_size(fd, usize::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );

        let ka = KeepAlive {
            idle: Duration::from_secs(60),
            interval: Duration::from_millis(10_500), // rounded up to 11 s
            count: 5,
        };
        set_keepalive(fd, Some(ka)).unwrap();
        assert_eq!(
            keepalive(fd).unwrap(),
            Some(KeepAlive {
                interval: Duration::from_secs(11),
                ..ka
            })
        );
        set_keepalive(
            fd,
            Some(KeepAlive {
                idle: Duration::ZERO, // raised to the 1 s minimum
                interval: Duration::from_millis(1),
                count: 1,
            }),
        )
        .unwrap();
        let got = keepalive(fd).unwrap().unwrap();
        assert_eq!(
            (got.idle, got.interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        set_keepalive(fd, None).unwrap();
        assert_eq!(keepalive(fd).unwrap(), None);

        // Out-of-range values are the kernel's error, not a panic.
        let absurd = KeepAlive {
            idle: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            count: 0,
        };
        assert!(set_keepalive(fd, Some(absurd)).is_err());

        set_linger_zero(fd).unwrap();
        let linger = nixsock::getsockopt(&client, sockopt::Linger).unwrap();
        assert_eq!((linger.l_onoff, linger.l_linger), (1, 0));
    }

    #[test]
    fn keepalive_secs_rounds_up_and_saturates() {
        assert_eq!(keepalive_secs(Duration::ZERO), 1);
        assert_eq!(keepalive_secs(Duration::from_millis(1)), 1);
        assert_eq!(keepalive_secs(Duration::from_secs(2)), 2);
        assert_eq!(keepalive_secs(Duration::from_millis(2001)), 3);
        assert_eq!(keepalive_secs(Duration::MAX), u32::MAX);
    }

    #[test]
    fn shutdown_write_gives_peer_end_of_stream() {
        let listener = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
        let (client, _) = tcp_connect(inet(local_addr(listener.as_fd()).unwrap())).unwrap();
        let (server, _) = accept_one(&listener);
        sysio::write(client.as_fd(), b"last").unwrap();
        shutdown_write(client.as_fd()).unwrap();
        assert_eq!(read_exact(&server, 4), b"last");
        let deadline = Instant::now() + BOUND;
        let mut buf = [0u8; 8];
        loop {
            match sysio::read(server.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => panic!("unexpected {n} bytes after shutdown"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no end of stream");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The other direction still works.
        sysio::write(server.as_fd(), b"ok").unwrap();
        assert_eq!(read_exact(&client, 2), b"ok");
    }

    #[test]
    fn ipv6_loopback_listener() {
        let addr: SocketAddr = "[::1]:0".parse().unwrap();
        let listener = match tcp_listener(addr, &ListenOptions::default()) {
            Ok(l) => l,
            Err(e)
                if e.raw_os_error() == Some(Errno::EADDRNOTAVAIL as i32)
                    || e.raw_os_error() == Some(Errno::EAFNOSUPPORT as i32) =>
            {
                println!("skipping ipv6_loopback_listener: cannot bind [::1] ({e})");
                return;
            }
            Err(e) => panic!("binding [::1]: {e}"),
        };
        assert!(nixsock::getsockopt(&listener, sockopt::Ipv6V6Only).unwrap());
        let bound = inet(local_addr(listener.as_fd()).unwrap());
        assert!(bound.is_ipv6());
        let (client, _) = tcp_connect(bound).unwrap();
        let (server, peer) = accept_one(&listener);
        assert!(inet(peer.clone()).is_ipv6());
        // The address accept4 wrote is the client's own, as getpeername says.
        assert_eq!(peer, local_addr(client.as_fd()).unwrap());
        assert_eq!(peer_addr(server.as_fd()).unwrap(), peer);
        sysio::write(client.as_fd(), b"v6").unwrap();
        assert_eq!(read_exact(&server, 2), b"v6");

        let udp = udp_socket(addr, &ListenOptions::default()).unwrap();
        assert!(inet(local_addr(udp.as_fd()).unwrap()).is_ipv6());
    }

    #[test]
    fn unix_listen_connect_accept_round_trip() {
        let dir = TempDir::new("unix-rt");
        let path = dir.path().join("rt.sock");
        let listener = unix_listener(&path, &ListenOptions::default()).unwrap();
        assert_eq!(
            local_addr(listener.as_fd()).unwrap(),
            SockAddr::Unix(Some(path.clone()))
        );
        assert!(accept(listener.as_fd()).unwrap().is_none());

        let (client, _connected) = unix_connect(&path).unwrap();
        let (server, peer) = accept_one(&listener);
        assert_eq!(peer, SockAddr::Unix(None));
        assert_eq!(
            peer_addr(client.as_fd()).unwrap(),
            SockAddr::Unix(Some(path.clone()))
        );
        assert!(take_error(client.as_fd()).unwrap().is_none());

        sysio::write(client.as_fd(), b"unix").unwrap();
        assert_eq!(read_exact(&server, 4), b"unix");

        // Nobody at a missing path.
        let missing = dir.path().join("missing.sock");
        assert_eq!(
            unix_connect(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn accept_reports_a_bound_unix_peer_by_its_path() {
        let dir = TempDir::new("unix-peer");
        let path = dir.path().join("srv.sock");
        let listener = unix_listener(&path, &ListenOptions::default()).unwrap();
        // A client bound to a path of its own: accept4 gives that path, as
        // getpeername on the accepted socket does.
        let client_path = dir.path().join("cli.sock");
        let client = new_socket(AddressFamily::Unix, SockType::Stream, None).unwrap();
        nixsock::bind(
            client.as_raw_fd(),
            &super::super::unix_addr(&client_path).unwrap(),
        )
        .unwrap();
        nixsock::connect(client.as_raw_fd(), &super::super::unix_addr(&path).unwrap()).unwrap();
        let (server, peer) = accept_one(&listener);
        assert_eq!(peer, SockAddr::Unix(Some(client_path)));
        assert_eq!(peer_addr(server.as_fd()).unwrap(), peer);
    }

    #[test]
    fn accepted_sockets_take_tcp_nodelay_from_the_listener() {
        for on in [true, false] {
            let opts = ListenOptions {
                nodelay: on,
                ..ListenOptions::default()
            };
            let listener = tcp_listener(loopback(), &opts).unwrap();
            let addr = inet(local_addr(listener.as_fd()).unwrap());
            let (_client, _) = tcp_connect(addr).unwrap();
            let (server, _) = accept_one(&listener);
            assert_eq!(nodelay(server.as_fd()).unwrap(), on);
        }
    }

    #[test]
    fn a_connection_reset_while_queued_is_accepted_with_its_address() {
        let listener = tcp_listener(loopback(), &ListenOptions::default()).unwrap();
        let addr = inet(local_addr(listener.as_fd()).unwrap());
        let (client, connected) = tcp_connect(addr).unwrap();
        if !connected {
            wait_writable(&client);
        }
        let client_addr = local_addr(client.as_fd()).unwrap();
        set_linger_zero(client.as_fd()).unwrap();
        drop(client); // a reset while the connection waits in the backlog
        let deadline = Instant::now() + BOUND;
        let (server, peer) = loop {
            if let Some(pair) = accept(listener.as_fd()).unwrap() {
                break pair;
            }
            assert!(Instant::now() < deadline, "nothing accepted");
            std::thread::sleep(Duration::from_millis(1));
        };
        // getpeername would say ENOTCONN now; the address came with accept4.
        assert_eq!(peer, client_addr);
        assert_eq!(
            peer_addr(server.as_fd()).unwrap_err().raw_os_error(),
            Some(Errno::ENOTCONN as i32)
        );
    }

    #[test]
    fn unix_path_too_long_is_an_error() {
        let long = std::path::PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        assert!(unix_listener(&long, &ListenOptions::default()).is_err());
        assert!(unix_connect(&long).is_err());
    }

    #[test]
    fn stale_unix_socket_is_replaced() {
        let dir = TempDir::new("unix-stale");
        let path = dir.path().join("stale.sock");
        // A crashed run: the listener is gone, its file remains.
        drop(unix_listener(&path, &ListenOptions::default()).unwrap());
        assert!(path.exists());
        let listener = unix_listener(&path, &ListenOptions::default()).unwrap();
        let (_client, _) = unix_connect(&path).unwrap();
        let _ = accept_one(&listener);
    }

    #[test]
    fn live_unix_socket_is_refused() {
        let dir = TempDir::new("unix-live");
        let path = dir.path().join("live.sock");
        let live = unix_listener(&path, &ListenOptions::default()).unwrap();
        let err = unix_listener(&path, &ListenOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        // The live server still serves.
        let (_client, _) = unix_connect(&path).unwrap();
        let _ = accept_one(&live);
    }

    #[test]
    fn regular_file_is_never_deleted() {
        let dir = TempDir::new("unix-file");
        let path = dir.path().join("precious.txt");
        std::fs::write(&path, b"keep me").unwrap();
        let err = unix_listener(&path, &ListenOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");

        // Nor a directory.
        let sub = dir.path().join("subdir");
        std::fs::create_dir(&sub).unwrap();
        assert!(unix_listener(&sub, &ListenOptions::default()).is_err());
        assert!(sub.is_dir());
    }

    #[test]
    fn udp_sockets_bind() {
        let sock = udp_socket(loopback(), &ListenOptions::default()).unwrap();
        let addr = inet(local_addr(sock.as_fd()).unwrap());
        assert_ne!(addr.port(), 0);
        // Datagram sockets have no peer.
        assert_eq!(
            peer_addr(sock.as_fd()).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
    }
}
