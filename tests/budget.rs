//! The engine-wide buffer budget over real sockets: near it the connections
//! holding the most stop being read and nothing is lost; past it the largest
//! are closed with `CloseReason::BufferBudget`, counted in the stats; and a
//! server process facing many clients that never read keeps its memory
//! (RSS) within the budget plus a margin, and gives it back to the system
//! once they are gone. No assertion depends on speed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::child::{ChildServer, ChildSettings};
use common::*;
use ringloop::{Action, CloseReason, ConnHandle, Timeouts};

/// The server half of the child-process test (see `common::child`).
#[test]
#[ignore = "runs only as the child process of other tests"]
fn child_server() {
    common::child::serve_if_child();
}

const MIB: usize = 1 << 20;

/// A one-loop engine running `hooks` with a buffer budget of `budget` bytes
/// and no timeouts.
fn one_loop_with_budget<S: 'static>(budget: usize, hooks: Hooks<S>) -> Running {
    Running::start(
        hooks
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .buffer_budget(budget)
            .timeouts(Timeouts::none()),
    )
}

#[test]
fn near_the_budget_the_heaviest_stop_being_read_and_nothing_is_lost() {
    const CLIENTS: usize = 8;
    const EACH: usize = MIB;
    const BUDGET: usize = 4 * MIB;
    // Input is left unconsumed until the gate opens (a handler waiting for
    // whole messages); then it is consumed as it comes and each connection
    // acknowledges its total.
    let gate = Arc::new(AtomicBool::new(false));
    let handles = Arc::new(Mutex::new(Vec::<ConnHandle>::new()));
    let running = one_loop_with_budget(
        BUDGET,
        Hooks::<usize>::new()
            .on_open({
                let handles = handles.clone();
                move |conn| {
                    handles.lock().unwrap().push(conn.handle());
                    conn.set_state(0);
                    Action::None
                }
            })
            .on_traffic({
                let gate = gate.clone();
                move |conn| {
                    if gate.load(Ordering::SeqCst) {
                        let n = conn.read_all().len();
                        let total = conn.state_mut().unwrap();
                        *total += n;
                        if *total == EACH {
                            let _ = conn.write(b"got it");
                        }
                    }
                    Action::None
                }
            }),
    );
    let addr = running.tcp_addr(0);
    let senders: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = tcp_client(addr);
                s.write_all(&payload(i as u64, EACH)).unwrap();
                let mut ack = [0; 6];
                s.read_exact(&mut ack).unwrap();
                assert_eq!(&ack, b"got it");
            })
        })
        .collect();
    // 8 MiB offered against a 4 MiB budget: reading stops near it.
    wait_until("connections paused for the budget", || {
        running.engine.total_stats().budget_pauses > 0
    });
    let held = running.engine.total_stats().buffered_bytes as usize;
    assert!(held <= BUDGET, "{held} bytes buffered past the budget");
    assert_eq!(running.engine.total_stats().budget_closes, 0);
    // Let the handler consume: every client gets its acknowledgement, so
    // every byte of every paused connection arrived.
    gate.store(true, Ordering::SeqCst);
    for h in handles.lock().unwrap().iter() {
        let _ = h.wake();
    }
    for s in senders {
        s.join().unwrap();
    }
    let stats = running.engine.total_stats();
    assert_eq!(stats.budget_closes, 0, "{stats}");
    running.stop();
}

#[test]
fn past_the_budget_the_largest_are_closed_with_a_reason() {
    const CLIENTS: usize = 4;
    const BUDGET: usize = 8 * MIB;
    const CHUNK: usize = 256 * 1024;
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let (opened_tx, opened) = mpsc::channel::<ConnHandle>();
    let opened_tx = Mutex::new(opened_tx);
    let running = one_loop_with_budget(
        BUDGET,
        Hooks::<()>::new()
            .on_open(move |conn| {
                opened_tx.lock().unwrap().send(conn.handle()).unwrap();
                Action::None
            })
            .on_close({
                let reasons = reasons.clone();
                move |_, reason| {
                    reasons.lock().unwrap().push(reason.to_string());
                    Action::None
                }
            }),
    );
    // Clients that never read; a thread writes to them without waiting for
    // completions (water marks hold completions, not the bytes).
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| tcp_client(running.tcp_addr(0)))
        .collect();
    let handles: Vec<ConnHandle> = (0..CLIENTS)
        .map(|_| opened.recv_timeout(PATIENCE).unwrap())
        .collect();
    let refused = Arc::new(AtomicUsize::new(0));
    for round in 0..(4 * BUDGET / CHUNK / CLIENTS) {
        for h in &handles {
            let refused = refused.clone();
            let _ = h.async_write(payload(round as u64, CHUNK), move |r| {
                if r.is_err() {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    }
    wait_until("a connection closed for the budget", || {
        running.engine.total_stats().budget_closes > 0
    });
    let budget_reason = CloseReason::BufferBudget.to_string();
    wait_until("its close reason", || {
        reasons.lock().unwrap().contains(&budget_reason)
    });
    // What is left is within the budget once the writes are applied.
    wait_until("the buffered bytes back within the budget", || {
        running.engine.total_stats().buffered_bytes as usize <= BUDGET
    });
    let stats = running.engine.total_stats();
    assert!(
        stats.budget_closes < CLIENTS as u64,
        "every connection closed: {stats}"
    );
    drop(clients);
    running.stop();
}

/// Opens `n` clients that each send `each` bytes (as much as the server
/// takes, never blocking) and never read.
fn never_reading_clients(addr: std::net::SocketAddr, n: usize, each: usize) -> Vec<TcpStream> {
    let chunk = vec![0x5a; 64 * 1024];
    let mut clients: Vec<(TcpStream, usize)> = (0..n)
        .map(|_| {
            let s = tcp_client(addr);
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Rounds until nobody can send more (bounded: `each` per client).
    loop {
        let mut progressed = false;
        for (s, sent) in clients.iter_mut().filter(|(_, sent)| *sent < each) {
            match s.write(&chunk[..chunk.len().min(each - *sent)]) {
                Ok(n) => {
                    *sent += n;
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *sent = each, // closed by the server
            }
        }
        if !progressed {
            break;
        }
    }
    clients.into_iter().map(|(s, _)| s).collect()
}

#[test]
fn many_never_reading_clients_keep_the_server_within_its_budget() {
    raise_nofile_limit();
    const CLIENTS: usize = 600;
    const BUDGET: usize = 8 * MIB;
    const LOOPS: usize = 2;
    // Small socket buffers on the server, so the echoes a client does not
    // read queue in the server (up to its water marks, ~128 KiB each: ~75
    // MiB for 600 clients without a budget) rather than in the kernel.
    let mut server = ChildServer::start(ChildSettings {
        loops: LOOPS,
        budget: Some(BUDGET),
        sock_buffers: Some(16 * 1024),
        ..ChildSettings::default()
    });
    let before = server.rss();
    let clients = never_reading_clients(server.addr, CLIENTS, 384 * 1024);
    let stats = server.wait_stats("the server to stop taking input", |s| {
        s.budget_closes > 0 && s.buffered_bytes <= BUDGET as u64
    });
    let grown = server.rss().saturating_sub(before);
    // The budget caps the total: 8 MiB plus a generous margin for the
    // allocator, buffers in flight and bookkeeping, plus, on io_uring, the
    // loops' fixed caches the budget does not count (`buffer_budget`'s
    // docs): per loop 4 MiB of free send buffers (which sends completing
    // through the ring fill) and 32 provided receive buffers of 16.5 KiB.
    let caches = if stats.io_uring > 0 {
        LOOPS * (4 * MIB + 32 * (16 * 1024 + 512))
    } else {
        0
    };
    let bound = BUDGET + 24 * MIB + caches;
    assert!(
        grown < bound as u64,
        "server RSS grew by {} MiB (bound {} MiB); {stats:?}",
        grown / MIB as u64,
        bound / MIB
    );
    assert!(stats.buffered_bytes <= BUDGET as u64, "{stats:?}");
    assert!(stats.budget_closes > 0, "{stats:?}");
    assert!(
        stats.connections > 0,
        "the budget closed every connection: {stats:?}"
    );
    // After the burst the memory goes back to the system, not only to the
    // allocator's free lists (the loops trim after large releases).
    drop(clients);
    server.wait_stats("every client gone", |s| s.connections == 0);
    let peak = grown;
    // On io_uring each loop's provided buffers (at most 32 x 16.5 KiB, 528
    // KiB) stay resident once the kernel has written into them: a fixed
    // cost per loop, like epoll's one receive buffer per loop, not memory
    // the burst kept.
    let fixed = if stats.io_uring == 1 { 2 * MIB } else { 0 };
    let settled = (4 * MIB + fixed) as u64;
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut now = server.rss().saturating_sub(before);
    while now > settled && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        now = server.rss().saturating_sub(before);
    }
    assert!(
        now <= settled,
        "RSS still {} KiB over the start (peak {} KiB)",
        now / 1024,
        peak / 1024
    );
    server.stop();
}
