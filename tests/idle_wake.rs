//! Liveness of the wake-up path over the real engine: an idle event loop with
//! no timers, whose only work is writes sent from other threads, must wake
//! for each of them.
//!
//! The loop's mailbox doorbell is then the only thing that can wake it, so a
//! lost wake-up would leave a write unapplied for good. The test first checks
//! that the loop really is in that state: blocked in `epoll_wait` with an
//! infinite timeout (read from `/proc/self/task/TID/syscall`), not waking for
//! a timer wheel tick, an overflow retry or any other periodic timeout that
//! would apply a lost write late and hide the bug.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use ringloop::{Action, ConnHandle, EventHandler, Timeouts};
use ringloop::{Doorbell, Engine};

/// Writer threads, writes per thread, and the longest random pause before a
/// write (long enough that the loop goes back to `epoll_wait` in between).
const WRITERS: u64 = 4;
const WRITES: u64 = 25;
const MAX_PAUSE_US: u64 = 20_000;
/// Generous bound for one write to be applied: with a lost wake-up and no
/// other wake source it would never be.
const APPLIED_WITHIN: Duration = Duration::from_secs(10);
/// Bytes per write: the writer and the write's number, 4 bytes each.
const RECORD: usize = 8;

/// Hands each connection's handle out and otherwise does nothing: the client
/// never sends, so the connection never wakes the loop.
struct GiveHandle(mpsc::Sender<ConnHandle>);

impl EventHandler for GiveHandle {
    type State = ();

    fn on_open(&mut self, conn: &mut ringloop::Conn<'_, ()>) -> Action {
        let _ = self.0.send(conn.handle());
        Action::None
    }
}

/// Where a thread is blocked, from `/proc/self/task/TID/syscall`.
#[derive(Debug, PartialEq)]
enum Blocked {
    /// In `epoll_wait`/`epoll_pwait(2)` (or, on io_uring, `io_uring_enter`)
    /// with no timeout: only an fd wakes it.
    EpollForever,
    /// Anything else: running, another call, or an epoll wait with a timeout
    /// (the raw line, for the failure message).
    Other(String),
}

/// Where the engine's event-loop thread(s) are blocked right now.
fn event_loops_blocked() -> Vec<Blocked> {
    let mut states = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task entry").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("ringloop-loop-") {
            continue;
        }
        let line = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
        states.push(classify(line.trim()));
    }
    states
}

/// `nr arg1 .. arg6 sp pc`, args in hex (x86-64 and aarch64 numbers).
fn classify(line: &str) -> Blocked {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let arg = |i: usize| {
        fields
            .get(i)
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
    };
    let nr = fields.first().and_then(|n| n.parse::<u64>().ok());
    let forever = match (std::env::consts::ARCH, nr) {
        // epoll_wait, epoll_pwait: the timeout is the int in arg 4 (-1).
        ("x86_64", Some(232 | 281)) | ("aarch64", Some(22)) => arg(4).map(|t| t as u32 == u32::MAX),
        // epoll_pwait2: a timespec pointer, NULL for no timeout.
        (_, Some(441)) => arg(4).map(|t| t == 0),
        // io_uring_enter (the io_uring driver): waiting for at least one
        // completion (GETEVENTS) without IORING_ENTER_EXT_ARG, which is how
        // the driver passes a timeout.
        (_, Some(426)) => match (arg(3), arg(4)) {
            (Some(min), Some(flags)) => Some(min >= 1 && flags & 1 == 1 && flags & 8 == 0),
            _ => None,
        },
        _ => None,
    };
    if forever == Some(true) {
        Blocked::EpollForever
    } else {
        Blocked::Other(line.to_string())
    }
}

/// Waits until the (single) event loop is blocked in `epoll_wait` with no
/// timeout; fails if it never is within `PATIENCE` (for instance because a
/// periodic timeout keeps it waking up).
fn assert_idle_loop_sleeps_forever() {
    let mut last = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        last = event_loops_blocked();
        if last == [Blocked::EpollForever] {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("the idle event loop never blocked in epoll_wait without a timeout: {last:?}");
}

/// xorshift64*: a pause per write, different per writer, reproducible.
fn pauses(seed: u64) -> impl Iterator<Item = Duration> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::iter::repeat_with(move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        Duration::from_micros(r % MAX_PAUSE_US)
    })
}

/// Several threads write to one connection of an idle loop with no timers,
/// at random intervals, one write at a time each; every write must be
/// applied (its completion run on the loop, its bytes read by the client)
/// within `APPLIED_WITHIN`, and each writer's records arrive once, in order.
///
/// Mutations caught (checked by hand): making `WakeWord::notify` never return
/// `true` (no doorbell write) leaves the idle loop asleep, so not even the
/// accepted connection (itself a message from the acceptor thread) reaches
/// it, and the test fails on its bound; giving the idle loop a periodic
/// timeout (arming the ticker: `epoll_wait` with 1,000 ms) fails the
/// "sleeps forever" check.
///
/// Run with each doorbell: an eventfd (registered edge-triggered, never
/// drained) and a pipe (level-triggered, drained when it fires). One after
/// the other, so that the process has one event loop at a time.
#[test]
fn an_idle_loop_without_timers_wakes_for_every_cross_thread_write() {
    for doorbell in [Doorbell::EventFd, Doorbell::Pipe] {
        writes_to_an_idle_loop(doorbell);
    }
}

fn writes_to_an_idle_loop(doorbell: Doorbell) {
    let (tx, rx) = mpsc::channel();
    let server = Running::start(
        Engine::builder(move |_| GiveHandle(tx.clone()))
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            // The accepted connection is itself a hand-off message to wake for.
            .acceptor_thread(true)
            .doorbell(doorbell)
            // No timers at all: nothing but the doorbell may wake the loop.
            .timeouts(Timeouts::none())
            .ticker(false),
    );
    let mut client = TcpStream::connect(server.tcp_addr(0)).expect("connect");
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let handle = rx.recv_timeout(PATIENCE).expect("on_open gave the handle");

    // The precondition that makes this a liveness check.
    assert_idle_loop_sleeps_forever();

    let reader = thread::spawn(move || {
        let mut next = vec![0u64; WRITERS as usize];
        let mut record = [0u8; RECORD];
        for _ in 0..WRITERS * WRITES {
            client
                .read_exact(&mut record)
                .expect("every record arrives");
            let writer = u32::from_le_bytes(record[..4].try_into().unwrap()) as usize;
            let seq = u32::from_le_bytes(record[4..].try_into().unwrap()) as u64;
            assert_eq!(
                seq, next[writer],
                "writer {writer}: lost, repeated or reordered"
            );
            next[writer] += 1;
        }
        client
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let handle = handle.clone();
            thread::spawn(move || {
                for (seq, pause) in (0..WRITES).zip(pauses(w + 1)) {
                    thread::sleep(pause);
                    let mut record = (w as u32).to_le_bytes().to_vec();
                    record.extend_from_slice(&(seq as u32).to_le_bytes());
                    let (done_tx, done_rx) = mpsc::channel();
                    handle
                        .async_write(record, move |r| {
                            let _ = done_tx.send(r);
                        })
                        .expect("async_write accepted");
                    let written = done_rx
                        .recv_timeout(APPLIED_WITHIN)
                        .unwrap_or_else(|_| {
                            panic!(
                                "{doorbell:?} doorbell, writer {w}, write {seq}: \
                                 not applied within {APPLIED_WITHIN:?}"
                            )
                        })
                        .expect("write succeeded");
                    assert_eq!(written, RECORD);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let client = reader.join().expect("reader");

    // The loop was woken through the doorbell (it was parked before the first
    // write, and nothing else wakes it), and it goes back to sleeping forever.
    let stats = server.engine.total_stats();
    assert!(stats.doorbell_writes >= 1, "{stats:?}");
    assert_idle_loop_sleeps_forever();
    drop(client);
    server.stop();
}
