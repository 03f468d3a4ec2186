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

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
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
    // The signals arrive through a descriptor in the same poll, so the loop
    // never runs a handler; blocking them first is what routes them there.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;

    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry().register(
        &mut SourceFd(&signals.as_raw_fd()),
        SIGNALS,
        Interest::READABLE,
    )?;
    println!(
        "epoll echo listening on tcp://{} (1 thread)",
        listener.local_addr()?
    );

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
                LISTENER => accept(&listener, &poll, &mut conns, &mut free)?,
                SIGNALS => {
                    if let Some(info) = signals.read_signal()? {
                        eprintln!("epoll echo: signal {} received, stopping", info.ssi_signo);
                        return Ok(());
                    }
                }
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

fn accept(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
) -> Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // Reference loop, not a hardened server: on EMFILE and the like
                // the backlog is retried on the next incoming connection.
                eprintln!("epoll echo: accept: {e}");
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
        // Adding an already readable socket to epoll reports it at once, so
        // data that arrived before this call is not missed.
        poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns[slot] = Some(Conn {
            stream,
            pending: Vec::new(),
            written: 0,
        });
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
    while conn.written < conn.pending.len() {
        match conn.stream.write(&conn.pending[conn.written..]) {
            Ok(0) => return false,
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    conn.written = 0;
    conn.pending.clear();
    if conn.pending.capacity() > READ_BUF {
        // Do not keep a burst's buffer for the life of an idle connection.
        conn.pending = Vec::new();
    }
    true
}
