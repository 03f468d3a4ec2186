//! Data transfer on non-blocking descriptors: `read`, `write`, `readv`,
//! `writev` for streams, `recv_from` and `send_to` for datagrams.
//!
//! Owns every payload-moving system call of the crate. Each call is retried
//! on `EINTR`; `EAGAIN` comes back as [`io::ErrorKind::WouldBlock`]. Every
//! send passes `MSG_NOSIGNAL`, so a peer that went away yields `EPIPE` or
//! `ECONNRESET` rather than killing the process with `SIGPIPE`. This module
//! never buffers, never loops to fill or drain a buffer (one call, one system
//! call), and never creates or closes a descriptor.

#[cfg(test)]
use std::io::IoSliceMut;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self as nixsock, MsgFlags, SockaddrStorage};

use crate::addr::SockAddr;

/// The most slices one `readv`/`writev` takes (Linux `IOV_MAX`).
pub(crate) const IOV_MAX: usize = 1024;

/// Runs `f` until it is not interrupted by a signal.
fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// A system call of up to six arguments, made directly: on x86-64 Linux
/// the `syscall` instruction itself (as rustix's `linux_raw` backend does:
/// no glibc stub, no `errno` round trip), elsewhere glibc's `syscall(2)`.
/// Returns the count, or the error number.
///
/// # Safety
///
/// The caller guarantees that `nr` with `args` is a valid system call whose
/// pointer arguments point at memory valid for what the call does with it.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(always)]
#[allow(unsafe_code)] // the syscall instruction
unsafe fn syscall6(nr: libc::c_long, args: [libc::c_long; 6]) -> Result<usize, i32> {
    let ret: libc::c_long;
    // SAFETY: the Linux x86-64 system call ABI: number in rax, arguments in
    // rdi, rsi, rdx, r10, r8, r9, result in rax; the kernel clobbers rcx
    // (return address) and r11 (saved flags, restored on return) and
    // touches no stack. What the call does to memory is the caller's
    // contract (see above), and the asm is not `nomem`, so the compiler
    // assumes memory may be read or written.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    // The kernel returns -errno (-4095..=-1) on failure.
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// Portable form of the above: glibc's `syscall(2)` and `errno`.
///
/// # Safety
///
/// As above.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
#[inline(always)]
#[allow(unsafe_code)] // syscall(2)
unsafe fn syscall6(nr: libc::c_long, args: [libc::c_long; 6]) -> Result<usize, i32> {
    // SAFETY: the caller's contract (see the x86-64 form).
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Makes a raw system call (`call` returns what [`syscall6`] returned)
/// until a signal does not interrupt it: a count, or the error.
#[inline(always)]
fn retry_raw(mut call: impl FnMut() -> Result<usize, i32>) -> io::Result<usize> {
    loop {
        match call() {
            Ok(n) => return Ok(n),
            Err(libc::EINTR) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Reads into `buf`; `Ok(0)` is end of stream (or an empty `buf`).
///
/// The read on every message's path: it goes straight to the system call
/// (see [`syscall6`]), not through glibc's `read`, which is a thread
/// cancellation point and pays for that with two atomic read-modify-writes
/// per call. ringloop never cancels a thread.
#[inline]
#[allow(unsafe_code)] // a raw read(2)
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry_raw(|| {
        // SAFETY: `fd` is a descriptor borrowed for the call, and `buf` is
        // writable memory of `buf.len()` bytes that nothing else touches
        // while the call runs; the kernel writes at most that many bytes.
        unsafe {
            syscall6(
                libc::SYS_read,
                [
                    libc::c_long::from(fd.as_raw_fd()),
                    buf.as_mut_ptr() as libc::c_long,
                    buf.len() as libc::c_long,
                    0,
                    0,
                    0,
                ],
            )
        }
    })
}

/// Receives into `buf` from a connected stream socket; `Ok(0)` is end of
/// stream (or an empty `buf`).
///
/// A raw `recvfrom(2)` without an address, as [`read`] is a raw `read(2)`:
/// on a socket it takes the kernel's socket path directly, without
/// `read(2)`'s file layer (`vfs_read`, `rw_verify_area`, `fdget_pos`), which
/// `perf` puts at ~1.5 % of a TLS echo server's CPU
/// (`benches/results/tlsr-session8-20261205.md`). Only for sockets.
#[inline]
#[allow(unsafe_code)] // a raw recvfrom(2)
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry_raw(|| {
        // SAFETY: `fd` is a descriptor borrowed for the call, and `buf` is
        // writable memory of `buf.len()` bytes that nothing else touches
        // while the call runs; the kernel writes at most that many bytes.
        // No address is asked for (null pointers, as recv(2) passes).
        unsafe {
            syscall6(
                libc::SYS_recvfrom,
                [
                    libc::c_long::from(fd.as_raw_fd()),
                    buf.as_mut_ptr() as libc::c_long,
                    buf.len() as libc::c_long,
                    0, // no flags
                    0, // no address
                    0,
                ],
            )
        }
    })
}

/// Sends from `buf` on a connected socket without raising `SIGPIPE`.
///
/// Like [`read`], a raw `sendto(2)` rather than glibc's cancellable `send`.
/// Not inlined: one call per message written, which `benches/costs.sh`
/// counts.
#[inline(never)]
#[allow(unsafe_code)] // a raw sendto(2)
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry_raw(|| {
        // SAFETY: `fd` is a descriptor borrowed for the call, and `buf` is
        // readable memory of `buf.len()` bytes for its duration; no address
        // is passed (a null pointer with length 0, as send(2) does).
        unsafe {
            syscall6(
                libc::SYS_sendto,
                [
                    libc::c_long::from(fd.as_raw_fd()),
                    buf.as_ptr() as libc::c_long,
                    buf.len() as libc::c_long,
                    libc::c_long::from(libc::MSG_NOSIGNAL),
                    0, // no address
                    0,
                ],
            )
        }
    })
}

/// Gathers `bufs` into one send without raising `SIGPIPE`. Only the first
/// [`IOV_MAX`] slices are offered; the count returned says how far it got.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(IOV_MAX)];
    retry_eintr(|| {
        nixsock::sendmsg::<SockaddrStorage>(fd.as_raw_fd(), bufs, &[], MsgFlags::MSG_NOSIGNAL, None)
    })
}

#[cfg(test)] // used by this layer's tests only (reads take one buffer)
/// Scatters one read over `bufs`. Only the first [`IOV_MAX`] slices are
/// filled.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(IOV_MAX);
    let bufs = &mut bufs[..n];
    retry_eintr(|| nix::sys::uio::readv(fd, bufs))
}

/// Receives one datagram and the address it came from. A datagram longer
/// than `buf` is truncated to fit (the rest is lost).
pub(crate) fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    let (n, from) = retry_eintr(|| nixsock::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buf))?;
    match from {
        Some(from) => Ok((n, super::from_storage(&from)?)),
        // Only a connection-oriented socket reports no sender.
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recv_from on a socket that reports no sender address",
        )),
    }
}

/// Sends one datagram to `to` without raising `SIGPIPE`.
pub(crate) fn send_to(fd: BorrowedFd<'_>, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
    super::with_raw_addr(to, |addr| {
        retry_eintr(|| nixsock::sendto(fd.as_raw_fd(), buf, addr, MsgFlags::MSG_NOSIGNAL))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::poller::Interest;
    use crate::sys::socket::{self, ListenOptions};
    use crate::sys::testutil::{loopback, read_exact, tcp_pair, wait_ready, BOUND};
    use std::os::fd::{AsFd, OwnedFd};
    use std::time::Instant;

    #[test]
    fn read_on_empty_socket_would_block() {
        let (_client, server) = tcp_pair();
        let mut buf = [0u8; 16];
        assert_eq!(
            read(server.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let mut a = [0u8; 4];
        let mut bufs = [IoSliceMut::new(&mut a)];
        assert_eq!(
            readv(server.as_fd(), &mut bufs).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn writev_readv_round_trip() {
        let (client, server) = tcp_pair();
        let parts: [&[u8]; 3] = [b"hello", b", ", b"world"];
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        assert_eq!(writev(client.as_fd(), &slices).unwrap(), 12);

        wait_ready(server.as_fd(), Interest::READABLE);
        let (mut a, mut b) = ([0u8; 4], [0u8; 32]);
        let mut got = 0;
        let deadline = Instant::now() + BOUND;
        while got < 12 {
            let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
            // Fill from where the previous read stopped.
            let n = if got == 0 {
                readv(server.as_fd(), &mut bufs)
            } else {
                read(server.as_fd(), &mut b[got - 4..])
            };
            match n {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline);
                    wait_ready(server.as_fd(), Interest::READABLE);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&a, b"hell");
        assert_eq!(&b[..8], b"o, world");
    }

    #[test]
    fn writev_caps_slice_count() {
        let (client, server) = tcp_pair();
        let byte = [7u8];
        let slices = vec![IoSlice::new(&byte); IOV_MAX + 500];
        // More slices than the kernel takes: no EINVAL, at most IOV_MAX bytes.
        let n = writev(client.as_fd(), &slices).unwrap();
        assert!(n > 0 && n <= IOV_MAX, "{n}");
        assert_eq!(read_exact(&server, n), vec![7u8; n]);
        // Empty input is a zero-length send, not an error.
        assert_eq!(writev(client.as_fd(), &[]).unwrap(), 0);
    }

    #[test]
    fn write_fills_then_would_block() {
        let (client, _server) = tcp_pair();
        socket::set_send_buffer_size(client.as_fd(), 4096).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        // Bounded: a peer that never reads fills both buffers well before this.
        for _ in 0..100_000 {
            match write(client.as_fd(), &chunk) {
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(total > 0);
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("never saw WouldBlock after {total} bytes");
    }

    /// Resets `server` (linger 0, close), then writes on `client` until the
    /// reset shows; returns the errors seen (bounded).
    fn write_after_reset(client: &OwnedFd, server: OwnedFd) -> Vec<io::Error> {
        socket::set_linger_zero(server.as_fd()).unwrap();
        drop(server);
        wait_ready(client.as_fd(), Interest::READABLE);
        let mut errors = Vec::new();
        for _ in 0..100 {
            match write(client.as_fd(), b"anyone there?") {
                Ok(_) => {
                    wait_ready(client.as_fd(), Interest::READABLE);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let pipe = e.kind() == io::ErrorKind::BrokenPipe;
                    errors.push(e);
                    if pipe {
                        break;
                    }
                }
            }
        }
        errors
    }

    #[test]
    fn write_to_reset_peer_is_an_error_not_a_signal() {
        let (client, server) = tcp_pair();
        let errors = write_after_reset(&client, server);
        assert!(!errors.is_empty(), "writing to a reset peer never failed");
        for e in &errors {
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn write_after_own_shutdown_is_epipe() {
        let (client, _server) = tcp_pair();
        socket::shutdown_write(client.as_fd()).unwrap();
        let err = write(client.as_fd(), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let err = writev(client.as_fd(), &[IoSlice::new(b"y")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    /// The Rust runtime ignores SIGPIPE, which would hide a missing
    /// MSG_NOSIGNAL. So this re-runs the child test below in a fresh process
    /// that restores the default action (terminate): if any write raised
    /// SIGPIPE, the child dies of it.
    #[test]
    fn no_sigpipe_even_with_default_disposition() {
        use std::os::unix::process::ExitStatusExt;
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "sys::io::tests::sigpipe_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SIGPIPE_CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            None,
            "child killed by a signal: {:?}",
            out.status
        );
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("sigpipe child ran"));
    }

    const SIGPIPE_CHILD: &str = "RINGLOOP_SIGPIPE_CHILD";

    #[test]
    #[allow(unsafe_code)] // restoring SIGPIPE's default action in a child
    fn sigpipe_child() {
        if std::env::var_os(SIGPIPE_CHILD).is_none() {
            return; // Only meaningful inside the process spawned above.
        }
        // SAFETY: restores the default SIGPIPE action in this single-purpose
        // child process (one test thread); no handler function is installed.
        let previous = unsafe { nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL) };
        assert_ne!(previous, nix::libc::SIG_ERR);

        let (client, _server) = tcp_pair();
        socket::shutdown_write(client.as_fd()).unwrap();
        assert_eq!(
            write(client.as_fd(), b"x").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert_eq!(
            writev(client.as_fd(), &[IoSlice::new(b"x")])
                .unwrap_err()
                .kind(),
            io::ErrorKind::BrokenPipe
        );

        let (client, server) = tcp_pair();
        assert!(!write_after_reset(&client, server).is_empty());

        println!("sigpipe child ran");
    }

    #[test]
    fn udp_send_to_recv_from_round_trip() {
        let a = socket::udp_socket(loopback(), &ListenOptions::default()).unwrap();
        let b = socket::udp_socket(loopback(), &ListenOptions::default()).unwrap();
        let a_addr = socket::local_addr(a.as_fd()).unwrap();
        let b_addr = socket::local_addr(b.as_fd()).unwrap();

        let mut buf = [0u8; 64];
        assert_eq!(
            recv_from(b.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        assert_eq!(send_to(a.as_fd(), b"datagram", &b_addr).unwrap(), 8);
        wait_ready(b.as_fd(), Interest::READABLE);
        let (n, from) = recv_from(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"datagram");
        assert_eq!(from, a_addr);

        // Reply to whoever sent it.
        send_to(b.as_fd(), b"reply", &from).unwrap();
        wait_ready(a.as_fd(), Interest::READABLE);
        let (n, from) = recv_from(a.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"reply");
        assert_eq!(from, b_addr);

        // An empty datagram is a datagram.
        send_to(a.as_fd(), b"", &b_addr).unwrap();
        wait_ready(b.as_fd(), Interest::READABLE);
        assert_eq!(recv_from(b.as_fd(), &mut buf).unwrap(), (0, a_addr));

        // Nowhere to send an unnamed Unix address.
        assert_eq!(
            send_to(a.as_fd(), b"x", &SockAddr::Unix(None))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn unix_stream_round_trip() {
        let dir = crate::sys::testutil::TempDir::new("io-unix");
        let path = dir.path().join("io.sock");
        let listener = socket::unix_listener(&path, &ListenOptions::default()).unwrap();
        let (client, _) = socket::unix_connect(&path).unwrap();
        wait_ready(listener.as_fd(), Interest::READABLE);
        let (server, _) = socket::accept(listener.as_fd())
            .unwrap()
            .expect("pending connection");
        let slices = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        assert_eq!(writev(client.as_fd(), &slices).unwrap(), 4);
        assert_eq!(read_exact(&server, 4), b"abcd");
        write(server.as_fd(), b"back").unwrap();
        assert_eq!(read_exact(&client, 4), b"back");
    }

    #[test]
    fn recv_reads_would_blocks_and_sees_end_of_stream() {
        let (client, server) = tcp_pair();
        let mut buf = [0u8; 16];
        assert_eq!(
            recv(server.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        write(client.as_fd(), b"hello").unwrap();
        wait_ready(server.as_fd(), Interest::READABLE);
        let mut small = [0u8; 3];
        assert_eq!(recv(server.as_fd(), &mut small).unwrap(), 3);
        assert_eq!(&small, b"hel");
        assert_eq!(recv(server.as_fd(), &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        drop(client);
        wait_ready(server.as_fd(), Interest::READABLE);
        assert_eq!(recv(server.as_fd(), &mut buf).unwrap(), 0);
    }
}
