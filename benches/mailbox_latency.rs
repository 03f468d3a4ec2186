//! Mailbox wake-up latency and doorbell traffic, printed as tables.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench mailbox_latency
//! ```
//!
//! **(a) send → doorbell → receive latency.** A client thread sends one
//! timestamped ping to a server thread that is parked on its mailbox's
//! doorbell (`Mailbox::park(None)`), and waits (parked on its own mailbox) for
//! the server's ack before the next ping. All cases run at once, one server
//! thread each, and the client pings them in turn, so that a change in the
//! (virtual) machine's wake-up behaviour during the run hits every case alike.
//! Threads are pinned, because where the woken thread runs decides the
//! latency far more than the queue does: `cross_cpu`, client on CPU 1 and
//! servers on CPU 0 (every ping wakes the other core), then `same_cpu`,
//! everything on CPU 0 (the woken server runs when the client goes to sleep
//! waiting for the ack). The server records the one-way
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
//! The owner does no work per message, or ~1 µs of busy work per message,
//! taking either everything visible per `drain` call or at most 64 (a lane's
//! slots go back to the producer only when a `drain` call returns).
//! Reported: `doorbell_rings()` per 1,000 sends and per batch, owner parks per
//! 1,000 sends, and blocking parks that ran into their timeout. Producer and
//! owner are pinned as in (a): `cross_cpu` (a worker writing to a loop on
//! another core) and `same_cpu`, reported separately.
//!
//! Before measuring, `cargo bench` waits for an idle machine (up to
//! `BENCH_IDLE_WAIT` seconds, see `benches/common`) and prints what it found;
//! each table ends with a summary, the median and range over the rounds with
//! the load average beside it.
//!
//! Every receiver checks that it gets exactly the sequence sent (FIFO, no
//! loss, no duplicate). Environment: `LAT_SAMPLES` (default 20000 pings per
//! case), `LAT_SENDS` (default 1000000 per doorbell-traffic case), `LAT_ROUNDS` (default 3, at least 3 under `cargo bench`: every table
//! is measured that many times, cases interleaved, to show the run-to-run
//! spread), `LAT_PLACEMENT` (`cross` or `same` keeps one placement).

use std::hint::spin_loop;
use std::thread;
use std::time::{Duration, Instant};

use ringloop_actors::{DoorbellKind, Mailbox, MailboxConfig, Sender, TrySendError};

mod common;
use common::{runqueue_wait_ns, IdleCheck, LoadTrack, Placement, Spread};

/// Pings discarded before measuring (thread start, page faults, clocks).
const WARMUP: usize = 500;
/// Client pause between an ack and the next ping.
const GAP: Duration = Duration::from_micros(20);
/// Lane capacity / channel bound everywhere.
const CAP: usize = 1024;
/// Messages sent per doorbell-traffic case, unless `LAT_SENDS` says.
const SENDS: u64 = 1_000_000;

/// Messages sent per doorbell-traffic case (`LAT_SENDS`, default `SENDS`).
fn sends() -> u64 {
    static N: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *N.get_or_init(|| env_or("LAT_SENDS", SENDS as usize).max(BATCH as usize) as u64)
}
/// Messages per batch in the batched doorbell-traffic cases.
const BATCH: u64 = 64;
/// Longest a blocking owner parks; a park that lasts this long while the
/// producer is still sending would mean a lost wake-up, so it is counted.
const PARK_TIMEOUT: Duration = Duration::from_millis(50);
/// A doorbell-traffic run whose threads were preempted for more than this
/// share of it is retried, up to `TRAFFIC_TRIES` attempts in all.
const TRAFFIC_CLEAN: f64 = 0.05;
const TRAFFIC_TRIES: usize = 2;
/// Consecutive failed polls before a spinning producer yields its core.
const SPIN_BEFORE_YIELD: u32 = 1 << 12;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// What a server thread hands back.
struct ServerSide {
    one_way: Vec<Duration>,
    /// Doorbell rings of the server's mailbox (`None` for the peer).
    rings: Option<u64>,
    /// Nanoseconds the server thread spent runnable but preempted.
    waited: Option<u64>,
}

/// The client's ends of one ping-pong pair.
enum Client {
    Ringloop {
        ping: Sender<(u64, Instant)>,
        acks: Mailbox<u64>,
    },
    Crossbeam {
        ping: crossbeam_channel::Sender<(u64, Instant)>,
        acks: crossbeam_channel::Receiver<u64>,
    },
}

impl Client {
    /// Sends ping `seq`, waits (parked) for its ack, returns the round trip.
    fn ping(&mut self, seq: u64) -> Duration {
        let sent = Instant::now();
        let got = match self {
            Client::Ringloop { ping, acks } => {
                ping.try_send((seq, sent)).expect("ping lane has room");
                let mut got = None;
                loop {
                    acks.drain(usize::MAX, |a| got = Some(a));
                    if let Some(a) = got {
                        break a;
                    }
                    acks.park(None).expect("park");
                }
            }
            Client::Crossbeam { ping, acks } => {
                ping.send((seq, sent)).expect("server gone");
                acks.recv().expect("server gone")
            }
        };
        let round_trip = sent.elapsed();
        if got != seq {
            mismatch("ack", got, seq);
        }
        round_trip
    }
}

/// Starts the server thread of one pair, answering `total` pings.
fn start_pair(
    peer: Peer,
    total: u64,
    server_cpu: Option<usize>,
) -> (Client, thread::JoinHandle<ServerSide>) {
    match peer {
        Peer::Ringloop(kind) => {
            let config = MailboxConfig::new().lane_capacity(CAP).doorbell(kind);
            let mut server_box =
                Mailbox::<(u64, Instant)>::with_config(config.clone()).expect("server mailbox");
            let acks = Mailbox::<u64>::with_config(config).expect("client mailbox");
            let ping = server_box.sender();
            let mut ack = acks.sender();
            let server = thread::spawn(move || {
                pin(server_cpu);
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
                ServerSide {
                    one_way,
                    rings: Some(server_box.doorbell_rings()),
                    waited: waited_since(before),
                }
            });
            (Client::Ringloop { ping, acks }, server)
        }
        Peer::Crossbeam => {
            let (ping, pings) = crossbeam_channel::bounded::<(u64, Instant)>(CAP);
            let (ack, acks) = crossbeam_channel::bounded::<u64>(CAP);
            let server = thread::spawn(move || {
                pin(server_cpu);
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
                ServerSide {
                    one_way,
                    rings: None,
                    waited: waited_since(before),
                }
            });
            (Client::Crossbeam { ping, acks }, server)
        }
    }
}

fn waited_since(before: Option<u64>) -> Option<u64> {
    Some(runqueue_wait_ns()? - before?)
}

/// Pins the calling thread to `cpu` (nothing if `None`; a failure to pin is
/// ignored, the run is then simply unpinned).
fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        common::pin(cpu);
    }
}

/// One round of table (a): every pair set up at once, their pings
/// interleaved (one ping to each pair in turn, rotating who goes first), so
/// that changes in the machine's state over time hit every case alike.
/// Returns, per peer, the one-way p50 and p99 and the round trip p50 in µs,
/// for the summary over rounds.
fn latency_round(
    peers: &[Peer],
    samples: usize,
    round: usize,
    placement: Placement,
) -> Vec<[f64; 3]> {
    let total = (WARMUP + samples) as u64;
    // The client sends the pings (producer), the servers receive them.
    let (client_cpu, server_cpu) = (
        Some(placement.producer_cpu()),
        Some(placement.consumer_cpu()),
    );
    let (clients, servers): (Vec<Client>, Vec<_>) = peers
        .iter()
        .map(|&p| start_pair(p, total, server_cpu))
        .unzip();
    let n = peers.len();
    let client = thread::spawn(move || {
        let mut clients = clients;
        pin(client_cpu);
        let mut round_trips = vec![Vec::with_capacity(total as usize); n];
        let before = runqueue_wait_ns();
        for seq in 0..total {
            for k in 0..n {
                let i = (k + seq as usize) % n;
                spin_for(GAP);
                round_trips[i].push(clients[i].ping(seq));
            }
        }
        (round_trips, waited_since(before))
    });
    let (round_trips, client_waited) = client.join().expect("client panicked");
    let mut figures = Vec::new();
    for ((peer, server), mut round_trip) in peers.iter().zip(servers).zip(round_trips) {
        let server = server.join().expect("server panicked");
        let rings_per_ping = server.rings.map(|r| r as f64 / total as f64);
        let preempted_per_ping = match (server.waited, client_waited) {
            (Some(s), Some(c)) => Some(Duration::from_nanos((s + c / peers.len() as u64) / total)),
            _ => None,
        };
        let mut one_way = server.one_way;
        one_way.drain(..WARMUP);
        round_trip.drain(..WARMUP);
        let one_way = percentiles(one_way);
        let round_trip = percentiles(round_trip);
        figures.push([
            one_way.p50.as_secs_f64() * 1e6,
            one_way.p99.as_secs_f64() * 1e6,
            round_trip.p50.as_secs_f64() * 1e6,
        ]);
        println!(
            "{:<6} {:<27} {:<36} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>14}",
            round + 1,
            peer.name(),
            placement.name(),
            us(one_way.p50),
            us(one_way.p99),
            us(one_way.p999),
            us(one_way.max),
            us(round_trip.p50),
            us(round_trip.p99),
            rings_per_ping.map_or_else(|| "-".to_string(), |r| format!("{r:.3}")),
            preempted_per_ping.map_or_else(|| "?".to_string(), |d| format!("{} us", us(d))),
        );
    }
    figures
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn latency_table(rounds: usize, samples: usize, idle: &IdleCheck) {
    let peers = [
        Peer::Ringloop(DoorbellKind::EventFd),
        Peer::Ringloop(DoorbellKind::Pipe),
        Peer::Crossbeam,
    ];
    println!(
        "(a) send -> doorbell -> receive latency, owner parked; {samples} pings per case \
         after {WARMUP} warm-up, cases interleaved ping by ping, {} us gap between pings; \
         times in us",
        GAP.as_micros()
    );
    println!(
        "{:<6} {:<27} {:<36} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>14}",
        "round",
        "case",
        "threads",
        "1w p50",
        "1w p99",
        "1w p99.9",
        "1w max",
        "rtt p50",
        "rtt p99",
        "rings/ping",
        "preempt/ping"
    );
    let mut summary = Vec::new();
    for placement in Placement::chosen("LAT_PLACEMENT") {
        let mut figures: Vec<Vec<[f64; 3]>> = vec![Vec::new(); peers.len()];
        let mut load = LoadTrack::default();
        for round in 0..rounds {
            for (i, f) in latency_round(&peers, samples, round, placement)
                .into_iter()
                .enumerate()
            {
                figures[i].push(f);
            }
            load.note();
        }
        summary.push((placement, figures, load));
    }
    println!(
        "1w: one-way, ping sent -> server holds it; rtt: ping sent -> client holds the ack. \
         rings/ping: server doorbell writes per ping (1.000 = every ping went through the \
         doorbell). preempt/ping: time the threads sat runnable but not running, per ping; \
         on one core this includes, by design, the woken server waiting for the client to \
         sleep (and crossbeam's receivers yielding to each other while they spin)."
    );
    println!();
    println!(
        "(a) summary: median (min-max) over {rounds} rounds, us; {}",
        idle.line()
    );
    println!(
        "{:<27} {:<10} {:>22} {:>22} {:>22} {:>9}",
        "case", "threads", "1w p50", "1w p99", "rtt p50", "load 1m"
    );
    for (placement, figures, load) in &summary {
        for (peer, runs) in peers.iter().zip(figures) {
            let col = |k: usize| {
                Spread::of(&runs.iter().map(|f| f[k]).collect::<Vec<_>>())
                    .map_or_else(|| "?".to_string(), |s| s.show(1))
            };
            println!(
                "{:<27} {:<10} {:>22} {:>22} {:>22} {:>9}",
                peer.name(),
                placement.name(),
                col(0),
                col(1),
                col(2),
                load.show()
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
    /// Most messages taken per `drain` call (the lane's slots are released
    /// to the producer when a `drain` call returns).
    budget: usize,
}

impl TrafficCase {
    fn name(self) -> String {
        format!(
            "{}, owner {}{}, {}",
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
            if self.budget == usize::MAX {
                String::new()
            } else {
                format!(" drain({})", self.budget)
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

fn doorbell_traffic(case: TrafficCase, at: Placement) -> Traffic {
    let mut mailbox =
        Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(CAP)).expect("mailbox");
    let mut tx = mailbox.sender();
    let producer = thread::spawn(move || {
        common::pin(at.producer_cpu());
        let before = runqueue_wait_ns();
        let mut batches = 0u64;
        let mut misses = 0u32;
        let mut v = 0;
        while v < sends() {
            if case.batched {
                let end = sends().min(v + BATCH);
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
    common::pin(at.consumer_cpu());
    let before = runqueue_wait_ns();
    let start = Instant::now();
    let mut next = 0u64;
    let mut parks = 0u64;
    let mut timeouts = 0u64;
    while next < sends() {
        let n = mailbox.drain(case.budget, |v| {
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
        (Some(o), Some(p)) => Some(at.disturbance(Duration::from_nanos(o + p), elapsed)),
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

fn traffic_table(rounds: usize, idle: &IdleCheck) {
    let mut cases = Vec::new();
    for batched in [false, true] {
        for (work, budget) in [
            (Duration::ZERO, usize::MAX),
            (Duration::from_micros(1), usize::MAX),
            (Duration::from_micros(1), 64),
        ] {
            for park in [Park::Poll, Park::Block] {
                cases.push(TrafficCase {
                    batched,
                    work,
                    park,
                    budget,
                });
            }
        }
    }
    println!(
        "(b) doorbell writes while the owner is busy: {} sends per case, lane of {CAP}, \
         owner drains and parks only when empty",
        sends()
    );
    println!(
        "{:<6} {:<10} {:<56} {:>9} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>5}",
        "round",
        "threads",
        "case",
        "M msg/s",
        "rings/1000",
        "rings/bat",
        "parks/1000",
        "rings",
        "timeouts",
        "preempt",
        "tries"
    );
    let placements = Placement::chosen("LAT_PLACEMENT");
    // figures[placement][case]: (M msg/s, rings per 1000 sends) per round.
    let mut figures = vec![vec![Vec::new(); cases.len()]; placements.len()];
    let mut load = LoadTrack::default();
    for (p, &at) in placements.iter().enumerate() {
        for round in 0..rounds {
            for k in 0..cases.len() {
                let i = (k + round) % cases.len();
                let t = traffic_row(cases[i], at, round);
                figures[p][i].push(t);
            }
            load.note();
        }
    }
    println!();
    println!(
        "(b) summary: median (min-max) over {rounds} rounds; load 1m {}; {}",
        load.show(),
        idle.line()
    );
    println!(
        "{:<10} {:<56} {:>22} {:>22}",
        "threads", "case", "M msg/s", "rings/1000"
    );
    for (p, at) in placements.iter().enumerate() {
        for (i, case) in cases.iter().enumerate() {
            let col = |k: usize, d: usize| {
                Spread::of(
                    &figures[p][i]
                        .iter()
                        .map(|f: &[f64; 2]| f[k])
                        .collect::<Vec<_>>(),
                )
                .map_or_else(|| "?".to_string(), |s| s.show(d))
            };
            println!(
                "{:<10} {:<56} {:>22} {:>22}",
                at.name(),
                case.name(),
                col(0, 2),
                col(1, 3)
            );
        }
    }
    println!();
}

/// Runs one doorbell-traffic case, retrying once if it was disturbed,
/// prints its row and returns (M msg/s, doorbell rings per 1000 sends).
fn traffic_row(case: TrafficCase, at: Placement, round: usize) -> [f64; 2] {
    // Retry a run whose threads were preempted for a good part of it: the
    // owner then empties its lane (and parks) only because the producer was
    // not running, which says nothing about the mailbox.
    let mut attempts = 1;
    let mut t = doorbell_traffic(case, at);
    while attempts < TRAFFIC_TRIES && t.preempted.is_some_and(|p| p > TRAFFIC_CLEAN) {
        attempts += 1;
        t = doorbell_traffic(case, at);
    }
    let per_batch = if case.batched {
        format!("{:.4}", t.rings as f64 / t.batches as f64)
    } else {
        "-".to_string()
    };
    let rate = sends() as f64 / t.elapsed.as_secs_f64() / 1e6;
    let rings = t.rings as f64 * 1000.0 / sends() as f64;
    println!(
        "{:<6} {:<10} {:<56} {:>9.2} {:>11.3} {:>10} {:>10.3} {:>9} {:>9} {:>9} {:>5}",
        round + 1,
        at.name(),
        case.name(),
        rate,
        rings,
        per_batch,
        t.parks as f64 * 1000.0 / sends() as f64,
        t.rings,
        t.timeouts,
        t.preempted
            .map_or_else(|| "?".to_string(), |p| format!("{:.1}%", p * 100.0)),
        attempts,
    );
    [rate, rings]
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick (1 round, no
    // wait for an idle machine, no doorbell-traffic table).
    let bench = common::is_bench();
    let rounds = common::at_least_min_runs(
        env_or("LAT_ROUNDS", if bench { 3 } else { 1 }),
        bench,
        "mailbox_latency",
    );
    let samples = env_or("LAT_SAMPLES", if bench { 20_000 } else { 1_000 });
    let idle = common::idle_check("mailbox_latency");
    println!("{}", idle.line());
    latency_table(rounds, samples, &idle);
    if bench {
        traffic_table(rounds, &idle);
    }
    println!(
        "load average at the end: {}",
        common::loadavg1().map_or_else(|| "?".to_string(), |l| format!("{l:.2}"))
    );
}
