//! Issue 4 over real sockets: writes, wakes and closes sent to connections
//! from other threads through `ConnHandle`s, their ordering and exactly-once
//! completions, stale handles, back-pressure, shutdown with requests in
//! flight, awaitable completions and `EngineHandle::execute`.

mod common;

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use ringloop::{Action, Conn, ConnHandle, ConnId, Engine, Error, EventHandler, Result};

/// Splits `data` in two halves, for `async_writev`.
fn halves(data: &[u8]) -> Vec<Vec<u8>> {
    let (a, b) = data.split_at(data.len() / 2);
    vec![a.to_vec(), b.to_vec()]
}

/// Payload sizes used by the echo tests: up to 1 MiB, and a few odd ones.
fn sizes(client: u64) -> Vec<usize> {
    match client % 4 {
        0 => vec![1 << 20, 7, 65_537],
        1 => vec![300_000, 1, 4096],
        2 => vec![123_457, 1 << 20],
        _ => vec![65_536, 65_535, 200_001],
    }
}

fn payloads(client: u64) -> Vec<Vec<u8>> {
    sizes(client)
        .into_iter()
        .enumerate()
        .map(|(i, len)| payload(client * 100 + i as u64, len))
        .collect()
}

/// Runs `clients` TCP clients against `server`, each writing its payloads
/// back to back and checking the echo byte-exact; then waits for every
/// connection to close.
fn run_echo_clients(server: &Running, clients: u64) {
    let addr = server.tcp_addr(0);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                pipelined_echo(&mut s, payloads(c));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    wait_until("every connection closed", || {
        server.engine.connection_count() == 0
    });
}

// ----- echo through the worker pool -----

/// gnet's async echo: the traffic callback copies the bytes and submits a
/// job that writes them back through the handle (or, with `writev`, in two
/// halves with `async_writev`). One worker keeps the order of the jobs.
fn pool_echo(writev: bool) {
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let data = conn.read_all().to_vec();
                let handle = conn.handle();
                let failures = f.clone();
                let job = move || {
                    let len = data.len();
                    let check = move |r: Result<usize>| {
                        if r.ok() != Some(len) {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    };
                    let sent = if writev {
                        handle.async_writev(halves(&data), check)
                    } else {
                        handle.async_write(data, check)
                    };
                    assert!(sent.is_ok(), "the engine is running");
                };
                match conn.engine().submit(job) {
                    Ok(()) => Action::None,
                    Err(_) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        Action::Close
                    }
                }
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .workers(1),
    );
    run_echo_clients(&server, 4);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "a submit or write failed"
    );
    server.stop();
}

#[test]
fn echo_through_a_one_worker_pool_is_byte_exact() {
    pool_echo(false);
}

#[test]
fn echo_through_a_one_worker_pool_with_writev_is_byte_exact() {
    pool_echo(true);
}

/// The `examples/echo_pool.rs` pattern: at most one job in flight per
/// connection; the worker writes, then wakes the connection, whose traffic
/// callback starts the next job with whatever arrived meanwhile.
#[derive(Default)]
struct Session {
    pending: Vec<u8>,
    in_flight: Option<Arc<AtomicBool>>,
}

struct EchoPool {
    jobs_at_once: Arc<AtomicUsize>,
    overlap: Arc<AtomicUsize>,
}

impl EventHandler for EchoPool {
    type State = Session;

    fn on_open(&mut self, conn: &mut Conn<'_, Session>) -> Action {
        conn.set_state(Session::default());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Session>) -> Action {
        let data = conn.read_all();
        let engine = conn.engine();
        let handle = conn.handle();
        let Some(session) = conn.state_mut() else {
            return Action::Close;
        };
        session.pending.extend_from_slice(data);
        if let Some(done) = &session.in_flight {
            if !done.load(Ordering::Acquire) {
                return Action::None;
            }
            session.in_flight = None;
        }
        if session.pending.is_empty() {
            return Action::None;
        }
        let bytes = std::mem::take(&mut session.pending);
        let done = Arc::new(AtomicBool::new(false));
        session.in_flight = Some(done.clone());
        let (at_once, overlap) = (self.jobs_at_once.clone(), self.overlap.clone());
        let job = move || {
            at_once.fetch_add(1, Ordering::SeqCst);
            // A little real work per job, so jobs of different connections overlap.
            let sum = bytes
                .iter()
                .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
            std::hint::black_box(sum);
            if at_once.load(Ordering::SeqCst) > 1 {
                overlap.fetch_add(1, Ordering::SeqCst);
            }
            let _ = handle.async_write(bytes, |_| {});
            done.store(true, Ordering::Release);
            at_once.fetch_sub(1, Ordering::SeqCst);
            let _ = handle.wake();
        };
        match engine.submit(job) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

#[test]
fn echo_pool_pattern_with_four_workers_is_byte_exact() {
    let server = Running::start(
        Engine::builder(|_| EchoPool {
            jobs_at_once: Arc::new(AtomicUsize::new(0)),
            overlap: Arc::new(AtomicUsize::new(0)),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2)
        .workers(4),
    );
    run_echo_clients(&server, 6);
    server.stop();
}

#[test]
fn async_writev_from_the_traffic_callback_is_byte_exact() {
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(|conn| {
                let bufs = halves(conn.read_all());
                let _ = conn
                    .handle()
                    .async_writev(bufs, |r| assert!(r.is_ok(), "{r:?}"));
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    run_echo_clients(&server, 3);
    server.stop();
}

#[test]
fn async_writev_of_thousands_of_buffers_keeps_every_byte_in_order() {
    writev_of_thousands(false);
}

/// The same edge-triggered: a socket that took the first 1,024 buffers
/// and stayed writable reports no new edge, so the loop must not wait for
/// one before writing the rest.
#[test]
fn async_writev_of_thousands_of_buffers_edge_triggered() {
    writev_of_thousands(true);
}

fn writev_of_thousands(edge_triggered: bool) {
    // More buffers than one writev takes (IOV_MAX is 1024 on Linux).
    let bufs: Vec<Vec<u8>> = (0..3000u64)
        .map(|i| payload(i, (i as usize * 7) % 50 + 1))
        .collect();
    let expected = bufs.concat();
    let (result_tx, result_rx) = unbounded();
    let to_send = Mutex::new(Some(bufs));
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                if let Some(bufs) = to_send.lock().unwrap().take() {
                    let tx = result_tx.clone();
                    let _ = conn.handle().async_writev(bufs, move |r| {
                        let _ = tx.send(r);
                    });
                }
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            // (Edge-triggered mode makes `Auto` choose epoll.)
            .edge_triggered(edge_triggered)
            .loops(1),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let mut back = vec![0u8; expected.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == expected, "writev bytes out of order");
    let r = result_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(r.unwrap(), expected.len());
    server.stop();
}

/// A write from a loop thread to a connection on another loop, with lanes
/// so small that the loop's overflow is used all the time: still in order.
#[test]
fn a_relay_across_loops_keeps_order_through_the_overflow() {
    let conns: Arc<Mutex<HashMap<SocketAddr, ConnHandle>>> = Arc::default();
    let dest: Arc<OnceLock<ConnHandle>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(0));
    let (c, d, f) = (conns.clone(), dest.clone(), failures.clone());
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                let peer = conn.peer_addr().as_inet().unwrap();
                c.lock().unwrap().insert(peer, conn.handle());
                Action::None
            })
            .on_traffic(move |conn| {
                let Some(dest) = d.get() else {
                    return Action::Close;
                };
                let f = f.clone();
                let r = dest.async_write(conn.read_all().to_vec(), move |r| {
                    if r.is_err() {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                });
                assert!(r.is_ok(), "a loop thread never fails to queue");
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .read_buffer_size(1024)
            .mailbox_capacity(4),
    );
    let addr = server.tcp_addr(0);
    let mut source = tcp_client(addr);
    let mut sink = tcp_client(addr);
    wait_until("two connections", || conns.lock().unwrap().len() == 2);
    let (src_handle, sink_handle) = {
        let map = conns.lock().unwrap();
        (
            map[&source.local_addr().unwrap()].clone(),
            map[&sink.local_addr().unwrap()].clone(),
        )
    };
    assert_ne!(
        src_handle.id().loop_index(),
        sink_handle.id().loop_index(),
        "round-robin puts them on different loops"
    );
    dest.set(sink_handle).unwrap();
    let data = payload(42, 2 << 20);
    let writer = {
        let data = data.clone();
        thread::spawn(move || source.write_all(&data).unwrap())
    };
    let mut back = vec![0u8; data.len()];
    sink.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "relayed bytes differ");
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    server.stop();
}

// ----- wake -----

#[test]
fn wake_runs_the_traffic_callback_once_per_wake_and_shows_leftover_bytes() {
    let (handle_tx, handle_rx) = unbounded();
    let server = Running::start(
        Hooks::<bool>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .on_traffic(|conn| {
                let n = conn.inbound_buffered();
                let reply = if n == 0 {
                    b"idle;".to_vec()
                } else if n < 3 {
                    return Action::None; // wait for the rest, keep what came
                } else if conn.state().is_none() {
                    conn.set_state(true);
                    format!("seen:{n};").into_bytes() // left unconsumed
                } else {
                    let mut r = b"woken:".to_vec();
                    r.extend_from_slice(conn.read_all());
                    r.push(b';');
                    r
                };
                conn.write(&reply).unwrap();
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let handle = handle_rx.recv_timeout(PATIENCE).unwrap();
    let expect = |s: &mut std::net::TcpStream, what: &[u8]| {
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(what));
    };
    s.write_all(b"abc").unwrap();
    expect(&mut s, b"seen:3;");
    // The wake finds the bytes the callback left behind.
    thread::scope(|t| {
        t.spawn(|| handle.wake().unwrap());
    });
    expect(&mut s, b"woken:abc;");
    // Five wakes from another thread: five callbacks with no new bytes.
    thread::scope(|t| {
        t.spawn(|| {
            for _ in 0..5 {
                handle.wake().unwrap();
            }
        });
    });
    expect(&mut s, b"idle;idle;idle;idle;idle;");
    // Nothing more: a sixth reply would show up before this echo of state.
    handle.wake().unwrap();
    expect(&mut s, b"idle;");
    server.stop();
}

/// gnet's ClosedWakeUp: `close` and `wake` sent at the same moment from two
/// threads while the traffic callback is blocked. No panic, the close
/// callback runs once, and no traffic callback runs after it; a wake sent
/// after the close is ignored.
#[test]
fn close_and_wake_racing_from_two_threads_while_the_callback_blocks() {
    #[derive(Default)]
    struct Seen {
        closed: Mutex<HashSet<ConnId>>,
        closes: AtomicUsize,
        traffic_after_close: AtomicUsize,
    }
    let seen = Arc::new(Seen::default());
    let (entered_tx, entered_rx) = unbounded::<ConnHandle>();
    let (release_tx, release_rx) = unbounded::<()>();
    let (s1, s2) = (seen.clone(), seen.clone());
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                if s1.closed.lock().unwrap().contains(&conn.handle().id()) {
                    s1.traffic_after_close.fetch_add(1, Ordering::SeqCst);
                }
                let data = conn.read_all();
                if data == b"block" {
                    entered_tx.send(conn.handle()).unwrap();
                    release_rx.recv_timeout(PATIENCE).unwrap();
                    return Action::None;
                }
                echo_now_bytes(conn, data)
            })
            .on_close(move |conn, _| {
                assert!(s2.closed.lock().unwrap().insert(conn.handle().id()));
                s2.closes.fetch_add(1, Ordering::SeqCst);
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let addr = server.tcp_addr(0);
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let mut victim = tcp_client(addr);
        victim.write_all(b"block").unwrap();
        let handle = entered_rx.recv_timeout(PATIENCE).unwrap();
        let start = Barrier::new(2);
        thread::scope(|t| {
            t.spawn(|| {
                start.wait();
                handle.close().unwrap();
            });
            t.spawn(|| {
                start.wait();
                handle.wake().unwrap();
            });
        });
        release_tx.send(()).unwrap();
        wait_until("the close callback", || {
            seen.closes.load(Ordering::SeqCst) == round + 1
        });
        assert!(read_to_end(&mut victim).is_empty());
        // A wake after the close, then a close from the same thread: the
        // close answers only once the wake before it was handled.
        let (tx, rx) = bounded(1);
        thread::scope(|t| {
            t.spawn(|| {
                handle.wake().unwrap();
                handle.close_with(move |r| tx.send(r).unwrap()).unwrap();
            });
        });
        let r = rx.recv_timeout(PATIENCE).unwrap();
        assert!(matches!(r, Err(Error::ConnectionClosed)), "{r:?}");
    }
    assert_eq!(seen.closes.load(Ordering::SeqCst), ROUNDS);
    assert_eq!(seen.traffic_after_close.load(Ordering::SeqCst), 0);
    // The loops are fine.
    echo_round_trip(&mut tcp_client(addr), b"still serving");
    server.stop();
}

fn echo_now_bytes(conn: &mut Conn<'_, ()>, data: &[u8]) -> Action {
    match conn.write(data) {
        Ok(_) => Action::None,
        Err(_) => Action::Close,
    }
}

// ----- writes to connections that are gone -----

/// gnet's DisconnectedAsyncWrite: the peer resets; a thread keeps writing
/// every 10 ms. Each callback answers (never hangs), and the answers end in
/// `ConnectionClosed` once the loop has seen the reset.
fn write_after_the_peer_vanished(writev: bool) {
    let (handle_tx, handle_rx) = unbounded();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .on_close(move |_, reason| {
                c.lock().unwrap().push(reason_kind(reason));
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let client = tcp_client(server.tcp_addr(0));
    let handle: ConnHandle = handle_rx.recv_timeout(PATIENCE).unwrap();
    reset_on_close(&client);
    drop(client);
    let deadline = Instant::now() + PATIENCE;
    let mut answers = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "never got ConnectionClosed: {answers:?}"
        );
        let (tx, rx) = bounded(1);
        let done = move |r: Result<usize>| tx.send(r).unwrap();
        let data = b"are you there?".to_vec();
        let sent = if writev {
            handle.async_writev(halves(&data), done)
        } else {
            handle.async_write(data, done)
        };
        assert!(sent.is_ok(), "delivered to a running engine");
        let r = rx
            .recv_timeout(PATIENCE)
            .expect("the completion callback never ran");
        let closed = matches!(r, Err(Error::ConnectionClosed));
        answers.push(format!("{r:?}"));
        if closed {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(closes.lock().unwrap().len(), 1);
    assert!(
        matches!(closes.lock().unwrap()[0], "reset" | "error"),
        "{:?}",
        closes.lock().unwrap()
    );
    server.stop();
}

#[test]
fn async_write_after_the_peer_reset_ends_in_connection_closed() {
    write_after_the_peer_vanished(false);
}

#[test]
fn async_writev_after_the_peer_reset_ends_in_connection_closed() {
    write_after_the_peer_vanished(true);
}

/// Threads hammer a handle while its connection is closed and its slot
/// reused by a newer connection: the newcomer never receives a stale byte,
/// and every stale request is answered (before the close: written; after:
/// `ConnectionClosed`).
#[test]
fn stale_handles_hammered_from_threads_never_reach_the_slots_new_owner() {
    let (handle_tx, handle_rx) = unbounded();
    let closes = Arc::new(AtomicUsize::new(0));
    let c = closes.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .on_close(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let addr = server.tcp_addr(0);
    let mut old_client = tcp_client(addr);
    let old: ConnHandle = handle_rx.recv_timeout(PATIENCE).unwrap();
    // The old client drains whatever reaches it until the server closes it.
    let old_reader = thread::spawn(move || read_to_end(&mut old_client));
    const THREADS: usize = 4;
    // They run until told to stop; this only bounds a broken run.
    const PER_THREAD: usize = 5_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, closed, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let hammers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (old, stop) = (old.clone(), stop.clone());
            let (ok, closed, other) = (ok.clone(), closed.clone(), other.clone());
            thread::spawn(move || {
                let mut sent = 0;
                while sent < PER_THREAD && !stop.load(Ordering::SeqCst) {
                    let (ok, closed, other) = (ok.clone(), closed.clone(), other.clone());
                    old.async_write(b"STALE!".to_vec(), move |r| {
                        let counter = match r {
                            Ok(_) => &ok,
                            Err(Error::ConnectionClosed) => &closed,
                            Err(_) => &other,
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    wait_until("some stale writes applied", || {
        ok.load(Ordering::SeqCst) > 100
    });
    old.close().unwrap();
    wait_until("the old connection closed", || {
        closes.load(Ordering::SeqCst) == 1
    });
    let mut new_client = tcp_client(addr);
    let new: ConnHandle = handle_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(new.id().slot(), old.id().slot(), "the slot is reused");
    assert_ne!(new.id(), old.id());
    for i in 0..1000u32 {
        new.async_write(format!("good{i:05};").into_bytes(), |r| {
            assert!(r.is_ok(), "{r:?}")
        })
        .unwrap();
    }
    wait_until("stale writes refused", || {
        closed.load(Ordering::SeqCst) > 100
    });
    stop.store(true, Ordering::SeqCst);
    let sent: usize = hammers.into_iter().map(|h| h.join().unwrap()).sum();
    // A last request through the new handle, so everything before it was applied.
    assert_eq!(new.write(b"end;".to_vec()).wait().unwrap(), 4);
    let mut got = vec![0u8; 1000 * 10 + 4];
    new_client.read_exact(&mut got).unwrap();
    let expected: String = (0..1000)
        .map(|i| format!("good{i:05};"))
        .collect::<String>()
        + "end;";
    assert_eq!(String::from_utf8_lossy(&got), expected);
    wait_until("every stale callback", || {
        ok.load(Ordering::SeqCst) + closed.load(Ordering::SeqCst) + other.load(Ordering::SeqCst)
            == sent
    });
    assert_eq!(other.load(Ordering::SeqCst), 0);
    let old_bytes = old_reader.join().unwrap();
    assert!(old_bytes.chunks(6).all(|c| c == b"STALE!"));
    assert!(old_bytes.len() <= ok.load(Ordering::SeqCst) * 6);
    server.stop();
}

// ----- many threads, many loops -----

/// 8 sender threads write tagged messages `[sender, connection, seq]` to 8
/// connections spread over 4 loops, 100,000 messages per sender, through
/// small mailbox lanes (senders wait for room). Each client checks that
/// every sender's sequence arrives complete and in order.
#[test]
fn eight_threads_four_loops_a_hundred_thousand_messages_each() {
    const SENDERS: usize = 8;
    const CONNS: usize = 8;
    const LOOPS: usize = 4;
    const PER_SENDER: usize = 100_000;
    const PER_PAIR: usize = PER_SENDER / CONNS;
    let opened: Arc<Mutex<HashMap<SocketAddr, ConnHandle>>> = Arc::default();
    let o = opened.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                let peer = conn.peer_addr().as_inet().unwrap();
                o.lock().unwrap().insert(peer, conn.handle());
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(LOOPS)
            .mailbox_capacity(64),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..CONNS).map(|_| tcp_client(addr)).collect();
    wait_until("every connection open", || {
        opened.lock().unwrap().len() == CONNS
    });
    let handles: Vec<ConnHandle> = {
        let map = opened.lock().unwrap();
        clients
            .iter()
            .map(|c| map[&c.local_addr().unwrap()].clone())
            .collect()
    };
    let mut per_loop = [0usize; LOOPS];
    for h in &handles {
        per_loop[h.id().loop_index()] += 1;
    }
    assert_eq!(per_loop, [CONNS / LOOPS; LOOPS], "round-robin spreads them");
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut s)| {
            thread::spawn(move || {
                let mut next = [0usize; SENDERS];
                let mut buf = vec![0u8; 64 * 1024];
                let mut have = 0;
                while next.iter().any(|&n| n < PER_PAIR) {
                    let n = s.read(&mut buf[have..]).expect("read");
                    assert!(n > 0, "connection {c} closed early at {next:?}");
                    have += n;
                    let whole = have / 8 * 8;
                    for rec in buf[..whole].chunks_exact(8) {
                        let sender = u16::from_le_bytes([rec[0], rec[1]]) as usize;
                        let conn = u16::from_le_bytes([rec[2], rec[3]]) as usize;
                        let seq = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]) as usize;
                        assert_eq!(conn, c, "a message for connection {conn} reached {c}");
                        assert!(sender < SENDERS, "bad sender {sender}");
                        assert_eq!(
                            seq, next[sender],
                            "connection {c}, sender {sender}: lost, duplicated or reordered"
                        );
                        next[sender] += 1;
                    }
                    buf.copy_within(whole..have, 0);
                    have -= whole;
                }
                assert_eq!(have, 0, "bytes beyond the last message");
            })
        })
        .collect();
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let handles = handles.clone();
            let (ok, failed) = (ok.clone(), failed.clone());
            thread::spawn(move || {
                for i in 0..PER_SENDER {
                    let conn = i % CONNS;
                    let seq = (i / CONNS) as u32;
                    let mut rec = Vec::with_capacity(8);
                    rec.extend_from_slice(&(sender as u16).to_le_bytes());
                    rec.extend_from_slice(&(conn as u16).to_le_bytes());
                    rec.extend_from_slice(&seq.to_le_bytes());
                    let (ok, failed) = (ok.clone(), failed.clone());
                    handles[conn]
                        .async_write(rec, move |r| {
                            if r.is_ok() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                        .expect("the engine is running");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    for r in readers {
        r.join().expect("reader");
    }
    wait_until("every completion", || {
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) == SENDERS * PER_SENDER
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    server.stop();
}

/// Threads hammer `async_write` with counting callbacks while the engine
/// stops. Afterwards every callback ran exactly once, with `Ok` or an error.
#[test]
fn stopping_with_writes_in_flight_answers_every_callback_exactly_once() {
    const THREADS: usize = 4;
    const MAX_PER_THREAD: usize = 1_000_000;
    let (handle_tx, handle_rx) = unbounded();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let addr = server.tcp_addr(0);
    let readers: Vec<_> = (0..THREADS)
        .map(|_| {
            let mut s = tcp_client(addr);
            thread::spawn(move || read_to_end(&mut s).len())
        })
        .collect();
    let handles: Vec<ConnHandle> = (0..THREADS)
        .map(|_| handle_rx.recv_timeout(PATIENCE).unwrap())
        .collect();
    let hits: Arc<Vec<AtomicU8>> = Arc::new(
        (0..THREADS * MAX_PER_THREAD)
            .map(|_| AtomicU8::new(0))
            .collect(),
    );
    let answered = Arc::new(AtomicUsize::new(0));
    // ok, connection closed, engine stopped, anything else
    let kinds: Arc<[AtomicUsize; 4]> = Arc::default();
    let hammers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handles = handles.clone();
            let (hits, answered, kinds) = (hits.clone(), answered.clone(), kinds.clone());
            thread::spawn(move || {
                let mut calls = 0;
                let mut refused = false;
                while calls < MAX_PER_THREAD {
                    let slot = t * MAX_PER_THREAD + calls;
                    let (hits, answered, kinds) = (hits.clone(), answered.clone(), kinds.clone());
                    let r = handles[calls % THREADS].async_write(b"in flight".to_vec(), move |r| {
                        let kind = match r {
                            Ok(9) => 0,
                            Err(Error::ConnectionClosed) => 1,
                            Err(Error::EngineStopped) => 2,
                            _ => 3,
                        };
                        kinds[kind].fetch_add(1, Ordering::SeqCst);
                        hits[slot].fetch_add(1, Ordering::SeqCst);
                        answered.fetch_add(1, Ordering::SeqCst);
                    });
                    calls += 1;
                    if r.is_err() {
                        refused = true;
                        break;
                    }
                }
                (calls, refused)
            })
        })
        .collect();
    wait_until("writes flowing", || {
        answered.load(Ordering::SeqCst) > 20_000
    });
    server.engine.stop();
    let engine = server.engine.clone();
    server.join();
    let results: Vec<(usize, bool)> = hammers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        results.iter().all(|&(_, refused)| refused),
        "every hammer ran until the engine refused it: {results:?}"
    );
    let calls: usize = results.iter().map(|&(c, _)| c).sum();
    wait_until("every callback", || {
        answered.load(Ordering::SeqCst) >= calls
    });
    assert_eq!(
        answered.load(Ordering::SeqCst),
        calls,
        "a callback ran twice"
    );
    for (t, &(c, _)) in results.iter().enumerate() {
        for i in 0..MAX_PER_THREAD {
            let h = hits[t * MAX_PER_THREAD + i].load(Ordering::SeqCst);
            assert_eq!(h, u8::from(i < c), "thread {t} call {i} answered {h} times");
        }
    }
    assert_eq!(kinds[3].load(Ordering::SeqCst), 0, "unexpected answers");
    assert!(
        kinds[2].load(Ordering::SeqCst) >= THREADS,
        "refusals answer EngineStopped"
    );
    assert_eq!(engine.connection_count(), 0);
    for r in readers {
        r.join().unwrap();
    }
}

// ----- try_async_write and dead engines -----

/// A handler that parks its loop inside `on_traffic` on "block" until the
/// test releases it, and reports every connection's handle.
fn blocking_hooks(
    handles: Sender<ConnHandle>,
    entered: Sender<()>,
    release: Receiver<()>,
) -> Hooks<()> {
    Hooks::<()>::new()
        .on_open(move |conn| {
            handles.send(conn.handle()).unwrap();
            Action::None
        })
        .on_traffic(move |conn| {
            if conn.read_all() == b"block" {
                entered.send(()).unwrap();
                let _ = release.recv_timeout(PATIENCE);
            }
            Action::None
        })
}

#[test]
fn try_async_write_hands_the_data_back_when_the_lane_is_full_or_the_engine_stopped() {
    let (handles_tx, handles_rx) = unbounded();
    let (entered_tx, entered_rx) = unbounded();
    let (release_tx, release_rx) = unbounded();
    let server = Running::start(
        blocking_hooks(handles_tx, entered_tx, release_rx)
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .mailbox_capacity(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let handle = handles_rx.recv_timeout(PATIENCE).unwrap();
    s.write_all(b"block").unwrap();
    entered_rx.recv_timeout(PATIENCE).unwrap();
    // The loop is parked in a callback: this thread's lane holds two.
    handle.try_async_write(b"one;".to_vec()).unwrap();
    handle.try_async_write(b"two;".to_vec()).unwrap();
    let full = handle.try_async_write(b"three;".to_vec()).unwrap_err();
    assert!(matches!(full.error, Error::MailboxFull), "{full}");
    assert_eq!(full.data, b"three;");
    release_tx.send(()).unwrap();
    let mut got = [0u8; 8];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"one;two;");
    // Room again once the loop drained the lane.
    let deadline = Instant::now() + PATIENCE;
    let mut data = full.data;
    while let Err(e) = handle.try_async_write(data) {
        assert!(matches!(e.error, Error::MailboxFull), "{e}");
        assert!(Instant::now() < deadline, "the lane never drained");
        data = e.data;
        thread::sleep(Duration::from_millis(1));
    }
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"three;");
    server.stop();
    let late = handle.try_async_write(b"late".to_vec()).unwrap_err();
    assert!(matches!(late.error, Error::EngineStopped), "{late}");
    assert_eq!(late.data, b"late");
}

/// Every request through a handle that outlived its engine fails with
/// `EngineStopped`, from the return value and from the callback, on a
/// thread that used the handle before and on one that never did.
#[test]
fn a_handle_that_outlives_its_engine_gets_engine_stopped() {
    let (handle_tx, handle_rx) = unbounded();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let handle: ConnHandle = handle_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(handle.write(b"hi".to_vec()).wait().unwrap(), 2);
    let mut got = [0u8; 2];
    s.read_exact(&mut got).unwrap();
    server.stop();
    let check = |handle: &ConnHandle| {
        let (tx, rx) = unbounded();
        let t = tx.clone();
        let r = handle.async_write(b"x".to_vec(), move |r| t.send(format!("{r:?}")).unwrap());
        assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
        let t = tx.clone();
        let r = handle.async_writev(halves(b"xy"), move |r| t.send(format!("{r:?}")).unwrap());
        assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
        let t = tx.clone();
        let r = handle.close_with(move |r| t.send(format!("{r:?}")).unwrap());
        assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
        for _ in 0..3 {
            let answer = rx.recv_timeout(PATIENCE).expect("every callback runs");
            assert_eq!(answer, "Err(EngineStopped)");
        }
        assert!(rx.try_recv().is_err(), "a callback ran twice");
        assert!(matches!(handle.wake(), Err(Error::EngineStopped)));
        assert!(matches!(handle.close(), Err(Error::EngineStopped)));
        let r = handle.write(b"x".to_vec()).wait();
        assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
        let r = handle.try_async_write(b"x".to_vec()).unwrap_err();
        assert!(matches!(r.error, Error::EngineStopped));
    };
    check(&handle);
    thread::scope(|t| {
        t.spawn(|| check(&handle));
    });
    drop(s);
}

// ----- awaitable completions -----

struct CountingWaker {
    thread: thread::Thread,
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// A tiny executor: polls `fut` on this thread, parking between polls.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(CountingWaker {
        thread: thread::current(),
        wakes: AtomicUsize::new(0),
    }));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(Instant::now() < deadline, "the future never completed");
        thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn write_completions_can_be_waited_on_or_awaited() {
    let (handles_tx, handles_rx) = unbounded();
    let (entered_tx, entered_rx) = unbounded();
    let (release_tx, release_rx) = unbounded();
    let server = Running::start(
        blocking_hooks(handles_tx, entered_tx, release_rx)
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let mut control = s.try_clone().unwrap();
    let handle: ConnHandle = handles_rx.recv_timeout(PATIENCE).unwrap();
    let mut expect = |what: &[u8]| {
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(what));
    };
    // wait()
    assert_eq!(handle.write(b"hello".to_vec()).wait().unwrap(), 5);
    expect(b"hello");
    // wait_timeout(): nothing while the loop is parked, the result after.
    control.write_all(b"block").unwrap();
    entered_rx.recv_timeout(PATIENCE).unwrap();
    let pending = handle.write(b"later".to_vec());
    assert!(pending.wait_timeout(Duration::from_millis(50)).is_none());
    // .await: the first poll is pending (the loop is still parked) ...
    let mut fut = handle.write(b"awaited".to_vec()).into_future();
    let probe = Arc::new(CountingWaker {
        thread: thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let probe_waker = Waker::from(probe.clone());
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(&probe_waker))
        .is_pending());
    release_tx.send(()).unwrap();
    let r = pending
        .wait_timeout(PATIENCE)
        .expect("completes once released");
    assert_eq!(r.unwrap(), 5);
    // ... and the completion wakes the task that polled it.
    wait_until("the waker is called", || {
        probe.wakes.load(Ordering::SeqCst) > 0
    });
    let r = block_on(fut);
    assert_eq!(r.unwrap(), 7);
    expect(b"laterawaited");
    // Two writes awaited in one task, in order.
    let both = block_on(async {
        let a = handle.write(b"one".to_vec());
        let b = handle.write(b"two".to_vec());
        (a.await, b.await)
    });
    assert_eq!((both.0.unwrap(), both.1.unwrap()), (3, 3));
    expect(b"onetwo");
    // EngineHandle::stop_pending
    let stopping = server.engine.stop_pending();
    assert!(stopping.wait().is_ok());
    assert!(server.engine.is_stopping());
    assert_eq!(server.engine.connection_count(), 0);
    server.join();
    assert!(matches!(
        handle.write(b"x".to_vec()).wait(),
        Err(Error::EngineStopped)
    ));
    let r = block_on(handle.write(b"x".to_vec()).into_future());
    assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
}

// ----- EngineHandle::execute -----

#[test]
fn execute_runs_on_the_given_loop_and_execute_all_on_every_loop_once() {
    const LOOPS: usize = 3;
    let server = Running::start(
        Hooks::<()>::new()
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(LOOPS),
    );
    let engine = &server.engine;
    let (tx, rx) = unbounded();
    for i in 0..LOOPS {
        let tx = tx.clone();
        engine
            .execute(i, move |ctx| {
                let name = thread::current().name().map(str::to_owned);
                tx.send((i, ctx.loop_index(), name)).unwrap();
            })
            .unwrap();
    }
    for _ in 0..LOOPS {
        let (asked, ran_on, name) = rx.recv_timeout(PATIENCE).unwrap();
        assert_eq!(asked, ran_on);
        assert_eq!(
            name.as_deref(),
            Some(format!("ringloop-loop-{asked}").as_str())
        );
    }
    let r = engine.execute(LOOPS, |_| panic!("must not run"));
    assert!(matches!(r, Err(Error::InvalidConfig(_))), "{r:?}");
    let t = tx.clone();
    engine
        .execute_all(move |ctx| {
            t.send((usize::MAX, ctx.loop_index(), None)).unwrap();
        })
        .unwrap();
    let mut ran: Vec<usize> = (0..LOOPS)
        .map(|_| rx.recv_timeout(PATIENCE).unwrap().1)
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..LOOPS).collect::<Vec<_>>());
    // A marker behind it on every loop (same thread, so FIFO): once all are
    // in, a duplicate would have shown up already.
    let (mark_tx, mark_rx) = unbounded();
    engine
        .execute_all(move |_| mark_tx.send(()).unwrap())
        .unwrap();
    for _ in 0..LOOPS {
        mark_rx.recv_timeout(PATIENCE).unwrap();
    }
    assert!(rx.try_recv().is_err(), "execute_all ran twice on a loop");
    // A handler's loop can execute on another loop too.
    let (t2, r2) = unbounded();
    let e2 = engine.clone();
    engine
        .execute(0, move |_| {
            e2.execute(LOOPS - 1, move |ctx| t2.send(ctx.loop_index()).unwrap())
                .unwrap();
        })
        .unwrap();
    assert_eq!(r2.recv_timeout(PATIENCE).unwrap(), LOOPS - 1);
    let engine = engine.clone();
    server.stop();
    let ran = Arc::new(AtomicBool::new(false));
    let r = {
        let ran = ran.clone();
        engine.execute(0, move |_| ran.store(true, Ordering::SeqCst))
    };
    assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
    assert!(matches!(
        engine.execute_all(|_| {}),
        Err(Error::EngineStopped)
    ));
    assert!(!ran.load(Ordering::SeqCst));
}

// ----- requests made on a loop thread -----

/// Sends three writes from a task on loop 0 to a connection of loop 0 with
/// lanes of two, so the third waits in the loop's overflow; then a second
/// task (handled together with the first two writes, which empties the
/// lane) sends a fourth request with `fourth`. The module docs promise that
/// requests from one thread to one connection are applied in the order sent.
fn overflow_then(fourth: fn(&ConnHandle) -> bool) -> (String, bool) {
    let (handles_tx, handles_rx) = unbounded();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handles_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .mailbox_capacity(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let handle: ConnHandle = handles_rx.recv_timeout(PATIENCE).unwrap();
    let (ready_tx, ready_rx) = bounded(1);
    let (go_tx, go_rx) = bounded::<()>(1);
    let h = handle.clone();
    server
        .engine
        .execute(0, move |_| {
            for m in ["m1;", "m2;", "m3;"] {
                h.async_write(m, |r| assert!(r.is_ok())).unwrap();
            }
            ready_tx.send(()).unwrap();
            go_rx.recv_timeout(PATIENCE).unwrap();
        })
        .unwrap();
    ready_rx.recv_timeout(PATIENCE).unwrap();
    let (accepted_tx, accepted_rx) = bounded(1);
    let h = handle.clone();
    server
        .engine
        .execute(0, move |_| accepted_tx.send(fourth(&h)).unwrap())
        .unwrap();
    go_tx.send(()).unwrap();
    let accepted = accepted_rx.recv_timeout(PATIENCE).unwrap();
    let want = if accepted { 12 } else { 9 };
    let mut got = vec![0u8; want];
    s.read_exact(&mut got).unwrap();
    server.stop();
    (String::from_utf8_lossy(&got).into_owned(), accepted)
}

#[test]
fn async_writes_from_a_loop_thread_keep_their_order_through_the_overflow() {
    let (got, accepted) = overflow_then(|h| h.async_write("m4;", |_| {}).is_ok());
    assert!(accepted);
    assert_eq!(got, "m1;m2;m3;m4;");
}

#[test]
fn try_async_write_from_a_loop_thread_never_overtakes_its_overflow() {
    let (got, accepted) = overflow_then(|h| h.try_async_write(b"m4;".to_vec()).is_ok());
    let expected = if accepted {
        "m1;m2;m3;m4;"
    } else {
        "m1;m2;m3;"
    };
    assert_eq!(
        got, expected,
        "requests from one thread applied out of order"
    );
}

// ----- user code in completions -----

#[test]
fn a_panicking_completion_callback_does_not_kill_the_loop() {
    let (handles_tx, handles_rx) = unbounded();
    let closes = Arc::new(AtomicUsize::new(0));
    let c = closes.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handles_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .on_traffic(echo_now)
            .on_close(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let addr = server.tcp_addr(0);
    let _a = tcp_client(addr);
    let a: ConnHandle = handles_rx.recv_timeout(PATIENCE).unwrap();
    let mut b = tcp_client(addr);
    handles_rx.recv_timeout(PATIENCE).unwrap();
    a.async_write(b"x".to_vec(), |_| {
        panic!("a completion callback panics on purpose")
    })
    .unwrap();
    // A later request from this thread is applied after the panicking one.
    let r = a.write(b"y".to_vec()).wait_timeout(PATIENCE);
    assert!(matches!(r, Some(Ok(1))), "the loop died: {r:?}");
    echo_round_trip(&mut b, b"the loop still serves");
    server.stop();
    assert_eq!(closes.load(Ordering::SeqCst), 2, "every close callback ran");
}
