//! Descriptors that cross process boundaries: listening sockets inherited
//! at start (`fd://N`, systemd's `LISTEN_FDS`) and sockets passed over a
//! Unix socket with `SCM_RIGHTS` (upgrades).
//!
//! Owns the one place where a raw descriptor number becomes an `OwnedFd`
//! without the kernel having just created it, and every `sendmsg`/`recvmsg`
//! with ancillary data. Every descriptor it hands out is close-on-exec; an
//! inherited listener is made non-blocking. It never keeps descriptors and
//! never blocks except as its caller's socket does.

// Adopting descriptors received or inherited from another process is the
// one thing here that needs `unsafe`; each use has its SAFETY comment.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self as nixsock, sockopt, AddressFamily, Backlog, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;

use crate::addr::SockAddr;

/// Most descriptors one handoff message carries.
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 64;

/// Takes ownership of descriptor `raw`, inherited from the parent process,
/// after checking it is open. It becomes close-on-exec and non-blocking.
///
/// The caller must take each number at most once: two owners of one
/// descriptor would close it twice.
pub(crate) fn take_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(Errno::EBADF as i32));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; an unopened number
    // gives EBADF and nothing else happens.
    if unsafe { nix::libc::fcntl(raw, nix::libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (checked above) and was inherited for this
    // process to use; the caller takes each number once (see above), so
    // this is its only owner from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(fd)
}

/// The address of a listening stream socket; an error if `fd` is not one.
pub(crate) fn listening_stream_addr(fd: BorrowedFd<'_>) -> io::Result<SockAddr> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let ty = nixsock::getsockopt(&fd, sockopt::SockType).map_err(|e| match e {
        Errno::ENOTSOCK => invalid("not a socket"),
        e => e.into(),
    })?;
    if ty != SockType::Stream {
        return Err(invalid(
            "not a stream socket (only TCP and Unix stream listeners can be adopted)",
        ));
    }
    if !nixsock::getsockopt(&fd, sockopt::AcceptConn)? {
        return Err(invalid("a stream socket that is not listening"));
    }
    super::socket::local_addr(fd)
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`) on a connected Unix
/// socket; the receiver gets its own copies.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let iov = [IoSlice::new(data)];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    loop {
        match nixsock::sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == data.len() => return Ok(()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "a handoff message was cut short",
                ))
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message into `buf` with the descriptors attached to it
/// (close-on-exec). `Ok((0, []))` is end of stream.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match nixsock::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                for r in raw {
                    // SAFETY: the kernel just installed `r` in this process
                    // for this message; nothing else knows the number yet.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many descriptors in one handoff message",
            ));
        }
        return Ok((msg.bytes, fds));
    }
}

/// A blocking, close-on-exec Unix `SOCK_SEQPACKET` socket.
fn seqpacket_socket() -> io::Result<OwnedFd> {
    let flags = SockFlag::SOCK_CLOEXEC;
    Ok(nixsock::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        flags,
        None,
    )?)
}

/// A Unix `SOCK_SEQPACKET` socket (message boundaries kept) listening at
/// `path` for upgrade requests; blocking, close-on-exec. An existing file
/// at `path` is replaced (the caller checked nobody answers there).
pub(crate) fn control_listener(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    nixsock::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    nixsock::listen(&fd, Backlog::new(8)?)?;
    Ok(fd)
}

/// Connects to the control socket at `path` (blocking). `NotFound` and
/// `ConnectionRefused` mean nobody serves it.
pub(crate) fn control_connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    loop {
        match nixsock::connect(fd.as_raw_fd(), &UnixAddr::new(path)?) {
            Ok(()) => return Ok(fd),
            Err(Errno::EINTR) => continue,
            // A stream socket or another kind of file at the path.
            Err(Errno::EPROTOTYPE) => {
                return Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits up to `timeout` for `fd` to be readable (a connection to accept,
/// a message to read). `false` on timeout.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(n) => Ok(n > 0),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Accepts a connection on a control socket (blocking, close-on-exec).
pub(crate) fn accept_control(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match nixsock::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 just returned a new descriptor nothing else owns.
            Ok(raw) => return Ok(unsafe { OwnedFd::from_raw_fd(raw) }),
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Bounds every blocking send and receive on `fd` by `timeout`.
pub(crate) fn set_io_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = TimeVal::new(
        timeout.as_secs().min(i64::MAX as u64) as _,
        timeout.subsec_micros() as _,
    );
    nixsock::setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
    nixsock::setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    Ok(())
}

/// A second descriptor for the same socket (close-on-exec).
pub(crate) fn duplicate(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_cross_a_unix_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        send_with_fds(a.as_fd(), b"hello", &[listener.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        let addr = listening_stream_addr(fds[0].as_fd()).unwrap();
        assert_eq!(addr.as_inet().unwrap().port(), port);
        drop(a);
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf).unwrap().0, 0);
    }

    #[test]
    fn only_listening_stream_sockets_are_adopted() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(listening_stream_addr(udp.as_fd()).is_err());
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(listening_stream_addr(a.as_fd()).is_err());
        assert!(take_inherited(-1).is_err());
        assert!(take_inherited(1 << 20).is_err());
    }
}
