//! The io_uring echo client (`--client uring`): the same closed loop as the
//! mio client ([`crate::load`]) — one message in flight per connection, the
//! next sent only when the whole echo is back, every byte checked, every
//! round trip timed — at a lower CPU cost per message, so that the server,
//! not the client, limits the rate.
//!
//! All connections of a load thread share one ring. A connection's send is
//! one submission queue entry, queued when its message starts; completions
//! are reaped in batches and everything they start is submitted by the
//! next `io_uring_enter`, which also waits (one
//! system call per batch instead of a write, a successful read, two reads
//! that return `EAGAIN` and a share of `epoll_wait` per message). The ring
//! has one issuer and deferred task running where the kernel has them
//! (Linux 6.1), so the kernel does a completion's work (the receive's copy)
//! inside that enter, in one batch, and wakes the thread only when a batch
//! is due: `BATCH` completions, or any after `MIN_WAIT` where the kernel has
//! min-wait (Linux 6.12).
//!
//! A connection's receive is queued with each message, into the
//! connection's own buffer, with `IORING_RECVSEND_POLL_FIRST` (the echo is
//! never there yet, so the kernel arms the socket's poll at once). With
//! `--client uring-multishot` it is instead one multishot receive per
//! connection into a ring of provided buffers (Linux 5.19; a receive per
//! message where the kernel has none): armed once, it completes at every
//! arrival, and the buffer goes back to the ring in the same batch. Measured
//! under load (session 7, benches/results/eload-session7-20261205.md) that
//! was a little cheaper at 512 B (0.88–0.94× the server's CPU per message
//! against 0.93–0.97×) and dearer at 16 KiB (1.09–1.25× against
//! 0.97–1.03×; each piece lands in another of hundreds of 16 KiB buffers,
//! likely cold in the cache), so it is not the default.
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

/// The buffer group of the provided buffers.
const GROUP: u16 = 0;

/// Most memory the provided buffers of one load thread may take.
const PROVIDED_BYTES: usize = 64 << 20;

/// The buffers a connection's multishot receive lands in: a ring-mapped
/// provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19). A buffer
/// is the kernel's from [`Provided::give`] until a completion names it;
/// the loop reads it and gives it back in the same batch.
struct Provided {
    /// `count` entries of `struct io_uring_buf` (16 bytes each), page
    /// aligned; the first entry's last two bytes are the shared tail.
    entries: std::ptr::NonNull<types::BufRingEntry>,
    layout: std::alloc::Layout,
    bufs: Box<[u8]>,
    buf_size: usize,
    count: u16,
    /// Entries written so far (wraps); published to the kernel by
    /// [`Provided::publish`].
    tail: u16,
}

impl Provided {
    /// Registers `count` (a power of two) buffers of `buf_size` bytes with
    /// `ring`, all given to the kernel.
    fn register(ring: &IoUring, count: u16, buf_size: usize) -> io::Result<Provided> {
        let layout = std::alloc::Layout::from_size_align(usize::from(count) * 16, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count >= 1).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let entries = std::ptr::NonNull::new(raw.cast::<types::BufRingEntry>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut provided = Provided {
            entries,
            layout,
            bufs: vec![0; usize::from(count) * buf_size].into_boxed_slice(),
            buf_size,
            count,
            tail: 0,
        };
        // SAFETY: the entries stay allocated and the buffers alive until
        // `Drop`, which runs after the ring is closed (`Client` drops its
        // ring first) or is skipped (`drive` leaks both when operations
        // are still in flight).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(raw as u64, count, GROUP, 0)?
        };
        for bid in 0..count {
            provided.give(bid);
        }
        provided.publish();
        Ok(provided)
    }

    /// The first `len` bytes of buffer `bid`.
    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let at = usize::from(bid) * self.buf_size;
        &self.bufs[at..at + len.min(self.buf_size)]
    }

    /// Writes buffer `bid` into the ring (seen by the kernel after
    /// [`Provided::publish`]).
    fn give(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`, inside the allocation; the kernel reads
        // only entries between its head and the published tail, and this
        // one is past the tail until `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        let at = usize::from(bid) * self.buf_size;
        entry.set_addr(self.bufs[at..].as_ptr() as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the entries written since the last call.
    fn publish(&self) {
        // SAFETY: the tail is a u16 inside the first entry, suitably aligned,
        // written by this thread only and read by the kernel.
        let tail = unsafe {
            &*(types::BufRingEntry::tail(self.entries.as_ptr())
                as *const std::sync::atomic::AtomicU16)
        };
        // Release: the entries written before are visible to the kernel
        // once it sees the new tail.
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout.
        unsafe { std::alloc::dealloc(self.entries.as_ptr().cast(), self.layout) };
    }
}

/// The ring and what is in flight in it.
struct Client {
    // Dropped before `provided`: the ring is closed before its buffers go.
    ring: IoUring,
    /// Operations whose last completion has not been reaped (a multishot
    /// receive counts until its final one).
    in_flight: usize,
    /// Whether the kernel has min-wait (`IORING_FEAT_MIN_TIMEOUT`).
    min_wait: bool,
    /// The multishot receives' buffers (`--client uring-multishot` on a
    /// kernel with provided buffer rings); `None`: a receive per message,
    /// into the connection's own buffer.
    provided: Option<Provided>,
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

    /// Queues a receive of the rest of `c`'s echo, or with provided
    /// buffers arms `c`'s multishot receive (which stays armed across
    /// messages).
    fn recv(&mut self, index: usize, c: &mut Conn) -> io::Result<()> {
        if self.provided.is_some() {
            let entry = opcode::RecvMulti::new(types::Fd(c.stream.as_raw_fd()), GROUP)
                .build()
                .user_data(tag(index, true));
            self.push(&entry)?;
            c.recv_in_flight = true;
            return Ok(());
        }
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
    multishot: bool,
) -> Result<ThreadReport> {
    let size = pattern.message(0, 0).len();
    if u32::try_from(size).is_err() {
        return Err("--size: too large for one io_uring operation".into());
    }
    // At most a send and a receive in flight per connection.
    let entries = (2 * group.len()).next_power_of_two().clamp(8, 4096) as u32;
    let ring = build_ring(entries).map_err(|e| format!("--client uring: io_uring: {e}"))?;
    let min_wait = ring.params().is_feature_min_timeout();
    // Enough buffers for every connection to have its echo waiting in
    // several pieces, within PROVIDED_BYTES.
    let buf_size = size.min(16 * 1024);
    let wanted = (4 * group.len() * size.div_ceil(buf_size)).next_power_of_two();
    let count = wanted
        .min((PROVIDED_BYTES / buf_size).max(16))
        .clamp(16, 1 << 15);
    let provided = if !multishot {
        None
    } else {
        match Provided::register(&ring, count as u16, buf_size) {
            Ok(p) => Some(p),
            // Before Linux 5.19: one receive per message.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            Err(e) => return Err(format!("--client uring: provided buffers: {e}").into()),
        }
    };
    let mut client = Client {
        ring,
        in_flight: 0,
        min_wait,
        provided,
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
    let mut report = ThreadReport::default();
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
        let reaped = client
            .ring
            .completion()
            .filter(|cqe| !cqueue::more(cqe.flags()))
            .count();
        client.in_flight -= reaped;
    }
    if client.in_flight > 0 {
        let left = client.in_flight;
        // The kernel may still write into these buffers: never free them.
        std::mem::forget(conns);
        std::mem::forget(client);
        return Err(format!(
            "--client uring: {left} operations still in flight {DRAIN:?} after the sockets were shut down"
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
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        // Counted here, all at once: a corrupted echo returns in the middle
        // of the batch, and the drain must not wait for what was reaped.
        client.in_flight -= done.iter().filter(|d| !cqueue::more(d.2)).count();
        let now = Instant::now();
        for (data, result, flags) in done.drain(..) {
            let index = (data >> 1) as usize;
            let c = &mut conns[index];
            let recv = data & 1 == 1;
            let last = !cqueue::more(flags);
            if last {
                if recv {
                    c.recv_in_flight = false;
                } else {
                    c.send_in_flight = false;
                }
            }
            let outcome = if c.dead {
                Ok(())
            } else {
                let cqe = Completion {
                    recv,
                    result,
                    bid: cqueue::buffer_select(flags),
                    last,
                };
                complete(client, index, c, cqe, pattern, now, start, end, report)
            };
            // Whatever happened, a buffer the completion named goes back.
            if let (Some(bid), Some(provided)) =
                (cqueue::buffer_select(flags), client.provided.as_mut())
            {
                provided.give(bid);
            }
            match outcome {
                Ok(()) => {}
                Err(Stop::Corrupt(msg)) => return Err(msg.into()),
                Err(Stop::Lost(msg)) => {
                    c.dead = true;
                    report.lost(c.id, &msg);
                    // Let whatever else is in flight on it complete.
                    // SAFETY: a plain system call on a descriptor `c` owns.
                    unsafe { libc::shutdown(c.stream.as_raw_fd(), libc::SHUT_RDWR) };
                }
            }
        }
        if let Some(provided) = &client.provided {
            provided.publish();
        }
    }
}

/// One completion, as [`complete`] needs it.
struct Completion {
    recv: bool,
    result: i32,
    /// The provided buffer a multishot receive filled.
    bid: Option<u16>,
    /// No more completions follow for this operation (a multishot receive
    /// must be armed again).
    last: bool,
}

/// Handles one completion of connection `c` (number `index` in the ring):
/// checks what a receive brought, queues the rest of a short send or
/// receive (or arms a multishot receive again), and starts the next
/// message once the whole echo is back.
#[allow(clippy::too_many_arguments)]
fn complete(
    client: &mut Client,
    index: usize,
    c: &mut Conn,
    cqe: Completion,
    pattern: &Pattern,
    now: Instant,
    start: Instant,
    end: Instant,
    report: &mut ThreadReport,
) -> std::result::Result<(), Stop> {
    let lost = |what: &str, e: io::Error| Stop::Lost(format!("{what}: {e}"));
    let size = c.buf.len();
    let msg = pattern.message(c.id, c.seq);
    let multishot = client.provided.is_some();
    if cqe.result == -libc::ENOBUFS && multishot && cqe.recv {
        // Every provided buffer was taken: they are given back at the end
        // of this batch, before the receive armed again here can run.
        return client.recv(index, c).map_err(|e| lost("queue recv", e));
    }
    if cqe.result < 0 {
        let e = io::Error::from_raw_os_error(-cqe.result);
        return Err(lost(if cqe.recv { "recv" } else { "send" }, e));
    }
    let n = cqe.result as usize;
    if !cqe.recv {
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
        match (cqe.bid, &client.provided) {
            (Some(bid), Some(provided)) => {
                let got = provided.buf(bid, n);
                check_echo(c.id, c.seq, msg, from, got, c.queued)?;
            }
            (None, None) => {
                let got = &c.buf[from..(from + n).min(size)];
                check_echo(c.id, c.seq, msg, from, got, c.queued)?;
            }
            _ => return Err(Stop::Lost("a receive completed without its buffer".into())),
        }
        c.received += n;
        if (!multishot && c.received < size) || (multishot && cqe.last) {
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
        if !multishot {
            client.recv(index, c).map_err(|e| lost("queue recv", e))?;
        }
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
        for client in [Client::Uring, Client::UringMultishot, Client::Mio] {
            let report = load::run(&config(addr, client)).unwrap();
            assert!(report.messages > 0, "{client:?}: no round trip");
            assert_eq!(report.errors, 0, "{client:?}: {:?}", report.error_samples);
        }
    }

    #[test]
    fn a_changed_byte_fails_the_run() {
        // Offset 1 + 5 * 1000 + 17: byte 17 of message #5 (after the probe).
        let addr = serve(Some(1 + 5 * 1000 + 17), None);
        for client in [Client::Uring, Client::UringMultishot, Client::Mio] {
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
        for client in [Client::Uring, Client::UringMultishot, Client::Mio] {
            // Lost (the server closed it, or reset it when the next message
            // came), never a corrupted echo, and the run still ends.
            let report = load::run(&config(addr, client)).unwrap();
            assert_eq!(report.errors, 3, "{client:?}: {:?}", report.error_samples);
        }
    }
}
