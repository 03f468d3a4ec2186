//! A cheap HTTP/1.1 load generator, so that on a 2-core machine the server,
//! not the client, is what limits the rate (`wrk` spends more CPU per
//! request than the servers it measures: its HTTP parser, its Lua hooks
//! and its per-request statistics).
//!
//! Closed loop, one thread, every connection on one mio poll: each
//! connection writes `depth` pipelined `GET` requests (one prebuilt buffer,
//! the bytes wrk's `wrk.format` produces: request line and `Host`), waits for
//! their `depth` responses, records the batch's round-trip time and starts
//! the next batch. Responses are framed by a cheap scan: the end of the head
//! (`\r\n\r\n`), its `Content-Length`, the body skipped; a status other than
//! `200` or an unframed response fails the run. Nothing is copied or
//! allocated per request.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::hist::Histogram;
use crate::{procfs, Result};

/// What to run.
pub struct HttpLoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Concurrent connections.
    pub conns: usize,
    /// Requests per write; the next write waits for all their responses.
    pub depth: usize,
    /// Time run before measuring.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Server process whose CPU time is sampled at the window's edges.
    pub server_pid: Option<u32>,
}

/// What a run measured, over the measured window only.
pub struct HttpLoadReport {
    /// Responses received in the window.
    pub requests: u64,
    /// Length of the window.
    pub seconds: f64,
    /// Round-trip time of each batch (one request when `depth` is 1), from
    /// its write to its last response.
    pub latency: Histogram,
    /// Server CPU time in the window, if a pid was given and readable.
    pub server_cpu: Option<Duration>,
    /// The user-space part of `server_cpu`.
    pub server_user: Option<Duration>,
    /// This process's CPU time in the window (the load generator's).
    pub client_cpu: Option<Duration>,
    /// Connections that completed no batch in the window.
    pub stalled: usize,
}

impl HttpLoadReport {
    /// One-line summary.
    pub fn summary(&self) -> String {
        let per = |c: Option<Duration>| {
            c.map_or("?".to_string(), |c| {
                format!(
                    "{:.3} µs/req ({:.0} % of a core)",
                    c.as_secs_f64() * 1e6 / self.requests.max(1) as f64,
                    100.0 * c.as_secs_f64() / self.seconds
                )
            })
        };
        format!(
            "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, server CPU {}, client CPU {}, stalled {}",
            self.requests as f64 / self.seconds,
            self.latency.quantile(0.50) as f64 / 1e6,
            self.latency.quantile(0.99) as f64 / 1e6,
            per(self.server_cpu),
            per(self.client_cpu),
            self.stalled
        )
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Bytes of the current batch written.
    sent: usize,
    /// Responses of the current batch received.
    received: usize,
    /// Unparsed response bytes are `buf[..filled]`.
    buf: Box<[u8]>,
    filled: usize,
    started: Instant,
    batches_in_window: u64,
}

/// Response framing: the two searches, built once.
struct Framer {
    head_end: memmem::Finder<'static>,
    length: memmem::Finder<'static>,
}

/// A status line the load counts as a success.
const OK: &[u8] = b"HTTP/1.1 200 ";

impl Framer {
    fn new() -> Framer {
        Framer {
            head_end: memmem::Finder::new(b"\r\n\r\n"),
            length: memmem::Finder::new(b"\r\nContent-Length: "),
        }
    }

    /// The length of the complete response at the start of `buf`, `Ok(None)`
    /// if it is not complete yet.
    fn response(&self, buf: &[u8]) -> Result<Option<usize>> {
        let Some(end) = self.head_end.find(buf) else {
            return Ok(None);
        };
        let head = &buf[..end + 2];
        if !head.starts_with(OK) {
            let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(format!("the server answered {:?}", String::from_utf8_lossy(line)).into());
        }
        let at = self
            .length
            .find(head)
            .ok_or("a response without Content-Length")?
            + 18;
        let mut len = 0usize;
        for &d in head[at..].iter().take_while(|d| d.is_ascii_digit()) {
            len = len * 10 + usize::from(d - b'0');
        }
        let total = end + 4 + len;
        Ok((buf.len() >= total).then_some(total))
    }
}

/// Opens the connections, runs warm-up plus the measured window in the
/// calling thread, and reports.
pub fn run(cfg: &HttpLoadConfig) -> Result<HttpLoadReport> {
    if cfg.conns == 0 || cfg.depth == 0 || cfg.duration.is_zero() {
        return Err("connections, depth and the measured time must be above zero".into());
    }
    let one = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", cfg.path, cfg.addr);
    let batch = one.repeat(cfg.depth).into_bytes();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(cfg.conns);
    let now = Instant::now();
    for i in 0..cfg.conns {
        let std = std::net::TcpStream::connect_timeout(&cfg.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {}: {e}", cfg.addr))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            sent: 0,
            received: 0,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            filled: 0,
            started: now,
            batches_in_window: 0,
        });
    }
    let framer = Framer::new();
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let mut latency = Histogram::default();
    let mut window_open = false;
    let mut cpu0 = (None, None);
    let sample = |pid: Option<u32>| {
        (
            pid.and_then(|p| procfs::user_system_time(p).ok()),
            procfs::cpu_time(std::process::id()).ok(),
        )
    };
    let step = |c: &mut Conn, latency: &mut Histogram| -> Result<()> {
        pump(c, &batch, cfg.depth, &framer, start, end, latency)
            .map_err(|e| format!("connection to {}: {e}", cfg.addr).into())
    };
    for c in &mut conns {
        step(c, &mut latency)?;
    }
    loop {
        let now = Instant::now();
        if !window_open && now >= start {
            window_open = true;
            cpu0 = sample(cfg.server_pid);
        }
        if now >= end {
            break;
        }
        let wait = if window_open { end - now } else { start - now };
        match poll.poll(&mut events, Some(wait.min(Duration::from_millis(50)))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            step(&mut conns[event.token().0], &mut latency)?;
        }
    }
    let cpu1 = sample(cfg.server_pid);
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    let requests = conns.iter().map(|c| c.batches_in_window).sum::<u64>() * cfg.depth as u64;
    Ok(HttpLoadReport {
        requests,
        seconds: cfg.duration.as_secs_f64(),
        latency,
        server_cpu: diff(cpu0.0.map(|(u, s)| u + s), cpu1.0.map(|(u, s)| u + s)),
        server_user: diff(cpu0.0.map(|(u, _)| u), cpu1.0.map(|(u, _)| u)),
        client_cpu: diff(cpu0.1, cpu1.1),
        stalled: conns.iter().filter(|c| c.batches_in_window == 0).count(),
    })
}

/// Moves one connection along after an event. Edge-triggered, but without
/// the read that only returns `WouldBlock`: a read that does not fill the
/// buffer emptied the socket (what arrives later raises a new edge), and a
/// batch is written as soon as the last response of the one before is in.
/// So a round trip costs one read and one write, as in the servers.
fn pump(
    c: &mut Conn,
    batch: &[u8],
    depth: usize,
    framer: &Framer,
    start: Instant,
    end: Instant,
    latency: &mut Histogram,
) -> Result<()> {
    loop {
        write_rest(c, batch)?;
        let space = c.buf.len() - c.filled;
        if space == 0 {
            return Err("a response larger than 64 KiB".into());
        }
        let n = match c.stream.read(&mut c.buf[c.filled..]) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("read: {e}").into()),
        };
        c.filled += n;
        let finished = take_responses(c, batch.len(), depth, framer, start, end, latency)?;
        if n < space {
            // Drained: start the next batch if this one is done, then wait.
            if finished {
                write_rest(c, batch)?;
            }
            return Ok(());
        }
    }
}

/// Writes what the socket takes of the rest of the batch.
fn write_rest(c: &mut Conn, batch: &[u8]) -> Result<()> {
    while c.sent < batch.len() {
        match c.stream.write(&batch[c.sent..]) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("write: {e}").into()),
        }
    }
    Ok(())
}

/// Counts the complete responses in the connection's buffer and drops them;
/// returns whether they finished the batch (which then counts, if in the
/// window, and the next one is due).
fn take_responses(
    c: &mut Conn,
    batch_len: usize,
    depth: usize,
    framer: &Framer,
    start: Instant,
    end: Instant,
    latency: &mut Histogram,
) -> Result<bool> {
    let mut pos = 0;
    let mut finished = false;
    while let Some(len) = framer.response(&c.buf[pos..c.filled])? {
        pos += len;
        c.received += 1;
        if c.received == depth {
            if c.sent < batch_len || pos < c.filled {
                return Err("more responses than requests sent".into());
            }
            let now = Instant::now();
            if now >= start && now < end {
                c.batches_in_window += 1;
                latency.record((now - c.started).as_nanos().min(u128::from(u64::MAX)) as u64);
            }
            c.received = 0;
            c.sent = 0;
            c.started = now;
            finished = true;
        }
    }
    c.buf.copy_within(pos..c.filled, 0);
    c.filled -= pos;
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_responses() {
        let f = Framer::new();
        let one = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 13\r\n\r\nHello, World!";
        assert_eq!(f.response(one).unwrap(), Some(one.len()));
        for cut in 0..one.len() {
            assert_eq!(f.response(&one[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut two = one.to_vec();
        two.extend_from_slice(one);
        assert_eq!(f.response(&two).unwrap(), Some(one.len()));
        assert!(f
            .response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .is_err());
        assert!(f.response(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n").is_err());
    }
}
