//! The hand-written reference: one thread, one mio poll (edge-triggered epoll),
//! one shared read buffer. Read until `WouldBlock`, write straight back, keep
//! only what the socket did not take, and wait for writable to send it.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::Result;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Shared read buffer; echoed data is written back before the next read.
const READ_BUF: usize = 64 * 1024;
/// Stop reading a connection once this much output waits (back-pressure).
const MAX_PENDING: usize = 1024 * 1024;

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back.
    pending: Vec<u8>,
    /// How much of `pending` is written.
    written: usize,
}

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr) -> Result<()> {
    let OneThread {
        mut poll,
        listener,
        signals,
    } = OneThread::bind(addr, "epoll echo")?;

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    accept_into(&listener, &poll, &mut conns, &mut free, "epoll echo", |s| {
                        Conn {
                            stream: s,
                            pending: Vec::new(),
                            written: 0,
                        }
                    })?
                }
                SIGNALS if stop_signal(&signals, "epoll echo")? => return Ok(()),
                SIGNALS => {}
                Token(i) => {
                    let Some(conn) = conns[i].as_mut() else {
                        continue;
                    };
                    if !service(conn, &mut buf) {
                        // Closing the socket also removes it from the epoll set.
                        conns[i] = None;
                        free.push(i);
                    }
                }
            }
        }
    }
}

/// What a one-thread mio server (this loop, `serve_http_floor`) runs on:
/// its poll, its listener (token [`LISTENER`]) and SIGINT/SIGTERM as a
/// descriptor in the same poll (token [`SIGNALS`]): no handler, and no
/// signal-watching thread, so the process stays at one thread.
pub(crate) struct OneThread {
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) signals: SignalFd,
}

impl OneThread {
    /// Binds `addr` and prints "`name` listening on tcp://ADDR (1 thread)".
    pub(crate) fn bind(addr: SocketAddr, name: &str) -> Result<Self> {
        // Blocking the signals first is what routes them to the descriptor.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        println!(
            "{name} listening on tcp://{} (1 thread)",
            listener.local_addr()?
        );
        Ok(OneThread {
            poll,
            listener,
            signals,
        })
    }
}

/// A signal arrived on `signals` (said on stderr): time to stop.
pub(crate) fn stop_signal(signals: &SignalFd, name: &str) -> Result<bool> {
    Ok(match signals.read_signal()? {
        Some(info) => {
            eprintln!("{name}: signal {} received, stopping", info.ssi_signo);
            true
        }
        None => false,
    })
}

/// Accepts every pending connection into a free place of `conns` (its
/// index is the token), as `new_conn` makes it, registered once for both
/// directions: a reply the socket does not take needs no `epoll_ctl` to
/// learn when it can go on, and adding an already readable socket reports
/// it at once, so data that arrived before is not missed.
pub(crate) fn accept_into<C>(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<C>>,
    free: &mut Vec<usize>,
    name: &str,
    new_conn: impl Fn(TcpStream) -> C,
) -> Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // Reference loops, not hardened servers: on EMFILE and the
                // like the backlog is retried on the next incoming connection.
                eprintln!("{name}: accept: {e}");
                return Ok(());
            }
        };
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns[slot] = Some(new_conn(stream));
    }
}

/// Handles readiness on one connection; false when it is to be closed.
fn service(conn: &mut Conn, buf: &mut [u8]) -> bool {
    if !flush(conn) {
        return false;
    }
    // While output is backed up, leave input in the socket; the writable
    // event that drains `pending` brings us back here to read it.
    while conn.pending.len() < MAX_PENDING {
        let n = match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        if conn.pending.is_empty() {
            let mut done = 0;
            while done < n {
                match conn.stream.write(&buf[done..n]) {
                    Ok(0) => return false,
                    Ok(w) => done += w,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            conn.pending.extend_from_slice(&buf[done..n]);
        } else {
            conn.pending.extend_from_slice(&buf[..n]);
        }
    }
    true
}

/// Writes out what is pending; false on a fatal error.
fn flush(conn: &mut Conn) -> bool {
    flush_pending(&mut conn.stream, &mut conn.pending, &mut conn.written)
}

/// Writes `pending` from `written` on until the socket takes no more
/// (both reset once all went; a burst's large buffer is not kept for the
/// life of an idle connection); false on a fatal error.
pub(crate) fn flush_pending(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    written: &mut usize,
) -> bool {
    while *written < pending.len() {
        match stream.write(&pending[*written..]) {
            Ok(0) => return false,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    *written = 0;
    pending.clear();
    if pending.capacity() > READ_BUF {
        *pending = Vec::new();
    }
    true
}
