//! Cross-thread SPSC throughput of ringloop's ring and mailbox against peers
//! measured in the same run.
//!
//! Every benchmark moves `MSGS` `u64`s per iteration from a producer thread to
//! the consumer (the benchmark thread), through a queue of capacity `CAP`. The
//! producer sends `0, 1, 2, ...` and the consumer checks that it receives
//! exactly that sequence (FIFO, nothing lost, nothing duplicated), so a broken
//! queue fails loudly instead of looking fast. The clock runs from the moment
//! both threads are released until the consumer has checked the last message.
//!
//! Non-blocking queues are polled in a spin loop (`std::hint::spin_loop`); after
//! `SPIN_BEFORE_YIELD` consecutive misses a side yields its core, because this
//! runs on a shared 2-vCPU machine where a peer thread may be descheduled and a
//! pure spin would then burn whole time slices. The blocking peers
//! (crossbeam-channel, flume) use their own send/recv waiting.
//!
//! A second group (`same_thread_fill_drain_1024`) fills and empties a queue on
//! one thread: the cost of the operations without cross-core traffic, which
//! isolates what the mailbox adds per send to the bare ring.
//!
//! Each timed run also reads how long its two threads sat runnable but
//! preempted (`/proc/thread-self/schedstat`); a run preempted for more than 2%
//! of its time is retried (up to 4 attempts) and the counts are printed after
//! criterion's report, so what is measured is the queue, not the scheduler.
//!
//! After criterion, a same-window table is printed (see [`interleaved`]):
//! every round runs every case once, ratios to crossbeam are taken within the
//! round, and runs during which the threads were preempted by other work
//! (per `/proc/thread-self/schedstat`) are retried or left out.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3
//! # only the same-window table (a filter that matches no criterion case):
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench ring -- none
//! ```
//!
//! Environment: `RING_ROUNDS` (default 9; 0 skips the same-window table),
//! `RING_VERBOSE` (print every run of the same-window table).

use std::collections::VecDeque;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use ringbuf::traits::{Consumer as _, Producer as _, Split as _};
use ringloop::actors::{ring, Mailbox, MailboxConfig, TrySendError};

/// Messages per iteration.
const MSGS: u64 = 1_000_000;
/// Capacity of every queue (ring slots, channel bound, mailbox lane).
const CAP: usize = 1024;
/// Messages per batch on the batched paths.
const BATCH: usize = 64;
/// Consecutive failed polls before a spinning side yields its core.
const SPIN_BEFORE_YIELD: u32 = 1 << 12;

/// Waits for the other side: spin, and yield now and then.
#[derive(Default)]
struct Spin {
    misses: u32,
}

impl Spin {
    #[inline]
    fn miss(&mut self) {
        self.misses += 1;
        if self.misses >= SPIN_BEFORE_YIELD {
            self.misses = 0;
            thread::yield_now();
        } else {
            spin_loop();
        }
    }

    #[inline]
    fn hit(&mut self) {
        self.misses = 0;
    }
}

/// FIFO check on the consumer side: every message must be the next number.
struct Expect {
    next: u64,
}

impl Expect {
    fn new() -> Self {
        Self { next: 0 }
    }

    #[inline]
    fn check(&mut self, got: u64) {
        if got != self.next {
            mismatch(got, self.next);
        }
        self.next += 1;
    }
}

#[cold]
#[inline(never)]
fn mismatch(got: u64, want: u64) -> ! {
    panic!("queue broke FIFO: received {got}, expected {want}");
}

/// One timed transfer.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// From the release of both threads until the consumer checked the last
    /// message.
    elapsed: Duration,
    /// Time the two threads spent runnable but waiting for a CPU meanwhile
    /// (preempted by other work on the machine), if the kernel reports it.
    waited: Option<Duration>,
}

impl Run {
    /// Share of the run the two threads spent waiting for a CPU.
    fn disturbance(&self) -> Option<f64> {
        self.waited
            .map(|w| w.as_secs_f64() / self.elapsed.as_secs_f64())
    }
}

/// Nanoseconds this thread has been runnable but not running, from the
/// second field of `/proc/thread-self/schedstat` (Linux with schedstats).
fn runqueue_wait_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `producer(total)` on a new thread and `consumer(total)` on this one,
/// both released together; times the run until the consumer is done.
fn run_pair<P, C>(total: u64, producer: P, consumer: C) -> Run
where
    P: FnOnce(u64) + Send + 'static,
    C: FnOnce(u64),
{
    let barrier = Arc::new(Barrier::new(2));
    let release = barrier.clone();
    let handle = thread::spawn(move || {
        release.wait();
        let before = runqueue_wait_ns();
        producer(total);
        Some(runqueue_wait_ns()? - before?)
    });
    barrier.wait();
    let before = runqueue_wait_ns();
    let start = Instant::now();
    consumer(total);
    let elapsed = start.elapsed();
    let after = runqueue_wait_ns();
    let producer_wait = handle.join().expect("producer panicked");
    let waited = match (before, after, producer_wait) {
        (Some(b), Some(a), Some(p)) => Some(Duration::from_nanos(a - b + p)),
        _ => None,
    };
    Run { elapsed, waited }
}

fn ringloop_single(total: u64) -> Run {
    let (mut tx, mut rx) = ring::channel::<u64>(CAP);
    run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut v = 0;
            while v < n {
                match tx.try_push(v) {
                    Ok(()) => {
                        spin.hit();
                        v += 1;
                    }
                    Err(e) => {
                        assert!(e.is_full(), "consumer gone");
                        spin.miss();
                    }
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                match rx.pop() {
                    Some(v) => {
                        spin.hit();
                        expect.check(v);
                    }
                    None => spin.miss(),
                }
            }
        },
    )
}

fn ringloop_batched(total: u64) -> Run {
    ringloop_batched_drain(total, usize::MAX)
}

/// Like [`ringloop_batched`], with the consumer taking at most 64 per
/// `drain` call, as the ringbuf slice case does (a `drain` call hands its
/// slots back to the producer only when it returns).
fn ringloop_batched_drain64(total: u64) -> Run {
    ringloop_batched_drain(total, BATCH)
}

fn ringloop_batched_drain(total: u64, budget: usize) -> Run {
    let (mut tx, mut rx) = ring::channel::<u64>(CAP);
    run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut v = 0;
            while v < n {
                let end = n.min(v + BATCH as u64);
                let mut batch = tx.batch();
                while v < end {
                    match batch.try_push(v) {
                        Ok(()) => v += 1,
                        Err(e) => {
                            assert!(e.is_full(), "consumer gone");
                            break;
                        }
                    }
                }
                let pushed = batch.len();
                drop(batch); // one Release store publishes the whole batch
                if pushed == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                if rx.drain(budget, |v| expect.check(v)) == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
    )
}

fn ringloop_push_from(total: u64) -> Run {
    let (mut tx, mut rx) = ring::channel::<u64>(CAP);
    run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut queue = VecDeque::with_capacity(BATCH);
            let mut v = 0;
            while v < n || !queue.is_empty() {
                while queue.len() < BATCH && v < n {
                    queue.push_back(v);
                    v += 1;
                }
                if tx.push_from(&mut queue) == 0 {
                    assert!(!tx.is_closed(), "consumer gone");
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                if rx.drain(usize::MAX, |v| expect.check(v)) == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
    )
}

fn mailbox_single(total: u64) -> Run {
    let mut mailbox =
        Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(CAP)).expect("mailbox");
    let mut tx = mailbox.sender();
    let run = run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut v = 0;
            while v < n {
                match tx.try_send(v) {
                    Ok(()) => {
                        spin.hit();
                        v += 1;
                    }
                    Err(TrySendError::Full(_)) => spin.miss(),
                    Err(TrySendError::Closed(_)) => panic!("mailbox closed"),
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                if mailbox.drain(usize::MAX, |v| expect.check(v)) == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
    );
    // The owner never parked, so no producer may have rung the doorbell.
    assert_eq!(
        mailbox.doorbell_rings(),
        0,
        "doorbell rung for an awake owner"
    );
    run
}

fn mailbox_batched(total: u64) -> Run {
    let mut mailbox =
        Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(CAP)).expect("mailbox");
    let mut tx = mailbox.sender();
    let run = run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut v = 0;
            while v < n {
                let end = n.min(v + BATCH as u64);
                let mut batch = tx.batch();
                while v < end {
                    match batch.try_send(v) {
                        Ok(()) => v += 1,
                        Err(TrySendError::Full(_)) => break,
                        Err(TrySendError::Closed(_)) => panic!("mailbox closed"),
                    }
                }
                let pushed = batch.len();
                drop(batch); // one cursor store and one wake-word check
                if pushed == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                if mailbox.drain(usize::MAX, |v| expect.check(v)) == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                }
            }
        },
    );
    assert_eq!(
        mailbox.doorbell_rings(),
        0,
        "doorbell rung for an awake owner"
    );
    run
}

fn crossbeam_bounded(total: u64) -> Run {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAP);
    run_pair(
        total,
        move |n| {
            for v in 0..n {
                tx.send(v).expect("receiver gone");
            }
        },
        |n| {
            let mut expect = Expect::new();
            while expect.next < n {
                expect.check(rx.recv().expect("sender gone"));
            }
        },
    )
}

fn flume_bounded(total: u64) -> Run {
    let (tx, rx) = flume::bounded::<u64>(CAP);
    run_pair(
        total,
        move |n| {
            for v in 0..n {
                tx.send(v).expect("receiver gone");
            }
        },
        |n| {
            let mut expect = Expect::new();
            while expect.next < n {
                expect.check(rx.recv().expect("sender gone"));
            }
        },
    )
}

fn ringbuf_single(total: u64) -> Run {
    let (mut tx, mut rx) = ringbuf::HeapRb::<u64>::new(CAP).split();
    run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut v = 0;
            while v < n {
                match tx.try_push(v) {
                    Ok(()) => {
                        spin.hit();
                        v += 1;
                    }
                    Err(_) => spin.miss(),
                }
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            while expect.next < n {
                match rx.try_pop() {
                    Some(v) => {
                        spin.hit();
                        expect.check(v);
                    }
                    None => spin.miss(),
                }
            }
        },
    )
}

fn ringbuf_batched(total: u64) -> Run {
    let (mut tx, mut rx) = ringbuf::HeapRb::<u64>::new(CAP).split();
    run_pair(
        total,
        move |n| {
            let mut spin = Spin::default();
            let mut buf = [0u64; BATCH];
            let mut v = 0;
            while v < n {
                let len = (n - v).min(BATCH as u64) as usize;
                for (i, slot) in buf[..len].iter_mut().enumerate() {
                    *slot = v + i as u64;
                }
                let mut off = 0;
                while off < len {
                    let pushed = tx.push_slice(&buf[off..len]);
                    if pushed == 0 {
                        spin.miss();
                    } else {
                        spin.hit();
                        off += pushed;
                    }
                }
                v += len as u64;
            }
        },
        |n| {
            let mut spin = Spin::default();
            let mut expect = Expect::new();
            let mut buf = [0u64; BATCH];
            while expect.next < n {
                let got = rx.pop_slice(&mut buf);
                if got == 0 {
                    spin.miss();
                } else {
                    spin.hit();
                    for &v in &buf[..got] {
                        expect.check(v);
                    }
                }
            }
        },
    )
}

/// One benchmark case: moves the given number of messages and times it.
type Case = fn(u64) -> Run;

/// Every case, with its report name, in the order criterion runs them.
const CASES: [(&str, Case); 10] = [
    ("ringloop_ring_single", ringloop_single),
    ("ringloop_ring_batch64", ringloop_batched),
    ("ringloop_ring_batch64_drain64", ringloop_batched_drain64),
    ("ringloop_ring_push_from64", ringloop_push_from),
    ("ringloop_mailbox_single", mailbox_single),
    ("ringloop_mailbox_batch64", mailbox_batched),
    ("crossbeam_bounded", crossbeam_bounded),
    ("flume_bounded", flume_bounded),
    ("ringbuf_single", ringbuf_single),
    ("ringbuf_slice64", ringbuf_batched),
];

/// The peer every ratio is taken against.
const BASELINE: &str = "crossbeam_bounded";

/// A run counts as clean when its two threads together waited for a CPU
/// less than this share of its wall time.
const CLEAN: f64 = 0.02;
/// Attempts per case and round to get a clean run.
const TRIES: usize = 4;

/// Criterion runs, runs retried because they were preempted, and runs kept
/// although still preempted after `TRIES` attempts.
static RUNS: AtomicUsize = AtomicUsize::new(0);
static RETRIED: AtomicUsize = AtomicUsize::new(0);
static KEPT_DIRTY: AtomicUsize = AtomicUsize::new(0);

/// `true` if the threads were preempted for at most `CLEAN` of the run (or
/// the kernel does not say).
fn is_clean(run: &Run) -> bool {
    match run.disturbance() {
        Some(share) => share <= CLEAN,
        None => true,
    }
}

/// Times one criterion sample, retrying (up to `TRIES` attempts) when other
/// work on the machine preempted the measured threads: what is measured is
/// the queue, not the scheduler. The counts are printed after criterion.
fn clean_run(case: Case, total: u64) -> Duration {
    RUNS.fetch_add(1, Ordering::Relaxed);
    let mut run = case(total);
    for _ in 1..TRIES {
        if is_clean(&run) {
            return run.elapsed;
        }
        RETRIED.fetch_add(1, Ordering::Relaxed);
        run = case(total);
    }
    if !is_clean(&run) {
        KEPT_DIRTY.fetch_add(1, Ordering::Relaxed);
    }
    run.elapsed
}

fn spsc(c: &mut Criterion) {
    let mut group = c.benchmark_group("spsc_u64_cap1024");
    group.throughput(Throughput::Elements(MSGS));
    // One iteration moves a million messages (milliseconds to tens of
    // milliseconds): few, equal-sized samples keep the suite within minutes.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for (name, run) in CASES {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| clean_run(run, iters * MSGS))
        });
    }
    group.finish();
}

/// Messages per iteration of the same-thread group: one lane's worth.
const ROUND_TRIP: u64 = CAP as u64;

/// The cost of the queue operations alone, without any cross-core traffic:
/// one thread fills the queue with `CAP` messages, then empties it (and
/// checks FIFO). The difference between the ring and the mailbox here is what
/// the mailbox adds per send (closed checks, the wake-word fence and load).
fn same_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("same_thread_fill_drain_1024");
    group.throughput(Throughput::Elements(ROUND_TRIP));

    let (mut tx, mut rx) = ring::channel::<u64>(CAP);
    group.bench_function("ringloop_ring_single", |b| {
        b.iter(|| {
            for v in 0..ROUND_TRIP {
                tx.try_push(v).expect("room");
            }
            let mut expect = Expect::new();
            while let Some(v) = rx.pop() {
                expect.check(v);
            }
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });
    group.bench_function("ringloop_ring_batch64", |b| {
        b.iter(|| {
            for chunk in 0..ROUND_TRIP / BATCH as u64 {
                let mut batch = tx.batch();
                for v in chunk * BATCH as u64..(chunk + 1) * BATCH as u64 {
                    batch.try_push(v).expect("room");
                }
            }
            let mut expect = Expect::new();
            rx.drain(usize::MAX, |v| expect.check(v));
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });

    let mut mailbox =
        Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(CAP)).expect("mailbox");
    let mut sender = mailbox.sender();
    group.bench_function("ringloop_mailbox_single", |b| {
        b.iter(|| {
            for v in 0..ROUND_TRIP {
                sender.try_send(v).expect("room");
            }
            let mut expect = Expect::new();
            mailbox.drain(usize::MAX, |v| expect.check(v));
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });
    group.bench_function("ringloop_mailbox_batch64", |b| {
        b.iter(|| {
            for chunk in 0..ROUND_TRIP / BATCH as u64 {
                let mut batch = sender.batch();
                for v in chunk * BATCH as u64..(chunk + 1) * BATCH as u64 {
                    batch.try_send(v).expect("room");
                }
            }
            let mut expect = Expect::new();
            mailbox.drain(usize::MAX, |v| expect.check(v));
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });

    let (ctx, crx) = crossbeam_channel::bounded::<u64>(CAP);
    group.bench_function("crossbeam_bounded", |b| {
        b.iter(|| {
            for v in 0..ROUND_TRIP {
                ctx.try_send(v).expect("room");
            }
            let mut expect = Expect::new();
            while let Ok(v) = crx.try_recv() {
                expect.check(v);
            }
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });

    let (mut rtx, mut rrx) = ringbuf::HeapRb::<u64>::new(CAP).split();
    group.bench_function("ringbuf_single", |b| {
        b.iter(|| {
            for v in 0..ROUND_TRIP {
                rtx.try_push(v).expect("room");
            }
            let mut expect = Expect::new();
            while let Some(v) = rrx.try_pop() {
                expect.check(v);
            }
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });
    group.bench_function("ringbuf_slice64", |b| {
        b.iter(|| {
            let mut buf = [0u64; BATCH];
            for chunk in 0..ROUND_TRIP / BATCH as u64 {
                for (i, slot) in buf.iter_mut().enumerate() {
                    *slot = chunk * BATCH as u64 + i as u64;
                }
                assert_eq!(rtx.push_slice(&buf), BATCH, "room");
            }
            let mut expect = Expect::new();
            loop {
                let got = rrx.pop_slice(&mut buf);
                if got == 0 {
                    break;
                }
                for &v in &buf[..got] {
                    expect.check(v);
                }
            }
            assert_eq!(expect.next, ROUND_TRIP);
        })
    });
    group.finish();
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Same-window comparison: criterion measures one case after another, so on
/// a shared machine a burst of load can land on one case only. Here every
/// round runs every case once (rotating the order) and each case's ratio to
/// the baseline is taken within its round. A run during which the threads
/// were preempted for more than `CLEAN` of the time is retried (up to `TRIES`
/// times); rounds where the case or the baseline stayed disturbed are left out
/// of the ratios and counted.
fn interleaved(rounds: usize) {
    let base = CASES
        .iter()
        .position(|(name, _)| *name == BASELINE)
        .expect("baseline case");
    let verbose = std::env::var_os("RING_VERBOSE").is_some();
    // One discarded round warms caches, the allocator and the CPU clocks.
    for (_, run) in CASES {
        run(MSGS);
    }
    let mut rate: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let mut attempts = vec![0usize; CASES.len()];
    let mut dirty = vec![0usize; CASES.len()];
    for round in 0..rounds {
        let mut this: Vec<Option<f64>> = vec![None; CASES.len()];
        for k in 0..CASES.len() {
            let i = (k + round) % CASES.len();
            for _ in 0..TRIES {
                attempts[i] += 1;
                let run = CASES[i].1(MSGS);
                if verbose {
                    eprintln!(
                        "round {round} {:<30} {:>8.1} M/s  preempted {:>5.1}%",
                        CASES[i].0,
                        MSGS as f64 / run.elapsed.as_secs_f64() / 1e6,
                        run.disturbance().unwrap_or(f64::NAN) * 100.0
                    );
                }
                // Without schedstats every run counts as clean.
                if is_clean(&run) {
                    this[i] = Some(MSGS as f64 / run.elapsed.as_secs_f64());
                    break;
                }
            }
            if this[i].is_none() {
                dirty[i] += 1;
            }
        }
        for i in 0..CASES.len() {
            if let Some(r) = this[i] {
                rate[i].push(r);
                if let Some(b) = this[base] {
                    ratio[i].push(r / b);
                }
            }
        }
    }
    println!();
    println!(
        "Same-window comparison: {rounds} rounds x {MSGS} msgs per case, order rotated per round"
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>7} {:>13} {:>7} {:>9}",
        "case", "med M/s", "min M/s", "max M/s", "x base", "x base range", "rounds", "attempts"
    );
    for (i, (name, _)) in CASES.iter().enumerate() {
        if rate[i].is_empty() || ratio[i].is_empty() {
            println!("{name:<26} no clean run ({} attempts)", attempts[i]);
            continue;
        }
        let r = sorted(rate[i].clone());
        let q = sorted(ratio[i].clone());
        println!(
            "{:<30} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>13} {:>7} {:>9}",
            name,
            median(&r) / 1e6,
            r[0] / 1e6,
            r[r.len() - 1] / 1e6,
            median(&q),
            format!("{:.2}..{:.2}", q[0], q[q.len() - 1]),
            q.len(),
            attempts[i],
        );
    }
    println!(
        "x base: throughput / {BASELINE} in the same round, median over the rounds where both were clean \
         (threads preempted < {:.0}% of the run); {} case-rounds stayed disturbed after {TRIES} tries",
        CLEAN * 100.0,
        dirty.iter().sum::<usize>()
    );
}

criterion_group!(benches, spsc, same_thread);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let runs = RUNS.load(Ordering::Relaxed);
    if runs > 0 {
        println!(
            "spsc criterion samples: {runs} timed runs; {} retries because the threads were \
             preempted > {:.0}% of the run; {} runs kept although still preempted after {TRIES} tries",
            RETRIED.load(Ordering::Relaxed),
            CLEAN * 100.0,
            KEPT_DIRTY.load(Ordering::Relaxed),
        );
    }
    // Only under `cargo bench` (which passes --bench), not `cargo test --benches`.
    // RING_ROUNDS=0 skips the same-window table.
    let rounds = std::env::var("RING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    if rounds > 0 && std::env::args().any(|a| a == "--bench") {
        interleaved(rounds);
    }
}
