//! Back-pressure between connections and the worker pool, with the handling
//! the docs show (`SubmitErrorKind`): a handler caps its jobs in flight per
//! connection with `Conn::pause_reading` / `ConnHandle::resume_reading`, backs
//! off when the queue is full, and stays open when the engine is stopping —
//! so a stop in the middle of pipelined requests loses no reply to a request
//! the server took, and a full queue slows clients down instead of dropping
//! them.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Sender};
use ringloop::{
    Action, CloseReason, Conn, ConnHandle, Engine, EventHandler, LoopContext, SubmitErrorKind,
};

/// Requests and replies: one big-endian `u64` id each; a job sleeps, then
/// answers with the id.
const MSG: usize = 8;

/// Counters the test reads.
#[derive(Default)]
struct Seen {
    /// Requests the server took (submitted and consumed).
    accepted: AtomicUsize,
    /// The most jobs any one connection had in flight.
    max_in_flight: AtomicUsize,
    /// Submits refused because the queue was full.
    full: AtomicUsize,
}

struct Rpc {
    delay: Duration,
    /// Jobs in flight per connection at most.
    cap: usize,
    seen: Arc<Seen>,
    closes: Sender<String>,
    /// Connections refused by a full queue, resumed by loop 0's ticker.
    backed_off: Arc<Mutex<Vec<ConnHandle>>>,
}

impl EventHandler for Rpc {
    /// This connection's jobs in flight (shared with their completions).
    type State = Arc<AtomicUsize>;

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        conn.set_state(Arc::default());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let Some(in_flight) = conn.state().cloned() else {
            return Action::Close;
        };
        while conn.peek(MSG).len() == MSG {
            // Relaxed: completions run on this loop's thread too.
            if in_flight.load(Ordering::Relaxed) >= self.cap {
                conn.pause_reading(); // the completion that frees a place resumes it
                break;
            }
            let request = conn.peek(MSG).to_vec();
            let (handle, counter) = (conn.handle(), in_flight.clone());
            let (delay, cap) = (self.delay, self.cap);
            let job = move || {
                std::thread::sleep(delay);
                let resume = handle.clone();
                let _ = handle.async_write(request, move |_| {
                    if counter.fetch_sub(1, Ordering::Relaxed) == cap {
                        let _ = resume.resume_reading();
                    }
                });
            };
            let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            match conn.engine().submit(job) {
                Ok(()) => {
                    conn.discard(MSG);
                    self.seen.accepted.fetch_add(1, Ordering::Relaxed);
                    self.seen.max_in_flight.fetch_max(now, Ordering::Relaxed);
                }
                Err(e) => {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    conn.pause_reading(); // keep the request, read nothing more
                    if e.kind() == SubmitErrorKind::Full {
                        self.seen.full.fetch_add(1, Ordering::Relaxed);
                        self.backed_off.lock().unwrap().push(conn.handle());
                    }
                    // Stopped: stay open; the engine closes the connection
                    // once the replies of its queued jobs are written.
                    break;
                }
            }
        }
        Action::None
    }

    fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
        for conn in std::mem::take(&mut *self.backed_off.lock().unwrap()) {
            let _ = conn.resume_reading();
        }
        (Duration::from_millis(5), Action::None)
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        let _ = self.closes.send(reason_kind(reason).to_string());
        Action::None
    }
}

struct Server {
    running: Running,
    seen: Arc<Seen>,
    closes: crossbeam_channel::Receiver<String>,
}

fn start(workers: usize, queue: usize, delay_ms: u64, cap: usize) -> Server {
    let seen = Arc::new(Seen::default());
    let (closes_tx, closes) = unbounded();
    let backed_off = Arc::new(Mutex::new(Vec::new()));
    let handler_seen = seen.clone();
    let running = Running::start(
        Engine::builder(move |_| Rpc {
            delay: Duration::from_millis(delay_ms),
            cap,
            seen: handler_seen.clone(),
            closes: closes_tx.clone(),
            backed_off: backed_off.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2)
        .ticker(true)
        .workers(workers)
        .job_queue_capacity(queue),
    );
    Server {
        running,
        seen,
        closes,
    }
}

/// A client keeping `window` requests outstanding (a new one per reply) until
/// it has sent `limit` or the server ends the stream; returns the ids it got
/// back, checking each was sent and none came twice.
fn windowed_client(mut s: TcpStream, seed: u64, window: u64, limit: u64) -> HashSet<u64> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let id = |n: u64| (seed << 32) | n;
    let mut sent = 0;
    while sent < window.min(limit) {
        s.write_all(&id(sent).to_be_bytes()).unwrap();
        sent += 1;
    }
    let mut got = HashSet::new();
    let mut reply = [0u8; MSG];
    loop {
        match s.read_exact(&mut reply) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return got,
            // Closed at a stop with this client's next requests unread, the
            // server's kernel answers them with a reset, after the replies
            // it sent (which stay readable here, so none is lost): the end
            // of the stream too. Whether every reply came is counted by
            // the callers.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("client {seed}: {e} after {} replies", got.len()),
        }
        let r = u64::from_be_bytes(reply);
        assert!(
            r >> 32 == seed && (r & 0xffff_ffff) < sent,
            "unexpected reply {r:#x}"
        );
        assert!(got.insert(r), "reply {r:#x} came twice");
        if got.len() as u64 == limit {
            return got;
        }
        if sent < limit {
            // The server may be closing: a refused write is not an error here.
            let _ = s.write_all(&id(sent).to_be_bytes());
            sent += 1;
        }
    }
}

/// The trial's failure: at a stop, requests still arriving were refused,
/// the handler closed the connection, and the replies of its jobs still
/// queued were thrown away. With the documented handling, every request the
/// server took gets its reply before the connection closes, with
/// `CloseReason::Shutdown`; and no connection ever has more jobs in flight
/// than its cap.
#[test]
fn a_stop_loses_no_reply_to_a_request_the_server_took() {
    const CLIENTS: u64 = 4;
    const CAP: usize = 4;
    let server = start(2, 4096, 20, CAP);
    let addr = server.running.tcp_addr(0);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let s = tcp_client(addr);
            // A window larger than the cap: the server must pause reading.
            std::thread::spawn(move || windowed_client(s, seed, 3 * CAP as u64, u64::MAX))
        })
        .collect();
    // Stop with jobs queued behind the two workers (bounded wait).
    wait_until("the server took 40 requests", || {
        server.seen.accepted.load(Ordering::Relaxed) >= 40
    });
    server.running.stop();
    let replies: usize = clients.into_iter().map(|c| c.join().unwrap().len()).sum();
    let accepted = server.seen.accepted.load(Ordering::Relaxed);
    assert_eq!(
        replies, accepted,
        "every request the server took must be answered before it closes"
    );
    let closes: Vec<String> = server.closes.try_iter().collect();
    assert_eq!(closes.len(), CLIENTS as usize);
    assert!(
        closes.iter().all(|r| r == "shutdown"),
        "connections must close for the stop, not be closed by the handler: {closes:?}"
    );
    let max = server.seen.max_in_flight.load(Ordering::Relaxed);
    assert!(
        max <= CAP,
        "{max} jobs in flight on one connection, cap {CAP}"
    );
}

/// A queue far too small for the load (one worker, a queue of two jobs,
/// eight pipelining clients): submits are refused as full, and the clients
/// are slowed down, not dropped — every request is answered exactly once.
#[test]
fn a_full_queue_slows_clients_down_instead_of_dropping_them() {
    const CLIENTS: u64 = 8;
    const REQUESTS: u64 = 25;
    let server = start(1, 2, 1, 4);
    let addr = server.running.tcp_addr(0);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let s = tcp_client(addr);
            std::thread::spawn(move || windowed_client(s, seed, 8, REQUESTS))
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap().len() as u64, REQUESTS);
    }
    assert!(
        server.seen.full.load(Ordering::Relaxed) > 0,
        "the test must overflow the queue to mean anything"
    );
    assert_eq!(
        server.seen.accepted.load(Ordering::Relaxed) as u64,
        CLIENTS * REQUESTS
    );
    // The clients have hung up by now; none was closed by the server.
    let closes: Vec<String> = server.closes.try_iter().collect();
    assert!(
        closes.iter().all(|r| r == "eof"),
        "a connection was closed by the server: {closes:?}"
    );
    server.running.stop();
}

/// `OrderedJobs`, one per connection: with four workers and jobs of
/// different lengths, each connection's replies still come back in the
/// order of its requests, and the connections' jobs run side by side.
#[test]
fn ordered_jobs_keep_each_connections_replies_in_order() {
    use ringloop::OrderedJobs;
    const CLIENTS: u64 = 4;
    const REQUESTS: u64 = 100;
    let running_at_once = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let (now, most) = (running_at_once.clone(), most_at_once.clone());
    let server = Running::start(
        Hooks::<OrderedJobs>::new()
            .on_traffic(move |conn| {
                let (engine, handle) = (conn.engine(), conn.handle());
                let jobs = conn.state_or_default().clone();
                while conn.peek(MSG).len() == MSG {
                    let request = conn.peek(MSG).to_vec();
                    let id = u64::from_be_bytes(request[..].try_into().unwrap());
                    let (handle, now, most) = (handle.clone(), now.clone(), most.clone());
                    let job = move || {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        // Lengths that would reorder replies if jobs overlapped.
                        std::thread::sleep(Duration::from_micros(300 * (3 - id % 4)));
                        now.fetch_sub(1, Ordering::SeqCst);
                        let _ = handle.async_write(request, |_| {});
                    };
                    if jobs.submit(&engine, job).is_err() {
                        return Action::Close; // not expected here: the queue is large
                    }
                    conn.discard(MSG);
                }
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .workers(4),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let mut s = tcp_client(server.tcp_addr(0));
            std::thread::spawn(move || {
                let ids: Vec<u64> = (0..REQUESTS).map(|n| (seed << 32) | n).collect();
                let all: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
                s.write_all(&all).unwrap();
                let mut back = vec![0; all.len()];
                s.read_exact(&mut back).unwrap();
                assert!(back == all, "client {seed}: replies out of order");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        most_at_once.load(Ordering::SeqCst) <= CLIENTS as usize,
        "a sequence ran two jobs at once"
    );
    server.stop();
}
