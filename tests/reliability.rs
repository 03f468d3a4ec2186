//! Reliability over real sockets: back-pressure, timeouts, the drain at
//! stop, hostile peers and the engine's counters. Everything runs in this
//! process except the `SIGPIPE` test, whose server is a child process with
//! `SIGPIPE` at its default, fatal action (see `common::child`).
//!
//! The handler, [`Lab`], echoes, records what it sees ([`Seen`]) and obeys
//! a few commands, each a line starting with `!!cmd:`.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::child::{ChildServer, ChildSettings};
use common::*;
use ringloop::{
    Action, BackPressure, CloseReason, Conn, ConnHandle, ConnId, Engine, EngineBuilder, Error,
    EventHandler, LoopContext, LoopStats, TimeoutKind, Timeouts, WaterMarks,
};

/// The server half of the child-process tests (see `common::child`).
#[test]
#[ignore = "runs only as the child process of other tests"]
fn child_server() {
    common::child::serve_if_child();
}

// ----- the handler -----

/// Why a connection closed, comparable: the library's own kind.
type Closed = ringloop::CloseKind;

/// What the handlers of every loop saw.
#[derive(Default)]
struct Seen {
    /// Handles of the connections, in the order they opened.
    opened: Mutex<Vec<ConnHandle>>,
    /// How and when each connection closed.
    closes: Mutex<HashMap<ConnId, (Closed, Instant)>>,
    /// Outbound queue after each callback: (latest, largest) per connection.
    outbound: Mutex<HashMap<ConnId, (usize, usize)>>,
    /// Results of the writes made by commands, in order.
    writes: Mutex<Vec<ringloop::Result<usize>>>,
}

impl Seen {
    /// The handle of the `i`-th connection to open, once it has.
    fn handle(&self, i: usize) -> ConnHandle {
        let mut found = None;
        wait_until(&format!("connection {i} to open"), || {
            found = self.opened.lock().unwrap().get(i).cloned();
            found.is_some()
        });
        found.unwrap()
    }

    fn close_of(&self, id: ConnId) -> Option<(Closed, Instant)> {
        self.closes.lock().unwrap().get(&id).copied()
    }

    /// Waits until connection `id` has closed; how and when.
    fn wait_closed(&self, id: ConnId) -> (Closed, Instant) {
        let mut found = None;
        wait_until(&format!("connection {id} to close"), || {
            found = self.close_of(id);
            found.is_some()
        });
        found.unwrap()
    }

    fn outbound_of(&self, id: ConnId) -> (usize, usize) {
        self.outbound
            .lock()
            .unwrap()
            .get(&id)
            .copied()
            .unwrap_or_default()
    }
}

/// A push from the ticker (loop 0) to the first connection to open: one
/// `async_write` of `chunk` bytes of stream `seed` at a time, the next only
/// once the previous one completed.
struct TickPush {
    seed: u64,
    chunk: usize,
    offset: u64,
    in_flight: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
}

/// Echo, plus commands; records into [`Seen`].
struct Lab {
    seen: Arc<Seen>,
    /// Water marks for the connection that opens `n`-th.
    marks_for: Option<(usize, WaterMarks)>,
    tick_push: Option<TickPush>,
}

fn lab(seen: &Arc<Seen>) -> EngineBuilder<Lab> {
    lab_with(seen, None, |_| None)
}

fn lab_with(
    seen: &Arc<Seen>,
    marks_for: Option<(usize, WaterMarks)>,
    tick_push: impl Fn(usize) -> Option<TickPush> + Send + Sync + 'static,
) -> EngineBuilder<Lab> {
    let seen = seen.clone();
    Engine::builder(move |index| Lab {
        seen: seen.clone(),
        marks_for,
        tick_push: tick_push(index),
    })
    .listen("tcp://127.0.0.1:0")
}

/// `ms` as a timeout, `-` for none.
fn parse_timeout(s: &str) -> Option<Duration> {
    (s != "-").then(|| Duration::from_millis(s.parse().expect("milliseconds")))
}

impl Lab {
    /// Runs the command in `line` (without its prefix); `false` if unknown.
    fn command(&mut self, conn: &mut Conn<'_, ()>, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { words[i].parse().expect("a number") };
        let mut results = Vec::new();
        match words.as_slice() {
            // `bytes` bytes of stream `seed`, written by the handler.
            ["bulk", _, _] => results.push(conn.write(&stream_bytes(num(1), 0, num(2) as usize))),
            ["timeouts", idle, read, write] => {
                let mut t = Timeouts::none();
                t.idle = parse_timeout(idle);
                t.read = parse_timeout(read);
                t.write = parse_timeout(write);
                conn.set_timeouts(t).expect("valid timeouts");
            }
            // Stream `seed` from 0 as `count` tiny buffers (0 to 6 bytes)
            // in one writev.
            ["writev", _, _] => {
                let (seed, count) = (num(1), num(2) as usize);
                let sizes: Vec<usize> = (0..count).map(|i| i % 7).collect();
                let total: usize = sizes.iter().sum();
                let bytes = stream_bytes(seed, 0, total);
                let mut bufs = Vec::with_capacity(count);
                let mut at = 0;
                for n in sizes {
                    bufs.push(&bytes[at..at + n]);
                    at += n;
                }
                results.push(conn.writev(&bufs));
            }
            // Every kind of empty write around "ABC".
            ["zero"] => {
                results.push(conn.write(&[]));
                results.push(conn.writev(&[]));
                results.push(conn.writev(&[&[], b"A", &[], b"B", &[]]));
                results.push(conn.write_vec(Vec::new()));
                results.push(conn.writev(&[&[], &[]]));
                results.push(conn.write(b"C"));
                results.push(conn.write(&[]));
            }
            _ => return false,
        }
        self.seen.writes.lock().unwrap().extend(results);
        true
    }
}

impl EventHandler for Lab {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let mut opened = self.seen.opened.lock().unwrap();
        if let Some((n, marks)) = self.marks_for {
            if opened.len() == n {
                conn.set_write_water_marks(marks).unwrap();
            }
        }
        opened.push(conn.handle());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        // Every whole command line first (two may come in one read), then
        // an echo of anything else.
        loop {
            let input = conn.peek(conn.inbound_buffered());
            if input.starts_with(COMMAND) {
                let Some(end) = input.iter().position(|&b| b == b'\n') else {
                    break; // the rest of the line is still coming
                };
                let line = String::from_utf8_lossy(&input[COMMAND.len()..end]).into_owned();
                conn.discard(end + 1);
                assert!(self.command(conn, &line), "unknown command {line:?}");
                continue;
            }
            let data = conn.read_all();
            if conn.write(data).is_err() {
                return Action::Close;
            }
            break;
        }
        let queued = conn.outbound_buffered();
        let mut outbound = self.seen.outbound.lock().unwrap();
        let entry = outbound.entry(conn.id()).or_default();
        *entry = (queued, entry.1.max(queued));
        Action::None
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        self.seen
            .closes
            .lock()
            .unwrap()
            .insert(conn.id(), (reason.kind(), Instant::now()));
        Action::None
    }

    fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
        let tick = Duration::from_millis(1);
        let Some(push) = self.tick_push.as_mut() else {
            return (tick, Action::None);
        };
        let Some(handle) = self.seen.opened.lock().unwrap().first().cloned() else {
            return (tick, Action::None);
        };
        if push.in_flight.swap(true, Ordering::SeqCst) {
            return (tick, Action::None);
        }
        let data = stream_bytes(push.seed, push.offset, push.chunk);
        push.offset += push.chunk as u64;
        let (in_flight, completed, n) = (
            push.in_flight.clone(),
            push.completed.clone(),
            push.chunk as u64,
        );
        let _ = handle.async_write(data, move |r| {
            if r.is_ok() {
                completed.fetch_add(n, Ordering::SeqCst);
                in_flight.store(false, Ordering::SeqCst);
            }
        });
        (tick, Action::None)
    }
}

/// What starts a command line.
const COMMAND: &[u8] = b"!!cmd:";

/// Sends a command line.
fn command(stream: &mut TcpStream, line: &str) {
    stream
        .write_all(format!("!!cmd:{line}\n").as_bytes())
        .unwrap();
}

/// Reads exactly `len` bytes and checks they are stream `seed` from `offset`.
fn read_stream(stream: &mut TcpStream, seed: u64, offset: u64, len: usize) {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).expect("read the stream");
    check_stream(seed, offset, &buf);
}

/// A client whose receive buffer is set before it connects (so the kernel
/// neither autotunes it nor shrinks an advertised window).
fn tcp_client_with_receive_buffer(addr: std::net::SocketAddr, bytes: usize) -> TcpStream {
    use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType};
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let fd = sock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    sock::setsockopt(&fd, sockopt::RcvBuf, &bytes).expect("SO_RCVBUF");
    sock::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &sock::SockaddrIn::from(v4),
    )
    .expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Polls `value` until it has not changed for `quiet`; returns it.
fn settled<T: PartialEq + Copy + std::fmt::Debug>(quiet: Duration, value: impl Fn() -> T) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut last = value();
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        assert!(Instant::now() < deadline, "{last:?} never settled");
        thread::sleep(Duration::from_millis(10));
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

// ----- back-pressure -----

const HIGH: usize = 256 * 1024;
const LOW: usize = 64 * 1024;

fn small_marks() -> WaterMarks {
    WaterMarks::new(HIGH, LOW)
}

/// A thread writing `total` bytes of stream `seed` to `handle`, `chunk`
/// bytes per `async_write`, each only after the previous one completed (the
/// contract back-pressure relies on), then waking the connection so its
/// handler records the queue. Counts completed bytes; returns every
/// completion's result.
fn pusher(
    handle: ConnHandle,
    seed: u64,
    total: usize,
    chunk: usize,
    completed: Arc<AtomicU64>,
) -> thread::JoinHandle<Vec<ringloop::Result<usize>>> {
    thread::spawn(move || {
        let mut results = Vec::new();
        let mut offset = 0;
        while offset < total {
            let (tx, rx) = mpsc::channel();
            let queued = handle.async_write(stream_bytes(seed, offset as u64, chunk), move |r| {
                let _ = tx.send(r);
            });
            let result = rx.recv_timeout(PATIENCE).expect("the completion came");
            let failed = queued.is_err() || result.is_err();
            results.push(result);
            if failed {
                break;
            }
            offset += chunk;
            completed.fetch_add(chunk as u64, Ordering::SeqCst);
            let _ = handle.wake();
        }
        results
    })
}

#[test]
fn paused_connection_holds_async_write_completions_and_bounds_its_queue() {
    const CHUNK: usize = 16 * 1024;
    const TOTAL: usize = 4 << 20;
    let seen = Arc::new(Seen::default());
    // The second connection overrides the marks with lower ones.
    let own = WaterMarks::new(64 * 1024, 16 * 1024);
    let server = Running::start(
        lab_with(&seen, Some((1, own)), |_| None)
            .loops(1)
            .write_water_marks(small_marks())
            .send_buffer_size(16 * 1024),
    );
    let addr = server.tcp_addr(0);
    let mut clients = Vec::new();
    let mut pushers = Vec::new();
    for (i, high, low) in [(0, HIGH, LOW), (1, own.high, own.low)] {
        let client = tcp_client(addr);
        let handle = seen.handle(i);
        let completed = Arc::new(AtomicU64::new(0));
        let thread = pusher(handle.clone(), i as u64, TOTAL, CHUNK, completed.clone());
        clients.push(client);
        pushers.push((handle, completed, thread, high, low));
    }

    // Nobody reads: each pusher is soon held, its last write uncompleted.
    for (handle, completed, _, high, low) in &pushers {
        let held_at = settled(Duration::from_millis(300), || {
            completed.load(Ordering::SeqCst)
        });
        assert!(
            (held_at as usize) < TOTAL,
            "all {TOTAL} bytes completed with no reader"
        );
        handle.wake().unwrap();
        thread::sleep(Duration::from_millis(50));
        let (queued, largest) = seen.outbound_of(handle.id());
        assert!(
            queued > *low && largest <= high + CHUNK,
            "{}: queue {queued}, largest {largest}; high-water mark {high} plus one write {CHUNK}",
            handle.id()
        );
        // Still held.
        thread::sleep(Duration::from_millis(200));
        assert_eq!(completed.load(Ordering::SeqCst), held_at);
    }
    assert!(server.engine.total_stats().back_pressure_events >= 2);

    // The clients read: the completions are released, every byte arrives.
    for (i, client) in clients.iter_mut().enumerate() {
        read_stream(client, i as u64, 0, TOTAL);
    }
    for (handle, completed, thread, high, _) in pushers {
        let results = thread.join().unwrap();
        assert_eq!(results.len(), TOTAL / CHUNK);
        assert!(results.iter().all(|r| matches!(r, Ok(n) if *n == CHUNK)));
        assert_eq!(completed.load(Ordering::SeqCst), TOTAL as u64);
        let (_, largest) = seen.outbound_of(handle.id());
        assert!(largest <= high + CHUNK, "largest queue {largest}");
    }
    server.stop();
}

#[test]
fn an_echo_client_that_never_reads_stops_being_read() {
    const READ_BUFFER: usize = 16 * 1024;
    let seen = Arc::new(Seen::default());
    let server = Running::start(
        lab(&seen)
            .loops(1)
            .read_buffer_size(READ_BUFFER)
            .write_water_marks(small_marks())
            .send_buffer_size(16 * 1024)
            .recv_buffer_size(16 * 1024),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let id = seen.handle(0).id();

    // Write without reading until the writes block: the server stopped
    // reading once its echoes queued up past the high-water mark.
    client
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0usize;
    loop {
        assert!(
            sent < 256 << 20,
            "256 MiB went in without any back-pressure"
        );
        match client.write(&stream_bytes(9, sent as u64, 16 * 1024)) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let bytes_in = settled(Duration::from_millis(300), || {
        server.engine.total_stats().bytes_in
    });
    assert!(bytes_in < sent as u64, "the server read everything sent");
    let (_, largest) = seen.outbound_of(id);
    assert!(
        largest > HIGH && largest <= HIGH + READ_BUFFER,
        "largest queue {largest}: expected above {HIGH}, at most one read ({READ_BUFFER}) above it"
    );
    assert!(server.engine.total_stats().back_pressure_events >= 1);

    // Reading it all back resumes the connection; every byte is echoed.
    read_stream(&mut client, 9, 0, sent);
    client.set_write_timeout(Some(PATIENCE)).unwrap();
    echo_round_trip(&mut client, b"still served");
    assert_eq!(seen.close_of(id), None);
    server.stop();
}

#[test]
fn close_policy_closes_an_overflowing_connection() {
    const CHUNK: usize = 32 * 1024;
    let seen = Arc::new(Seen::default());
    let server = Running::start(
        lab(&seen)
            .loops(1)
            .write_water_marks(small_marks())
            .back_pressure(BackPressure::Close)
            .send_buffer_size(16 * 1024),
    );
    let addr = server.tcp_addr(0);
    // One pushed to through its handle, one echoing a client that never
    // reads, and a bystander.
    let pushed = tcp_client(addr);
    let pushed_id = seen.handle(0).id();
    let mut echoed = tcp_client(addr);
    let echoed_id = seen.handle(1).id();
    let mut bystander = tcp_client(addr);
    seen.handle(2);

    let completed = Arc::new(AtomicU64::new(0));
    let results = pusher(seen.handle(0), 3, 64 << 20, CHUNK, completed)
        .join()
        .unwrap();
    let (last, before) = results.split_last().unwrap();
    assert!(before.iter().all(|r| r.is_ok()));
    assert!(
        matches!(last, Err(Error::ConnectionClosed)),
        "the write that overflowed: {last:?}"
    );
    assert_eq!(seen.wait_closed(pushed_id).0, Closed::BackPressure);

    echoed
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0u64;
    while seen.close_of(echoed_id).is_none() {
        assert!(sent < 256 << 20, "256 MiB went in and nothing closed");
        match echoed.write(&[b'e'; 16 * 1024]) {
            Ok(n) => sent += n as u64,
            Err(_) => break,
        }
    }
    assert_eq!(seen.wait_closed(echoed_id).0, Closed::BackPressure);
    assert!(server.engine.total_stats().back_pressure_events >= 2);
    echo_round_trip(&mut bystander, b"unaffected");
    drop(pushed);
    server.stop();
}

#[test]
fn ticker_push_waits_for_completions_under_back_pressure() {
    const CHUNK: usize = 16 * 1024;
    let seen = Arc::new(Seen::default());
    let in_flight = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let push = {
        let (in_flight, completed) = (in_flight.clone(), completed.clone());
        move |index: usize| {
            (index == 0).then(|| TickPush {
                seed: 5,
                chunk: CHUNK,
                offset: 0,
                in_flight: in_flight.clone(),
                completed: completed.clone(),
            })
        }
    };
    let server = Running::start(
        lab_with(&seen, None, push)
            .loops(1)
            .ticker(true)
            .write_water_marks(small_marks())
            .send_buffer_size(16 * 1024),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let handle = seen.handle(0);

    let held_at = settled(Duration::from_millis(300), || {
        completed.load(Ordering::SeqCst)
    });
    assert!(in_flight.load(Ordering::SeqCst), "a write is held");
    handle.wake().unwrap();
    // The wake's on_traffic records the queue (bounded wait: under load
    // 50 ms was not always enough for it to run).
    wait_until("the wake's on_traffic", || {
        seen.outbound_of(handle.id()).0 > 0
    });
    let (queued, _) = seen.outbound_of(handle.id());
    assert!(
        queued > LOW && queued <= HIGH + CHUNK,
        "queue {queued} with the ticker's write held"
    );

    // Reading releases it; the ticker carries on, in order.
    let mut offset = 0u64;
    while offset < held_at + (1 << 20) {
        read_stream(&mut client, 5, offset, CHUNK);
        offset += CHUNK as u64;
    }
    assert!(completed.load(Ordering::SeqCst) > held_at);
    drop(client);
    server.stop();
}

// ----- timeouts -----

/// Reads until the server closes the connection (echoes and pushes are
/// discarded); returns when that happened.
fn wait_for_server_close(stream: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Instant::now(),
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

#[test]
fn idle_timeout_closes_a_silent_connection_but_not_a_busy_one() {
    const IDLE: Duration = Duration::from_millis(400);
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2).timeouts(Timeouts::none().idle(IDLE)));
    let addr = server.tcp_addr(0);

    let mut silent = tcp_client(addr);
    let silent_id = seen.handle(0).id();
    echo_round_trip(&mut silent, b"one echo, then silence");
    let silent_since = Instant::now();
    let mut busy = tcp_client(addr);
    let busy_id = seen.handle(1).id();

    // Busy: a byte every 20 ms for three idle periods.
    let busy_until = Instant::now() + IDLE * 3;
    let mut i = 0u8;
    let mut busy_since = Instant::now();
    while busy_since < busy_until {
        thread::sleep(Duration::from_millis(20));
        echo_round_trip(&mut busy, &[i]);
        busy_since = Instant::now();
        i = i.wrapping_add(1);
    }
    assert_eq!(
        seen.close_of(busy_id),
        None,
        "the busy connection timed out"
    );

    let (reason, at) = seen.wait_closed(silent_id);
    assert_eq!(reason, Closed::Timeout(TimeoutKind::Idle));
    let after = at - silent_since;
    assert!(
        after >= IDLE - Duration::from_millis(10) && after < IDLE + Duration::from_secs(2),
        "idle timeout of {IDLE:?} fired after {after:?}"
    );
    assert!(wait_for_server_close(&mut silent) >= silent_since + IDLE - Duration::from_millis(10));

    // Once silent, the busy one goes the same way.
    let (reason, at) = seen.wait_closed(busy_id);
    assert_eq!(reason, Closed::Timeout(TimeoutKind::Idle));
    assert!(at - busy_since >= IDLE - Duration::from_millis(10));
    assert_eq!(server.engine.total_stats().timeouts, 2);
    server.stop();
}

#[test]
fn read_timeout_fires_even_while_writes_keep_the_connection_out_of_idle() {
    const IDLE: Duration = Duration::from_millis(250);
    const READ: Duration = Duration::from_millis(700);
    let seen = Arc::new(Seen::default());
    let server = Running::start(
        lab(&seen)
            .loops(1)
            .timeouts(Timeouts::none().idle(IDLE).read(READ)),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let handle = seen.handle(0);
    echo_round_trip(&mut client, b"the last byte the server reads");
    let last_read = Instant::now();
    // The server writes every 20 ms, the client reads but never sends.
    let writer = thread::spawn(move || {
        while handle.write(b"tick".to_vec()).wait().is_ok() {
            thread::sleep(Duration::from_millis(20));
        }
        handle.id()
    });
    wait_for_server_close(&mut client);
    let id = writer.join().unwrap();
    let (reason, at) = seen.wait_closed(id);
    assert_eq!(reason, Closed::Timeout(TimeoutKind::Read));
    assert!(
        at - last_read >= READ - Duration::from_millis(10),
        "read timeout of {READ:?} fired after {:?}",
        at - last_read
    );
    assert_eq!(server.engine.total_stats().timeouts, 1);
    server.stop();
}

#[test]
fn write_timeout_fires_only_with_bytes_queued_and_none_written() {
    const WRITE: Duration = Duration::from_millis(500);
    const BULK: usize = 8 << 20;
    let seen = Arc::new(Seen::default());
    // A small send buffer: Linux reports a full socket writable again only
    // once a third of its send buffer is free, and with an autotuned 4 MiB
    // buffer that takes ~400 ms at the slow reader's 3 MB/s, longer than
    // the write timeout; the server then has written nothing for that long
    // although the reader makes progress.
    let server = Running::start(
        lab(&seen)
            .loops(1)
            .send_buffer_size(64 * 1024)
            .timeouts(Timeouts::none().write(WRITE)),
    );
    let addr = server.tcp_addr(0);
    // Stuck: 8 MiB queued, never read.
    let mut stuck = tcp_client(addr);
    let stuck_id = seen.handle(0).id();
    command(&mut stuck, &format!("bulk 1 {BULK}"));
    // Slow: the same, read 64 KiB every 20 ms (with a receive buffer the
    // kernel cannot grow to megabytes, which would delay its window updates
    // by as much).
    let mut slow = tcp_client_with_receive_buffer(addr, 128 * 1024);
    let slow_id = seen.handle(1).id();
    command(&mut slow, &format!("bulk 2 {BULK}"));
    // Silent: nothing queued, nothing read.
    let mut silent = tcp_client(addr);
    let silent_id = seen.handle(2).id();

    let started = Instant::now();
    let mut offset = 0u64;
    while seen.close_of(stuck_id).is_none() || started.elapsed() < WRITE * 4 {
        assert!(
            started.elapsed() < PATIENCE,
            "the stuck connection never timed out"
        );
        read_stream(&mut slow, 2, offset, 64 * 1024);
        offset += 64 * 1024;
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.close_of(stuck_id).unwrap().0,
        Closed::Timeout(TimeoutKind::Write)
    );
    assert_eq!(seen.close_of(slow_id), None, "a slow reader timed out");
    assert_eq!(seen.close_of(silent_id), None, "an empty queue timed out");
    echo_round_trip(&mut silent, b"still here");
    // What the stuck client gets is a clean prefix, then the close.
    let got = read_to_end(&mut stuck);
    assert!(got.len() < BULK);
    check_stream(1, 0, &got);
    assert_eq!(server.engine.total_stats().timeouts, 1);
    drop(slow);
    server.stop();
}

#[test]
fn set_timeouts_overrides_the_engine_default_per_connection() {
    const IDLE: Duration = Duration::from_millis(400);
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2).timeouts(Timeouts::none().idle(IDLE)));
    let addr = server.tcp_addr(0);
    let mut conns = Vec::new();
    for (i, cmd) in [
        None,                      // engine default
        Some("timeouts 150 - -"),  // shorter
        Some("timeouts 5000 - -"), // longer
        Some("timeouts - - -"),    // none at all
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = tcp_client(addr);
        let id = seen.handle(i).id();
        match cmd {
            Some(cmd) => command(&mut c, cmd),
            None => c.write_all(b"x").unwrap(),
        }
        conns.push((c, id, Instant::now()));
    }
    thread::sleep(IDLE * 3);
    let (default, default_at) = seen.wait_closed(conns[0].1);
    let (short, short_at) = seen.wait_closed(conns[1].1);
    assert_eq!(default, Closed::Timeout(TimeoutKind::Idle));
    assert_eq!(short, Closed::Timeout(TimeoutKind::Idle));
    assert!(default_at - conns[0].2 >= IDLE - Duration::from_millis(10));
    let short_after = short_at - conns[1].2;
    assert!(
        short_after >= Duration::from_millis(140) && short_after < IDLE,
        "the 150 ms override fired after {short_after:?}"
    );
    for (c, id, _) in &mut conns[2..] {
        assert_eq!(seen.close_of(*id), None, "{id} timed out");
        echo_round_trip(c, b"alive");
    }
    assert_eq!(server.engine.total_stats().timeouts, 2);
    server.stop();
}

#[test]
fn a_timeout_set_on_an_engine_without_timeouts_counts_from_now() {
    // The engine has no default timeouts and has been running longer than
    // the timeout the connection then asks for.
    const IDLE: Duration = Duration::from_millis(400);
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(1));
    let addr = server.tcp_addr(0);
    thread::sleep(IDLE * 3);
    let mut c = tcp_client(addr);
    let id = seen.handle(0).id();
    command(&mut c, "timeouts 400 - -");
    let asked = Instant::now();
    // Another connection keeps the loop turning.
    let mut other = tcp_client(addr);
    while asked.elapsed() < IDLE / 2 {
        echo_round_trip(&mut other, b"turn");
        thread::sleep(Duration::from_millis(10));
    }
    let (reason, at) = seen.wait_closed(id);
    assert_eq!(reason, Closed::Timeout(TimeoutKind::Idle));
    assert!(
        at - asked >= IDLE - Duration::from_millis(10),
        "an idle timeout of {IDLE:?} fired after {:?}",
        at - asked
    );
    server.stop();
}

// ----- the drain at stop -----

/// Reads to the end in a thread; returns everything read.
fn reader(mut stream: TcpStream, delay: Duration) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        thread::sleep(delay);
        read_to_end(&mut stream)
    })
}

#[test]
fn stop_delivers_every_byte_queued_before_it_and_runs_every_callback_once() {
    const CLIENTS: usize = 6;
    const HANDLER_BYTES: usize = 2 << 20;
    const WRITES: usize = 32;
    const CHUNK: usize = 64 * 1024;
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2));
    let addr = server.tcp_addr(0);

    // Each connection gets 2 MiB written by its handler, then 32 async
    // writes of 64 KiB, none read yet.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = tcp_client(addr);
        let handle = seen.handle(i);
        command(&mut c, &format!("bulk {i} {HANDLER_BYTES}"));
        clients.push((c, handle));
    }
    wait_until("the handlers' writes", || {
        seen.writes.lock().unwrap().len() == CLIENTS
    });
    // (connection, write, outcome) of every callback.
    type Callbacks = Arc<Mutex<Vec<(usize, usize, ringloop::Result<usize>)>>>;
    let callbacks: Callbacks = Arc::default();
    for (i, (_, handle)) in clients.iter().enumerate() {
        for k in 0..WRITES {
            let offset = (HANDLER_BYTES + k * CHUNK) as u64;
            let callbacks = callbacks.clone();
            handle
                .async_write(stream_bytes(i as u64, offset, CHUNK), move |r| {
                    callbacks.lock().unwrap().push((i, k, r));
                })
                .expect("queued");
        }
    }

    // Stop while all of it is still queued; the clients only start reading
    // 300 ms later, and the drain waits for them.
    let stop_started = Instant::now();
    let stopper = {
        let engine = server.engine.clone();
        thread::spawn(move || engine.stop())
    };
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(c, _)| reader(c, Duration::from_millis(300)))
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.join().unwrap();
        assert_eq!(got.len(), HANDLER_BYTES + WRITES * CHUNK, "client {i}");
        check_stream(i as u64, 0, &got);
    }
    stopper.join().unwrap();
    assert!(stop_started.elapsed() >= Duration::from_millis(300));
    server.join();

    let mut callbacks = std::mem::take(&mut *callbacks.lock().unwrap());
    callbacks.sort_by_key(|(i, k, _)| (*i, *k));
    assert_eq!(callbacks.len(), CLIENTS * WRITES, "one callback per write");
    for (n, (i, k, r)) in callbacks.iter().enumerate() {
        assert_eq!(
            (*i, *k),
            (n / WRITES, n % WRITES),
            "callbacks ran once each"
        );
        assert!(matches!(r, Ok(n) if *n == CHUNK), "write {i}/{k}: {r:?}");
    }
    let closes = seen.closes.lock().unwrap();
    assert_eq!(closes.len(), CLIENTS);
    assert!(closes.values().all(|(c, _)| *c == Closed::Shutdown));
}

#[test]
fn writes_sent_before_stop_are_applied_not_refused() {
    // Writers flood four connections while readers keep every queue empty;
    // the stop comes in the middle. Each write whose `async_write` returned
    // before `stop` was called was queued before the stop, and must be
    // applied and delivered: a connection must not be closed as "flushed"
    // while writes to it wait in the loop's mailbox.
    const CLIENTS: usize = 4;
    const MAX_WRITES: usize = 200_000;
    const CHUNK: usize = 256;
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(1));
    let addr = server.tcp_addr(0);
    let mut readers = Vec::new();
    let mut handles = Vec::new();
    for i in 0..CLIENTS {
        let c = tcp_client(addr);
        handles.push(seen.handle(i));
        readers.push(reader(c, Duration::ZERO));
    }
    let stopping = Arc::new(AtomicBool::new(false));
    // One writer thread per connection (its own lane, so its order holds).
    // Each returns how many writes were queued before the stop, and the
    // outcome of every write.
    let writers: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, handle)| {
            let stopping = stopping.clone();
            thread::spawn(move || {
                let results: Arc<Mutex<Vec<Option<bool>>>> = Arc::default();
                let mut before_stop = 0;
                for k in 0..MAX_WRITES {
                    results.lock().unwrap().push(None);
                    let slot = results.clone();
                    let data = stream_bytes(i as u64, (k * CHUNK) as u64, CHUNK);
                    let queued = handle.async_write(data, move |r| {
                        slot.lock().unwrap()[k] = Some(r.is_ok());
                    });
                    if stopping.load(Ordering::SeqCst) || queued.is_err() {
                        break;
                    }
                    before_stop = k + 1;
                }
                (before_stop, results)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    stopping.store(true, Ordering::SeqCst);
    server.engine.stop();
    server.join();
    for (i, (w, r)) in writers.into_iter().zip(readers).enumerate() {
        let (before_stop, results) = w.join().unwrap();
        let results = results.lock().unwrap();
        assert!(before_stop > 0 && before_stop < MAX_WRITES);
        assert!(
            results.iter().all(Option::is_some),
            "client {i}: a callback never ran"
        );
        let refused: Vec<usize> = (0..before_stop)
            .filter(|&k| results[k] == Some(false))
            .collect();
        let applied = results.iter().filter(|r| **r == Some(true)).count();
        let got = r.join().unwrap();
        check_stream(i as u64, 0, &got);
        assert_eq!(
            got.len(),
            applied * CHUNK,
            "client {i}: applied writes lost"
        );
        assert!(
            refused.is_empty(),
            "client {i}: {} of the {before_stop} writes queued before the stop were refused \
             (the first: #{})",
            refused.len(),
            refused[0]
        );
    }
}

#[test]
fn drain_deadline_closes_a_client_that_never_reads_and_says_so() {
    const DRAIN: Duration = Duration::from_millis(300);
    const STUCK_BYTES: usize = 16 << 20;
    const READER_BYTES: usize = 1 << 20;
    capture_logs();
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(1).drain_timeout(DRAIN));
    let addr = server.tcp_addr(0);
    let mut stuck = tcp_client(addr);
    let stuck_id = seen.handle(0).id();
    command(&mut stuck, &format!("bulk 1 {STUCK_BYTES}"));
    let mut good = tcp_client(addr);
    seen.handle(1);
    command(&mut good, &format!("bulk 2 {READER_BYTES}"));
    wait_until("the handlers' writes", || {
        seen.writes.lock().unwrap().len() == 2
    });
    let good = reader(good, Duration::from_millis(50));

    let started = Instant::now();
    server.engine.stop();
    let took = started.elapsed();
    server.join();
    assert!(
        took >= DRAIN - Duration::from_millis(10) && took < DRAIN + Duration::from_secs(3),
        "a drain of {DRAIN:?} took {took:?}"
    );
    assert_eq!(seen.close_of(stuck_id).unwrap().0, Closed::Shutdown);
    assert!(
        captured_logs()
            .iter()
            .any(|l| l.contains("closing 1 connections with unsent bytes")),
        "no warning about the hard close: {:?}",
        captured_logs()
    );
    // The reader got everything; the stuck one a clean prefix, then the close.
    let got = good.join().unwrap();
    assert_eq!(got.len(), READER_BYTES);
    check_stream(2, 0, &got);
    let got = read_to_end(&mut stuck);
    assert!(got.len() < STUCK_BYTES);
    check_stream(1, 0, &got);

    // stop_with_timeout overrides the builder's 5 s default.
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(1));
    let mut stuck = tcp_client(server.tcp_addr(0));
    seen.handle(0);
    command(&mut stuck, &format!("bulk 1 {STUCK_BYTES}"));
    wait_until("the handler's write", || {
        seen.writes.lock().unwrap().len() == 1
    });
    let started = Instant::now();
    server.engine.stop_with_timeout(DRAIN);
    let took = started.elapsed();
    server.join();
    assert!(
        took >= DRAIN - Duration::from_millis(10) && took < DRAIN + Duration::from_secs(3),
        "stop_with_timeout({DRAIN:?}) took {took:?}"
    );
}

// ----- hostile peers -----

#[test]
fn a_reset_mid_write_affects_only_its_own_connection() {
    const BULK: usize = 4 << 20;
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2));
    let addr = server.tcp_addr(0);
    let mut bystanders = Vec::new();
    for i in 0..3 {
        let mut c = tcp_client(addr);
        let id = seen.handle(i).id();
        command(&mut c, &format!("bulk {i} {BULK}"));
        bystanders.push((c, id));
    }
    let mut victims = Vec::new();
    for i in 3..13 {
        let mut c = tcp_client(addr);
        let handle = seen.handle(i);
        command(&mut c, &format!("bulk {i} {BULK}"));
        read_stream(&mut c, i as u64, 0, 64 * 1024);
        // More queued through the handle, then a reset mid-write.
        let done = handle.write(vec![b'v'; 1 << 20]);
        reset_on_close(&c);
        drop(c);
        victims.push((handle, done));
    }
    // Writes to the reset connections fail cleanly, never panic.
    for (handle, done) in &victims {
        let _ = done.wait_timeout(PATIENCE).expect("the completion came");
        let (reason, _) = seen.wait_closed(handle.id());
        assert!(
            matches!(reason, Closed::Reset | Closed::Error),
            "{}: {reason:?}",
            handle.id()
        );
        assert!(handle.write(b"late".to_vec()).wait().is_err());
    }
    for (i, (c, id)) in bystanders.iter_mut().enumerate() {
        read_stream(c, i as u64, 0, BULK);
        echo_round_trip(c, b"unaffected");
        assert_eq!(seen.close_of(*id), None);
    }
    assert_eq!(server.engine.connection_count(), 3);
    server.stop();
}

#[test]
fn writing_after_the_peer_closed_does_not_raise_sigpipe() {
    // A child server with SIGPIPE at its default action: a single send
    // without MSG_NOSIGNAL to a closed peer would kill it.
    let mut server = ChildServer::start(ChildSettings {
        sigpipe_default: true,
        ..ChildSettings::default()
    });
    const CLIENTS: u64 = 20;
    for i in 0..CLIENTS {
        let mut c = tcp_client(server.addr);
        // The pusher writes 64 MiB, far more than the client takes.
        c.write_all(format!("PUSH {}\n", 64 << 20).as_bytes())
            .unwrap();
        read_stream(&mut c, 0, 0, 256 * 1024);
        if i % 2 == 0 {
            reset_on_close(&c);
        } else {
            c.shutdown(Shutdown::Both).unwrap();
        }
    }
    // Every pusher went on writing to its closed peer until a write failed.
    let stats = server.wait_stats("every pusher stopped by a failed write", |s| {
        s.push_errors == CLIENTS && s.connections == 0
    });
    assert!(server.is_alive(), "the server died");
    assert_eq!(stats.opened, CLIENTS);
    echo_round_trip(&mut tcp_client(server.addr), b"alive");
    server.stop();
}

#[test]
fn zero_length_writes_are_harmless() {
    let seen = Arc::new(Seen::default());
    // The commands below queue 4 MiB from a callback and expect the next
    // command to be read behind it: marks at the former 4 MiB default (the
    // 64 KiB default would rightly stop reading a client that does not read).
    let server = Running::start(
        lab(&seen)
            .loops(1)
            .write_water_marks(WaterMarks::new(4 << 20, 1 << 20)),
    );
    let mut c = tcp_client(server.tcp_addr(0));
    let handle = seen.handle(0);

    // With nothing queued.
    command(&mut c, "zero");
    let mut abc = [0u8; 3];
    c.read_exact(&mut abc).unwrap();
    assert_eq!(&abc, b"ABC");
    assert_eq!(handle.write(Vec::new()).wait().unwrap(), 0);
    let (tx, rx) = mpsc::channel();
    handle
        .async_writev(vec![Vec::new(), Vec::new()], move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap().unwrap(), 0);
    echo_round_trip(&mut c, b"after the empty writes");

    // Behind 4 MiB that is still queued. (Bytes from the socket and
    // messages from a handle are not ordered with each other: wait until
    // the commands ran before writing through the handle.)
    command(&mut c, &format!("bulk 4 {}", 4 << 20));
    command(&mut c, "zero");
    wait_until("the commands", || seen.writes.lock().unwrap().len() == 15);
    assert_eq!(handle.write(Vec::new()).wait().unwrap(), 0);
    assert_eq!(handle.write(b"D".to_vec()).wait().unwrap(), 1);
    read_stream(&mut c, 4, 0, 4 << 20);
    let mut abcd = [0u8; 4];
    c.read_exact(&mut abcd).unwrap();
    assert_eq!(&abcd, b"ABCD");
    echo_round_trip(&mut c, b"still fine");

    let results: Vec<usize> = seen
        .writes
        .lock()
        .unwrap()
        .iter()
        .map(|r| *r.as_ref().expect("every write succeeded"))
        .collect();
    let zero = [0, 0, 2, 0, 0, 1, 0];
    assert_eq!(results[..7], zero);
    assert_eq!(results[7], 4 << 20);
    assert_eq!(results[8..], zero);
    assert_eq!(seen.close_of(handle.id()), None);
    server.stop();
}

#[test]
fn writev_of_thousands_of_tiny_buffers_keeps_every_byte_in_order() {
    const COUNT: usize = 5000; // more than IOV_MAX (1024)
    let tiny_total: usize = (0..COUNT).map(|i| i % 7).sum();
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(1));
    let mut c = tcp_client(server.tcp_addr(0));
    let handle = seen.handle(0);

    // From the handler, with nothing queued...
    command(&mut c, &format!("writev 1 {COUNT}"));
    read_stream(&mut c, 1, 0, tiny_total);
    // ...and behind 4 MiB still queued.
    command(&mut c, &format!("bulk 2 {}", 4 << 20));
    command(&mut c, &format!("writev 3 {COUNT}"));
    read_stream(&mut c, 2, 0, 4 << 20);
    read_stream(&mut c, 3, 0, tiny_total);

    // Through the handle: one writev of 5000 buffers, then 5000 one-to-six
    // byte writes, each its own message.
    let bytes = stream_bytes(4, 0, 2 * tiny_total);
    let mut at = 0;
    let bufs: Vec<Vec<u8>> = (0..COUNT)
        .map(|i| {
            let b = bytes[at..at + i % 7].to_vec();
            at += i % 7;
            b
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    handle
        .async_writev(bufs, move |r| {
            let _ = tx2.send(r);
        })
        .unwrap();
    for i in 0..COUNT {
        let tx = tx.clone();
        handle
            .async_write(bytes[at..at + i % 7].to_vec(), move |r| {
                let _ = tx.send(r);
            })
            .unwrap();
        at += i % 7;
    }
    drop(tx);
    read_stream(&mut c, 4, 0, 2 * tiny_total);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), COUNT + 1);
    assert!(matches!(results[0], Ok(n) if n == tiny_total));
    assert!(results.iter().all(|r| r.is_ok()));

    let handler_results = std::mem::take(&mut *seen.writes.lock().unwrap());
    assert!(matches!(handler_results[0], Ok(n) if n == tiny_total));
    assert!(matches!(handler_results[2], Ok(n) if n == tiny_total));
    echo_round_trip(&mut c, b"after the flood of iovecs");
    server.stop();
}

#[test]
fn thousands_of_connections_opening_and_closing_at_once_affect_only_their_own() {
    const CHURN_THREADS: usize = 8;
    const PER_THREAD: usize = 250;
    raise_nofile_limit();
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2));
    let addr = server.tcp_addr(0);

    // Bystanders: verified echo in a loop until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let bystanders: Vec<_> = (0..4u64)
        .map(|b| {
            let stop = stop.clone();
            let mut c = tcp_client(addr);
            thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    echo_round_trip(&mut c, &payload(b * 1_000_000 + rounds, 4096));
                    rounds += 1;
                }
                (c, rounds)
            })
        })
        .collect();
    // Opened (on_open ran), not only handed to a loop: the first four
    // handles in `seen` are the bystanders'.
    wait_until("bystanders opened", || {
        seen.opened.lock().unwrap().len() == 4
    });

    // Every churn thread opens its connections, then all act at once.
    let barrier = Arc::new(std::sync::Barrier::new(CHURN_THREADS));
    let churn: Vec<_> = (0..CHURN_THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut conns: Vec<TcpStream> = (0..PER_THREAD).map(|_| tcp_client(addr)).collect();
                barrier.wait();
                for (i, mut c) in conns.drain(..).enumerate() {
                    match i % 4 {
                        0 => {} // plain close
                        1 => reset_on_close(&c),
                        2 => {
                            // A burst, then a reset without reading the echo.
                            let _ = c.write_all(&[b'z'; 64 * 1024]);
                            reset_on_close(&c);
                        }
                        _ => echo_round_trip(&mut c, &payload((t * PER_THREAD + i) as u64, 100)),
                    }
                }
            })
        })
        .collect();
    for t in churn {
        t.join().expect("churn thread");
    }
    wait_until("the churn connections closed", || {
        server.engine.connection_count() == 4
    });
    stop.store(true, Ordering::SeqCst);
    let mut kept = Vec::new();
    for b in bystanders {
        let (mut c, rounds) = b.join().expect("a bystander's echo failed");
        assert!(rounds > 0);
        echo_round_trip(&mut c, b"unaffected");
        kept.push(c);
    }
    let opened: Vec<ConnId> = seen.opened.lock().unwrap().iter().map(|h| h.id()).collect();
    let closed: Vec<ConnId> = seen.closes.lock().unwrap().keys().copied().collect();
    assert_eq!(opened.len(), 4 + CHURN_THREADS * PER_THREAD);
    assert_eq!(
        closed.len(),
        opened.len() - 4,
        "exactly the churn connections closed"
    );
    assert!(opened[..4].iter().all(|id| !closed.contains(id)));
    drop(kept);
    server.stop();
}

// ----- counters -----

fn without_doorbells(mut s: LoopStats) -> LoopStats {
    s.doorbell_writes = 0;
    s
}

#[test]
fn stats_count_connections_bytes_messages_and_doorbell_writes() {
    const CLIENTS: usize = 6;
    let seen = Arc::new(Seen::default());
    let server = Running::start(lab(&seen).loops(2));
    let engine = server.engine.clone();
    assert_eq!(
        without_doorbells(engine.total_stats()),
        LoopStats::default()
    );
    let addr = server.tcp_addr(0);

    // One at a time, so that the i-th to open is clients[i].
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let c = tcp_client(addr);
            seen.handle(i);
            c
        })
        .collect();
    let mut sent = 0u64;
    for (i, c) in clients.iter_mut().enumerate() {
        let data = payload(i as u64, 1000 * (i + 1));
        echo_round_trip(c, &data);
        sent += data.len() as u64;
    }
    // A loop counts bytes just after its system call, so a client may see
    // its echo a moment before the counter does.
    wait_until("the byte counters", || {
        engine.total_stats().bytes_out == sent
    });
    let s = engine.total_stats();
    assert_eq!(s.connections, CLIENTS as u64);
    assert_eq!(s.connections_opened, CLIENTS as u64);
    assert_eq!(s.bytes_in, sent);
    assert_eq!(s.bytes_out, sent);
    // One `Accepted` hand-off per connection, from the acceptor.
    assert_eq!(s.messages, CLIENTS as u64);
    assert_eq!(s.back_pressure_events, 0);
    assert_eq!(s.timeouts, 0);
    let per_loop = engine.stats();
    assert_eq!(per_loop.len(), 2);
    assert!(per_loop
        .iter()
        .all(|l| l.connections == (CLIENTS / 2) as u64));
    assert_eq!(per_loop.iter().copied().sum::<LoopStats>(), s);

    // An async write to an idle (parked) loop: one message, one doorbell
    // write to wake it, and its bytes.
    thread::sleep(Duration::from_millis(100));
    let handle = seen.handle(0);
    let target = handle.id().loop_index();
    let before = engine.stats()[target];
    assert_eq!(handle.write(b"0123456789".to_vec()).wait().unwrap(), 10);
    let mut got = [0u8; 10];
    clients[0].read_exact(&mut got).unwrap();
    wait_until("the byte counter", || {
        engine.stats()[target].bytes_out == before.bytes_out + 10
    });
    let after = engine.stats()[target];
    assert_eq!(after.messages - before.messages, 1);
    assert_eq!(after.doorbell_writes - before.doorbell_writes, 1);
    assert_eq!(after.bytes_out - before.bytes_out, 10);

    // A burst of writes from one thread: all counted as messages, and far
    // fewer doorbell writes than messages (the loop is awake for most).
    let before = engine.stats()[target];
    let pending: Vec<_> = (0..500).map(|_| handle.write(vec![b'x'; 10])).collect();
    for p in pending {
        p.wait().unwrap();
    }
    let mut got = vec![0u8; 5000];
    clients[0].read_exact(&mut got).unwrap();
    wait_until("the byte counter", || {
        engine.stats()[target].bytes_out == before.bytes_out + 5000
    });
    let after = engine.stats()[target];
    assert_eq!(after.messages - before.messages, 500);
    assert!(after.doorbell_writes - before.doorbell_writes <= 500);
    assert_eq!(after.bytes_out - before.bytes_out, 5000);

    drop(clients);
    wait_until("every connection closed", || engine.connection_count() == 0);
    let s = engine.total_stats();
    assert_eq!(s.connections, 0);
    assert_eq!(s.connections_opened, CLIENTS as u64);
    assert_eq!(s.bytes_in, sent);
    assert_eq!(s.bytes_out, sent + 10 + 5000);
    server.stop();
}
