//! Mailbox wake-up latency and doorbell traffic, printed as tables.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench mailbox_latency
//! ```
//!
//! **(a) send → doorbell → receive latency.** A client thread sends one
//! timestamped ping to a server thread that is parked on its mailbox's
//! doorbell (`Mailbox::park(None)`), and waits (parked on its own mailbox) for
//! the server's ack before the next ping. The server records the one-way
//! latency from the `Instant` carried in the ping; the client records the round
//! trip. Between pings the client spins for `GAP` so that the server is
//! certainly blocked in `poll` again; the server's `doorbell_rings()` must
//! then equal the number of pings (each ping really went through the
//! doorbell), which the table shows. The peer is the same ping-pong over two
//! `crossbeam_channel::bounded(1024)` channels with blocking `recv`.
//!
//! **(b) doorbell writes while the owner is busy.** A producer thread sends
//! `SENDS` messages as fast as it can (`try_send`, spinning while the lane is
//! full, or `batch()`es of 64); the owner drains in a loop and parks only when
//! its lanes are empty, either with a non-blocking poll of the doorbell
//! (`park(Some(Duration::ZERO))`) or blocking (`park(Some(PARK_TIMEOUT))`).
//! The owner does no work per message, or ~1 µs of busy work per message.
//! Reported: `doorbell_rings()` per 1,000 sends and per batch.
//!
//! Every receiver checks that it gets exactly the sequence sent (FIFO, no
//! loss, no duplicate). Environment: `LAT_SAMPLES` (default 20000 pings per
//! case), `LAT_ROUNDS` (default 2: every table is measured that many times,
//! cases interleaved, to show the run-to-run spread).

use std::hint::spin_loop;
use std::thread;
use std::time::{Duration, Instant};

use ringloop::actors::{DoorbellKind, Mailbox, MailboxConfig, TrySendError};

/// Pings discarded before measuring (thread start, page faults, clocks).
const WARMUP: usize = 500;
/// Client pause between an ack and the next ping.
const GAP: Duration = Duration::from_micros(20);
/// Lane capacity / channel bound everywhere.
const CAP: usize = 1024;
/// Messages sent per doorbell-traffic case.
const SENDS: u64 = 1_000_000;
/// Messages per batch in the batched doorbell-traffic cases.
const BATCH: u64 = 64;
/// Longest a blocking owner parks; a park that lasts this long while the
/// producer is still sending would mean a lost wake-up, so it is counted.
const PARK_TIMEOUT: Duration = Duration::from_millis(50);
/// Consecutive failed polls before a spinning producer yields its core.
const SPIN_BEFORE_YIELD: u32 = 1 << 12;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds this thread has been runnable but not running (second field
/// of `/proc/thread-self/schedstat`), if the kernel reports it.
fn runqueue_wait_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().nth(1)?.parse().ok()
}

/// A spinning producer's wait for room: spin, and yield now and then.
fn wait(misses: &mut u32) {
    *misses += 1;
    if *misses >= SPIN_BEFORE_YIELD {
        *misses = 0;
        thread::yield_now();
    } else {
        spin_loop();
    }
}

fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        spin_loop();
    }
}

#[cold]
#[inline(never)]
fn mismatch(what: &str, got: u64, want: u64) -> ! {
    panic!("{what}: received {got}, expected {want}");
}

// ---------------------------------------------------------------- (a) latency

#[derive(Clone, Copy)]
enum Peer {
    Ringloop(DoorbellKind),
    Crossbeam,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Ringloop(DoorbellKind::EventFd) => "ringloop mailbox, eventfd",
            Peer::Ringloop(DoorbellKind::Pipe) => "ringloop mailbox, pipe",
            Peer::Ringloop(_) => "ringloop mailbox, auto",
            Peer::Crossbeam => "crossbeam bounded, recv",
        }
    }
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

struct Latency {
    one_way: Percentiles,
    round_trip: Percentiles,
    /// Server doorbell rings per measured ping (1.0: every ping woke a
    /// parked server through the doorbell). `None` for the peer.
    rings_per_ping: Option<f64>,
    /// Time both threads spent waiting for a CPU, per ping.
    preempted_per_ping: Option<Duration>,
}

/// What the server thread hands back.
struct ServerSide {
    one_way: Vec<Duration>,
    rings: Option<u64>,
    waited: Option<u64>,
}

fn ping_pong(peer: Peer, samples: usize) -> Latency {
    let total = (WARMUP + samples) as u64;
    let start_wait = runqueue_wait_ns();
    let (server, mut round_trip) = match peer {
        Peer::Ringloop(kind) => ringloop_ping_pong(kind, total),
        Peer::Crossbeam => crossbeam_ping_pong(total),
    };
    let client_wait = match (start_wait, runqueue_wait_ns()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rings_per_ping = server.rings.map(|r| r as f64 / total as f64);
    let preempted_per_ping = match (client_wait, server.waited) {
        (Some(c), Some(s)) => Some(Duration::from_nanos((c + s) / total)),
        _ => None,
    };
    let mut one_way = server.one_way;
    one_way.drain(..WARMUP);
    round_trip.drain(..WARMUP);
    Latency {
        one_way: percentiles(one_way),
        round_trip: percentiles(round_trip),
        rings_per_ping,
        preempted_per_ping,
    }
}

fn ringloop_ping_pong(kind: DoorbellKind, total: u64) -> (ServerSide, Vec<Duration>) {
    let config = MailboxConfig::new().lane_capacity(CAP).doorbell(kind);
    let mut server_box =
        Mailbox::<(u64, Instant)>::with_config(config.clone()).expect("server mailbox");
    let mut client_box = Mailbox::<u64>::with_config(config).expect("client mailbox");
    let mut ping = server_box.sender();
    let mut ack = client_box.sender();
    let server = thread::spawn(move || {
        let before = runqueue_wait_ns();
        let mut one_way = Vec::with_capacity(total as usize);
        let mut next = 0;
        while next < total {
            server_box.drain(usize::MAX, |(seq, sent)| {
                one_way.push(sent.elapsed());
                if seq != next {
                    mismatch("ping", seq, next);
                }
                next += 1;
                ack.try_send(seq).expect("ack lane has room");
            });
            if next < total {
                server_box.park(None).expect("park");
            }
        }
        let waited = match (before, runqueue_wait_ns()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        ServerSide {
            one_way,
            rings: Some(server_box.doorbell_rings()),
            waited,
        }
    });
    let mut round_trip = Vec::with_capacity(total as usize);
    for seq in 0..total {
        spin_for(GAP);
        let sent = Instant::now();
        ping.try_send((seq, sent)).expect("ping lane has room");
        let mut got = None;
        loop {
            client_box.drain(usize::MAX, |a| got = Some(a));
            if got.is_some() {
                break;
            }
            client_box.park(None).expect("park");
        }
        round_trip.push(sent.elapsed());
        if got != Some(seq) {
            mismatch("ack", got.unwrap_or(u64::MAX), seq);
        }
    }
    (server.join().expect("server panicked"), round_trip)
}

fn crossbeam_ping_pong(total: u64) -> (ServerSide, Vec<Duration>) {
    let (ping, pings) = crossbeam_channel::bounded::<(u64, Instant)>(CAP);
    let (ack, acks) = crossbeam_channel::bounded::<u64>(CAP);
    let server = thread::spawn(move || {
        let before = runqueue_wait_ns();
        let mut one_way = Vec::with_capacity(total as usize);
        for next in 0..total {
            let (seq, sent) = pings.recv().expect("client gone");
            one_way.push(sent.elapsed());
            if seq != next {
                mismatch("ping", seq, next);
            }
            ack.send(seq).expect("client gone");
        }
        let waited = match (before, runqueue_wait_ns()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        ServerSide {
            one_way,
            rings: None,
            waited,
        }
    });
    let mut round_trip = Vec::with_capacity(total as usize);
    for seq in 0..total {
        spin_for(GAP);
        let sent = Instant::now();
        ping.send((seq, sent)).expect("server gone");
        let got = acks.recv().expect("server gone");
        round_trip.push(sent.elapsed());
        if got != seq {
            mismatch("ack", got, seq);
        }
    }
    (server.join().expect("server panicked"), round_trip)
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn latency_table(rounds: usize, samples: usize) {
    let peers = [
        Peer::Ringloop(DoorbellKind::EventFd),
        Peer::Ringloop(DoorbellKind::Pipe),
        Peer::Crossbeam,
    ];
    println!(
        "(a) send -> doorbell -> receive latency, owner parked; {samples} pings per case \
         after {WARMUP} warm-up, {} us gap between pings; times in us",
        GAP.as_micros()
    );
    println!(
        "{:<6} {:<27} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>14}",
        "round",
        "case",
        "1w p50",
        "1w p99",
        "1w p99.9",
        "1w max",
        "rtt p50",
        "rtt p99",
        "rings/ping",
        "preempt/ping"
    );
    for round in 0..rounds {
        // Rotate the order so no case always runs first.
        for k in 0..peers.len() {
            let peer = peers[(k + round) % peers.len()];
            let l = ping_pong(peer, samples);
            println!(
                "{:<6} {:<27} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>14}",
                round + 1,
                peer.name(),
                us(l.one_way.p50),
                us(l.one_way.p99),
                us(l.one_way.p999),
                us(l.one_way.max),
                us(l.round_trip.p50),
                us(l.round_trip.p99),
                l.rings_per_ping
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.3}")),
                l.preempted_per_ping
                    .map_or_else(|| "?".to_string(), |d| format!("{} us", us(d))),
            );
        }
    }
    println!();
}

// ------------------------------------------------------- (b) doorbell traffic

#[derive(Clone, Copy)]
enum Park {
    /// `park(Some(Duration::ZERO))`: announce, re-check, non-blocking poll.
    Poll,
    /// `park(Some(PARK_TIMEOUT))`: really block until rung.
    Block,
}

#[derive(Clone, Copy)]
struct TrafficCase {
    batched: bool,
    work: Duration,
    park: Park,
}

impl TrafficCase {
    fn name(self) -> String {
        format!(
            "{}, owner {}, {}",
            if self.batched {
                "batch(64)"
            } else {
                "try_send"
            },
            if self.work.is_zero() {
                "no work".to_string()
            } else {
                format!("{} us/msg", self.work.as_micros())
            },
            match self.park {
                Park::Poll => "park: poll(0)",
                Park::Block => "park: block",
            }
        )
    }
}

struct Traffic {
    rings: u64,
    batches: u64,
    parks: u64,
    timeouts: u64,
    elapsed: Duration,
    /// Time the two threads spent waiting for a CPU, as a share of `elapsed`.
    preempted: Option<f64>,
}

fn doorbell_traffic(case: TrafficCase) -> Traffic {
    let mut mailbox =
        Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(CAP)).expect("mailbox");
    let mut tx = mailbox.sender();
    let producer = thread::spawn(move || {
        let before = runqueue_wait_ns();
        let mut batches = 0u64;
        let mut misses = 0u32;
        let mut v = 0;
        while v < SENDS {
            if case.batched {
                let end = SENDS.min(v + BATCH);
                let mut batch = tx.batch();
                while v < end {
                    match batch.try_send(v) {
                        Ok(()) => v += 1,
                        Err(TrySendError::Full(_)) => break,
                        Err(TrySendError::Closed(_)) => panic!("mailbox closed"),
                    }
                }
                let pushed = batch.len();
                drop(batch); // publishes, and rings at most once
                if pushed == 0 {
                    wait(&mut misses);
                } else {
                    batches += 1;
                    misses = 0;
                }
            } else {
                match tx.try_send(v) {
                    Ok(()) => {
                        v += 1;
                        misses = 0;
                    }
                    Err(TrySendError::Full(_)) => wait(&mut misses),
                    Err(TrySendError::Closed(_)) => panic!("mailbox closed"),
                }
            }
        }
        let waited = match (before, runqueue_wait_ns()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        (batches, waited)
    });
    let before = runqueue_wait_ns();
    let start = Instant::now();
    let mut next = 0u64;
    let mut parks = 0u64;
    let mut timeouts = 0u64;
    while next < SENDS {
        let n = mailbox.drain(usize::MAX, |v| {
            if v != next {
                mismatch("message", v, next);
            }
            next += 1;
            if !case.work.is_zero() {
                spin_for(case.work);
            }
        });
        if n == 0 {
            parks += 1;
            match case.park {
                Park::Poll => mailbox.park(Some(Duration::ZERO)).expect("park"),
                Park::Block => {
                    let parked = Instant::now();
                    mailbox.park(Some(PARK_TIMEOUT)).expect("park");
                    if parked.elapsed() >= PARK_TIMEOUT {
                        timeouts += 1;
                    }
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let owner_waited = match (before, runqueue_wait_ns()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let (batches, producer_waited) = producer.join().expect("producer panicked");
    let preempted = match (owner_waited, producer_waited) {
        (Some(o), Some(p)) => Some((o + p) as f64 / elapsed.as_nanos() as f64),
        _ => None,
    };
    let rings = mailbox.doorbell_rings();
    // The wake word hands out at most one ring per announced park.
    assert!(rings <= parks, "{rings} rings for {parks} parks");
    Traffic {
        rings,
        batches,
        parks,
        timeouts,
        elapsed,
        preempted,
    }
}

fn traffic_table(rounds: usize) {
    let mut cases = Vec::new();
    for batched in [false, true] {
        for work in [Duration::ZERO, Duration::from_micros(1)] {
            for park in [Park::Poll, Park::Block] {
                cases.push(TrafficCase {
                    batched,
                    work,
                    park,
                });
            }
        }
    }
    println!(
        "(b) doorbell writes while the owner is busy: {SENDS} sends per case, lane of {CAP}, \
         owner drains and parks only when empty"
    );
    println!(
        "{:<6} {:<46} {:>9} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "round",
        "case",
        "M msg/s",
        "rings/1000",
        "rings/bat",
        "parks/1000",
        "rings",
        "timeouts",
        "preempt"
    );
    for round in 0..rounds {
        for k in 0..cases.len() {
            let case = cases[(k + round) % cases.len()];
            let t = doorbell_traffic(case);
            let per_batch = if case.batched {
                format!("{:.4}", t.rings as f64 / t.batches as f64)
            } else {
                "-".to_string()
            };
            println!(
                "{:<6} {:<46} {:>9.2} {:>11.3} {:>10} {:>10.3} {:>9} {:>9} {:>9}",
                round + 1,
                case.name(),
                SENDS as f64 / t.elapsed.as_secs_f64() / 1e6,
                t.rings as f64 * 1000.0 / SENDS as f64,
                per_batch,
                t.parks as f64 * 1000.0 / SENDS as f64,
                t.rings,
                t.timeouts,
                t.preempted
                    .map_or_else(|| "?".to_string(), |p| format!("{:.1}%", p * 100.0)),
            );
        }
    }
    println!();
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = env_or("LAT_ROUNDS", if bench { 2 } else { 1 });
    let samples = env_or("LAT_SAMPLES", if bench { 20_000 } else { 1_000 });
    println!("load average before: {}", loadavg());
    latency_table(rounds, samples);
    if bench {
        traffic_table(rounds);
    }
    println!("load average after: {}", loadavg());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}
