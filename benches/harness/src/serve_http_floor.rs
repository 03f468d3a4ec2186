//! The HTTP floor (`harness serve http-floor`): the least a readiness server
//! can do per plaintext request on this kernel path, so that `bench-http`
//! can say what no server could beat. One process of ONE thread (the kernel
//! then borrows a socket's file without taking a reference on every
//! receive and send, as it does for tokio's current_thread peer), one mio
//! poll, edge-triggered, registered once per connection for both
//! directions (no `epoll_ctl` per request), signals through a `signalfd` in
//! the same poll.
//!
//! Per readiness: one read into a shared buffer (a second one only when the
//! first filled it), every complete request of it found by a `memmem` for
//! the blank line and answered by copying a canned reply into one shared
//! output buffer, written with one send. Nothing is allocated per request:
//! a connection keeps bytes only for the start of a request that its read
//! cut (and a reply the socket did not take). The replies carry the same
//! headers, in the same order and of the same length as the tokio peer's
//! (`serve_tokio_http`): status line, `Server`, `Date`, `Content-Type`,
//! `Content-Length`; the `Date` is re-rendered at most once per second,
//! checked once per poll turn (tokio's peer checks once per read).
//!
//! It is a measuring tool, not a server to copy: it parses only the request
//! line (`GET /plaintext` and `/` get `200`, other paths `404`; a request
//! line without a path and an `HTTP/1.x` version gets `400` and the
//! connection closed), ignores the headers, and supports no request bodies,
//! as the tokio peer.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;
use mio::net::TcpStream;
use mio::{Events, Token};

use crate::serve_epoll::{accept_into, flush_pending, stop_signal, OneThread, LISTENER, SIGNALS};
use crate::Result;

/// Shared read buffer.
const READ_BUF: usize = 64 * 1024;
/// Largest request head: a connection holding more without a blank line
/// is closed.
const MAX_HEAD: usize = 8 * 1024;
/// Stop reading a connection once this much output waits (back-pressure).
const MAX_PENDING: usize = 1024 * 1024;
/// The reply to a request line that is not HTTP/1.x.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

struct Conn {
    stream: TcpStream,
    /// The start of a request that a read cut (empty almost always).
    partial: Vec<u8>,
    /// Replies the socket did not take (empty unless back-pressured).
    pending: Vec<u8>,
    /// How much of `pending` is written.
    written: usize,
}

/// The canned replies and the second their `Date` says.
struct Replies {
    second: u64,
    ok: Vec<u8>,
    not_found: Vec<u8>,
}

impl Replies {
    /// Re-renders both replies if the clock's second moved (no allocation
    /// once the buffers have their size: they are rewritten in place).
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second == self.second {
            return;
        }
        self.second = second;
        let date = httpdate::HttpDate::from(now);
        render(&mut self.ok, "200 OK", date, "Hello, World!");
        render(&mut self.not_found, "404 Not Found", date, "Not Found");
    }
}

/// The tokio peer's reply bytes (`serve_tokio_http::reply`), with a server
/// name of the same length.
fn render(out: &mut Vec<u8>, status: &str, date: httpdate::HttpDate, body: &str) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nServer: floor\r\nDate: {date}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// What a request line asks for.
enum Request {
    Plaintext,
    Other,
    Malformed,
}

/// Reads the request line of one request head (the bytes before its blank
/// line): `METHOD SP PATH SP HTTP/1.x`.
fn request(head: &[u8]) -> Request {
    let line = match memchr::memchr(b'\r', head) {
        Some(end) => &head[..end],
        None => head,
    };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if method.is_empty() || !version.starts_with(b"HTTP/1.") {
        return Request::Malformed;
    }
    match path {
        b"/plaintext" | b"/" => Request::Plaintext,
        _ => Request::Other,
    }
}

/// Appends the replies to every complete request in `buf` to `out`; returns
/// the bytes consumed, or `None` for a malformed request.
fn respond_all(
    buf: &[u8],
    out: &mut Vec<u8>,
    replies: &Replies,
    blank: &Finder<'_>,
) -> Option<usize> {
    let mut start = 0;
    while let Some(end) = blank.find(&buf[start..]) {
        out.extend_from_slice(match request(&buf[start..start + end]) {
            Request::Plaintext => &replies.ok,
            Request::Other => &replies.not_found,
            Request::Malformed => return None,
        });
        start += end + 4;
    }
    Some(start)
}

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr) -> Result<()> {
    // One thread: signals come through the poll (`OneThread`).
    let OneThread {
        mut poll,
        listener,
        signals,
    } = OneThread::bind(addr, "http floor")?;

    let blank = Finder::new(b"\r\n\r\n");
    let mut replies = Replies {
        second: u64::MAX,
        ok: Vec::with_capacity(256),
        not_found: Vec::with_capacity(256),
    };
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        replies.refresh();
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    accept_into(&listener, &poll, &mut conns, &mut free, "http floor", |s| {
                        Conn {
                            stream: s,
                            partial: Vec::new(),
                            pending: Vec::new(),
                            written: 0,
                        }
                    })?
                }
                SIGNALS if stop_signal(&signals, "http floor")? => return Ok(()),
                SIGNALS => {}
                Token(i) => {
                    let Some(conn) = conns[i].as_mut() else {
                        continue;
                    };
                    if !service(conn, &mut buf, &mut out, &replies, &blank) {
                        // Closing the socket also removes it from the epoll set.
                        conns[i] = None;
                        free.push(i);
                    }
                }
            }
        }
    }
}

/// Handles readiness on one connection; false when it is to be closed.
fn service(
    conn: &mut Conn,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    replies: &Replies,
    blank: &Finder<'_>,
) -> bool {
    if !flush(conn) {
        return false;
    }
    // While replies are backed up, requests stay in the socket; the writable
    // event that drains `pending` brings us back here to read them.
    while conn.pending.len() < MAX_PENDING {
        let kept = conn.partial.len();
        buf[..kept].copy_from_slice(&conn.partial);
        let space = buf.len() - kept;
        let n = match conn.stream.read(&mut buf[kept..]) {
            Ok(0) => return false,
            Ok(n) => n,
            // Only after a read that filled the buffer or a flush.
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let filled = kept + n;
        let Some(used) = respond_all(&buf[..filled], out, replies, blank) else {
            out.clear();
            let _ = conn.stream.write(BAD_REQUEST);
            return false;
        };
        if filled - used > MAX_HEAD {
            out.clear();
            return false;
        }
        conn.partial.clear();
        if used < filled {
            conn.partial.extend_from_slice(&buf[used..filled]);
        }
        if !out.is_empty() && !send(conn, out) {
            return false;
        }
        // Edge-triggered: a read that did not fill the buffer emptied the
        // socket, and any byte arriving after it raises a new edge. So one
        // read per readiness, without the read that only says EAGAIN.
        if n < space {
            return true;
        }
    }
    true
}

/// Writes `out` (then empties it); what the socket does not take waits in
/// the connection. False on a fatal error.
fn send(conn: &mut Conn, out: &mut Vec<u8>) -> bool {
    let mut done = 0;
    if conn.pending.is_empty() {
        while done < out.len() {
            match conn.stream.write(&out[done..]) {
                Ok(0) => {
                    out.clear();
                    return false;
                }
                Ok(w) => done += w,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    out.clear();
                    return false;
                }
            }
        }
    }
    conn.pending.extend_from_slice(&out[done..]);
    out.clear();
    true
}

/// Writes out what is pending; false on a fatal error.
fn flush(conn: &mut Conn) -> bool {
    flush_pending(&mut conn.stream, &mut conn.pending, &mut conn.written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies() -> Replies {
        let mut r = Replies {
            second: u64::MAX,
            ok: Vec::new(),
            not_found: Vec::new(),
        };
        r.refresh();
        r
    }

    #[test]
    fn answers_pipelined_requests_and_keeps_the_cut_one() {
        let two =
            b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /pl";
        let mut out = Vec::new();
        let blank = Finder::new(b"\r\n\r\n");
        let used = respond_all(two, &mut out, &replies(), &blank).unwrap();
        assert_eq!(used, two.len() - 7);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1);
        assert_eq!(text.matches("HTTP/1.1 404 Not Found").count(), 1);
        assert!(text.contains("Content-Length: 13\r\n\r\nHello, World!"));
        assert!(respond_all(b"NOT HTTP\r\n\r\n", &mut Vec::new(), &replies(), &blank).is_none());
    }

    #[test]
    fn replies_are_as_long_as_the_tokio_peers() {
        let r = replies();
        let text = String::from_utf8(r.ok.clone()).unwrap();
        let date = text.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        let tokio = format!(
            "HTTP/1.1 200 OK\r\nServer: tokio\r\nDate: {date}\r\n\
             Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
        );
        assert_eq!(r.ok.len(), tokio.len());
        assert_eq!(text.replace("Server: floor", "Server: tokio"), tokio);
    }
}
