//! The io_uring echo client (`--client uring`): the same closed loop as the
//! mio client ([`crate::load`]) — one message in flight per connection, the
//! next sent only when the whole echo is back, every byte checked, every
//! round trip timed — at a lower CPU cost per message, so that the server,
//! not the client, limits the rate.
//!
//! All connections of a load thread share one ring. A connection's send and
//! its receive are one submission queue entry each, both queued when its
//! message starts; completions are reaped in batches and everything they
//! start is submitted by the next `io_uring_enter`, which also waits (one
//! system call per batch instead of a write, a successful read, two reads
//! that return `EAGAIN` and a share of `epoll_wait` per message). The ring
//! has one issuer and deferred task running where the kernel has them
//! (Linux 6.1), so the kernel does a completion's work (the receive's copy)
//! inside that enter, in one batch, and wakes the thread only when a batch
//! is due: `BATCH` completions, or any after `MIN_WAIT` where the kernel has
//! min-wait (Linux 6.12).
//!
//! What it must never do: reuse a buffer or drop one while the kernel may
//! still write to it — at the end every connection is shut down and every
//! operation's completion reaped before the buffers go (or, if that does
//! not finish in time, the buffers are leaked rather than freed).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use mio::net::TcpStream;
use nix::libc;

use crate::hist::Histogram;
use crate::load::{check_echo, count_round_trip, Stop, ThreadReport};
use crate::pattern::Pattern;
use crate::Result;

/// Completions one wait asks for before it may return (fewer when fewer
/// operations are in flight).
const BATCH: usize = 16;

/// How long a wait holds out for [`BATCH`] completions before returning
/// with any (kernels with min-wait only; older ones return at the first).
const MIN_WAIT: Duration = Duration::from_micros(50);

/// The longest a wait blocks, so the end of the window and an abort are
/// seen in time.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// `IORING_RECVSEND_POLL_FIRST`: a receive is queued right after its
/// message's send, so the echo is never there yet; the kernel then arms the
/// socket's poll at once instead of first trying a receive that fails.
const POLL_FIRST: u16 = 1;

/// How long the end of the run waits for the completions of operations
/// still in flight after their sockets were shut down.
const DRAIN: Duration = Duration::from_secs(5);

/// One connection of the closed loop.
struct Conn {
    /// The connection's number over the whole run (chooses its messages).
    id: usize,
    stream: TcpStream,
    /// Sequence number of the message in flight.
    seq: u64,
    /// Bytes of it the kernel has taken (sends completed).
    sent: usize,
    /// Bytes of it handed to the kernel (`sent` plus a send in flight).
    queued: usize,
    /// Bytes of its echo received.
    received: usize,
    /// Where the echo lands; the kernel owns it while a receive is in flight.
    buf: Box<[u8]>,
    send_in_flight: bool,
    recv_in_flight: bool,
    started: Instant,
    /// Round trips finished inside the measured window.
    in_window: u64,
    dead: bool,
}

/// `user_data` of a connection's operation: its index, low bit set for a
/// receive.
fn tag(index: usize, recv: bool) -> u64 {
    (index as u64) << 1 | u64::from(recv)
}

/// Sets the ring up: one issuer and deferred task running where the kernel
/// has them, else a plain ring.
fn build_ring(entries: u32) -> io::Result<IoUring> {
    let cq = entries.saturating_mul(2);
    let deferred = IoUring::<squeue::Entry, cqueue::Entry>::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries);
    match deferred {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(cq).build(entries)
        }
        r => r,
    }
}

/// The ring and what is in flight in it.
struct Client {
    ring: IoUring,
    in_flight: usize,
    /// Whether the kernel has min-wait (`IORING_FEAT_MIN_TIMEOUT`).
    min_wait: bool,
}

impl Client {
    /// Queues `entry`; submits first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry points into a connection's `buf` (boxed,
            // kept until the operation's completion is reaped: see `drive`'s
            // drain) or into the `Pattern`, which outlives the thread.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Queues the send of the rest of `c`'s message.
    fn send(&mut self, index: usize, c: &mut Conn, msg: &[u8]) -> io::Result<()> {
        let rest = &msg[c.sent..];
        let entry = opcode::Send::new(
            types::Fd(c.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(tag(index, false));
        self.push(&entry)?;
        c.queued = msg.len();
        c.send_in_flight = true;
        Ok(())
    }

    /// Queues a receive of the rest of `c`'s echo.
    fn recv(&mut self, index: usize, c: &mut Conn) -> io::Result<()> {
        let rest = &mut c.buf[c.received..];
        let entry = opcode::Recv::new(
            types::Fd(c.stream.as_raw_fd()),
            rest.as_mut_ptr(),
            rest.len() as u32,
        )
        .ioprio(POLL_FIRST)
        .build()
        .user_data(tag(index, true));
        self.push(&entry)?;
        c.recv_in_flight = true;
        Ok(())
    }

    /// One `io_uring_enter`: submits what is queued and waits for up to
    /// `want` completions, at most `timeout`.
    fn enter(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let mut args = types::SubmitArgs::new().timespec(&ts);
        if self.min_wait && want > 1 {
            args = args.min_wait_usec(MIN_WAIT.as_micros() as u32);
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: completions
            // must be reaped first.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Drives `group`'s connections until `end` (or until another thread
/// failed) and reports what was measured between `start` and `end`.
pub(crate) fn drive(
    group: Vec<(usize, TcpStream)>,
    pattern: &Pattern,
    start: Instant,
    end: Instant,
    abort: &AtomicBool,
) -> Result<ThreadReport> {
    let size = pattern.message(0, 0).len();
    if u32::try_from(size).is_err() {
        return Err("--size: too large for one io_uring operation".into());
    }
    // At most a send and a receive in flight per connection.
    let entries = (2 * group.len()).next_power_of_two().clamp(8, 4096) as u32;
    let ring = build_ring(entries).map_err(|e| format!("--client uring: io_uring: {e}"))?;
    let min_wait = ring.params().is_feature_min_timeout();
    let mut client = Client {
        ring,
        in_flight: 0,
        min_wait,
    };
    let now = Instant::now();
    let mut conns: Vec<Conn> = group
        .into_iter()
        .map(|(id, stream)| Conn {
            id,
            stream,
            seq: 0,
            sent: 0,
            queued: 0,
            received: 0,
            buf: vec![0; size].into_boxed_slice(),
            send_in_flight: false,
            recv_in_flight: false,
            started: now,
            in_window: 0,
            dead: false,
        })
        .collect();
    let mut report = ThreadReport {
        messages: 0,
        latency: Histogram::default(),
        errors: 0,
        error_samples: Vec::new(),
        stalled: 0,
        lost: 0,
        late: 0,
    };
    let outcome = run_loop(
        &mut client,
        &mut conns,
        pattern,
        start,
        end,
        abort,
        &mut report,
    );
    // Every operation still in flight points into a buffer of `conns`:
    // shut the sockets down so they all complete, and reap them.
    for c in &conns {
        if c.send_in_flight || c.recv_in_flight {
            // SAFETY: a plain system call on a descriptor `c` owns.
            unsafe { libc::shutdown(c.stream.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
    let deadline = Instant::now() + DRAIN;
    while client.in_flight > 0 && Instant::now() < deadline {
        if client
            .enter(client.in_flight, Duration::from_millis(100))
            .is_err()
        {
            break;
        }
        let reaped = client.ring.completion().count();
        client.in_flight -= reaped;
    }
    if client.in_flight > 0 {
        // The kernel may still write into these buffers: never free them.
        std::mem::forget(conns);
        return Err(format!(
            "--client uring: {} operations still in flight {DRAIN:?} after the sockets were shut down",
            client.in_flight
        )
        .into());
    }
    outcome?;
    report.stalled = conns.iter().filter(|c| !c.dead && c.in_window == 0).count();
    Ok(report)
}

/// The closed loop proper: starts every connection's first message, then
/// handles completions in batches until `end`.
fn run_loop(
    client: &mut Client,
    conns: &mut [Conn],
    pattern: &Pattern,
    start: Instant,
    end: Instant,
    abort: &AtomicBool,
    report: &mut ThreadReport,
) -> Result<()> {
    for (i, c) in conns.iter_mut().enumerate() {
        client.send(i, c, pattern.message(c.id, c.seq))?;
        client.recv(i, c)?;
    }
    let mut done = Vec::with_capacity(client.ring.completion().capacity());
    loop {
        let now = Instant::now();
        if now >= end || abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let want = BATCH.min(client.in_flight.div_ceil(2)).max(1);
        client.enter(want, (end - now).min(MAX_WAIT))?;
        done.extend(
            client
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        client.in_flight -= done.len();
        let now = Instant::now();
        for (data, result) in done.drain(..) {
            let index = (data >> 1) as usize;
            let c = &mut conns[index];
            let recv = data & 1 == 1;
            if recv {
                c.recv_in_flight = false;
            } else {
                c.send_in_flight = false;
            }
            if c.dead {
                continue;
            }
            match complete(
                client, index, c, recv, result, pattern, now, start, end, report,
            ) {
                Ok(()) => {}
                Err(Stop::Corrupt(msg)) => return Err(msg.into()),
                Err(Stop::Lost(msg)) => {
                    c.dead = true;
                    report.errors += 1;
                    if report.error_samples.len() < 5 {
                        report
                            .error_samples
                            .push(format!("connection {}: {msg}", c.id));
                    }
                    // Let whatever else is in flight on it complete.
                    // SAFETY: a plain system call on a descriptor `c` owns.
                    unsafe { libc::shutdown(c.stream.as_raw_fd(), libc::SHUT_RDWR) };
                }
            }
        }
    }
}

/// Handles one completion of connection `c` (number `index` in the ring):
/// checks what a receive brought, queues the rest of a short send or
/// receive, and starts the next message once the whole echo is back.
#[allow(clippy::too_many_arguments)]
fn complete(
    client: &mut Client,
    index: usize,
    c: &mut Conn,
    recv: bool,
    result: i32,
    pattern: &Pattern,
    now: Instant,
    start: Instant,
    end: Instant,
    report: &mut ThreadReport,
) -> std::result::Result<(), Stop> {
    let lost = |what: &str, e: io::Error| Stop::Lost(format!("{what}: {e}"));
    let size = c.buf.len();
    let msg = pattern.message(c.id, c.seq);
    if result < 0 {
        let e = io::Error::from_raw_os_error(-result);
        return Err(lost(if recv { "recv" } else { "send" }, e));
    }
    let n = result as usize;
    if !recv {
        if n == 0 {
            return Err(Stop::Lost("send returned 0".into()));
        }
        c.sent += n;
        c.queued = c.sent;
        if c.sent < size {
            // A short send: queue the rest.
            client
                .send(index, c, msg)
                .map_err(|e| lost("queue send", e))?;
        }
    } else {
        if n == 0 {
            return Err(Stop::Lost("server closed the connection".into()));
        }
        let from = c.received;
        check_echo(c.id, c.seq, msg, from, &c.buf[from..from + n], c.queued)?;
        c.received += n;
        if c.received < size {
            client.recv(index, c).map_err(|e| lost("queue recv", e))?;
        }
    }
    if c.received == size && !c.send_in_flight {
        if count_round_trip(now, c.started, start, end, report) {
            c.in_window += 1;
        }
        c.seq += 1;
        c.sent = 0;
        c.queued = 0;
        c.received = 0;
        c.started = now;
        let next = pattern.message(c.id, c.seq);
        client
            .send(index, c, next)
            .map_err(|e| lost("queue send", e))?;
        client.recv(index, c).map_err(|e| lost("queue recv", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use crate::load::{self, Client, LoadConfig};

    /// A thread-per-connection echo server on a fresh loopback port that
    /// flips the byte at stream offset `flip` of every connection (none
    /// if `None`) and closes each connection after `close_after` bytes.
    fn serve(flip: Option<usize>, close_after: Option<usize>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut offset = 0;
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if let Some(at) = flip.filter(|&at| (offset..offset + n).contains(&at)) {
                            buf[at - offset] ^= 0x5a;
                        }
                        offset += n;
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        if close_after.is_some_and(|limit| offset >= limit) {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn config(addr: SocketAddr, client: Client) -> LoadConfig {
        LoadConfig {
            addr,
            udp: false,
            conns: 3,
            size: 1000,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(700),
            threads: 1,
            server_pid: None,
            other_pids: Vec::new(),
            client,
        }
    }

    #[test]
    fn both_clients_complete_verified_round_trips() {
        let addr = serve(None, None);
        for client in [Client::Uring, Client::Mio] {
            let report = load::run(&config(addr, client)).unwrap();
            assert!(report.messages > 0, "{client:?}: no round trip");
            assert_eq!(report.errors, 0, "{client:?}: {:?}", report.error_samples);
        }
    }

    #[test]
    fn a_changed_byte_fails_the_run() {
        // Offset 1 + 5 * 1000 + 17: byte 17 of message #5 (after the probe).
        let addr = serve(Some(1 + 5 * 1000 + 17), None);
        for client in [Client::Uring, Client::Mio] {
            let e = match load::run(&config(addr, client)) {
                Ok(_) => panic!("{client:?}: a corrupted echo passed"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains("message #5 byte 17 of 1000"), "{client:?}: {e}");
        }
    }

    #[test]
    fn a_closed_connection_is_counted_lost() {
        // Every connection closes after the probe and two messages.
        let addr = serve(None, Some(1 + 2 * 1000));
        for client in [Client::Uring, Client::Mio] {
            // Lost (the server closed it, or reset it when the next message
            // came), never a corrupted echo, and the run still ends.
            let report = load::run(&config(addr, client)).unwrap();
            assert_eq!(report.errors, 3, "{client:?}: {:?}", report.error_samples);
        }
    }
}
