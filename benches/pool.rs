//! Worker-pool throughput: `WorkerPool` (its own job queue, one lock over
//! jobs and shutdown state) against the crossbeam-channel pool it replaced,
//! rebuilt here as it was (a `RwLock<Option<Sender>>` read and a
//! `try_send` per submit; workers `recv` and check an `AtomicBool` cancel
//! flag per job), in the same run, alternated.
//!
//! One submitter thread (an event loop) submits `JOBS` boxed jobs with the
//! non-waiting `submit`; on `Full` it backs off as a loop would (yields and
//! retries). Each job adds one to a counter; the clock stops when the last
//! job has run. Every round runs each case once in rotated order; figures
//! are the median and range over the rounds of jobs/s and of the ratio to
//! the crossbeam pool in the same round.
//!
//! `cargo bench --bench pool` (knobs: `POOL_ROUNDS`, default 9; `POOL_JOBS`,
//! default 200000). Run `uptime` beside it: the machine's load moves both
//! cases alike, the ratio much less.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use ringloop::{PoolShutdown, WorkerPool};

type Job = Box<dyn FnOnce() + Send>;

/// The pool as it was before its own queue: crossbeam's bounded channel.
struct CrossbeamPool {
    jobs: RwLock<Option<crossbeam_channel::Sender<Job>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl CrossbeamPool {
    fn new(workers: usize, capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
        let cancelled = Arc::new(AtomicBool::new(false));
        let threads = (0..workers)
            .map(|_| {
                let (rx, cancelled) = (rx.clone(), cancelled.clone());
                thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        if cancelled.load(Ordering::Acquire) {
                            continue;
                        }
                        job();
                    }
                })
            })
            .collect();
        Self {
            jobs: RwLock::new(Some(tx)),
            threads,
        }
    }

    /// `Err(job)` when full.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let jobs = self.jobs.read().unwrap();
        match jobs.as_ref().unwrap().try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => Err(e.into_inner()),
        }
    }

    fn shutdown(mut self) {
        self.jobs.write().unwrap().take();
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    RingloopPool,
    CrossbeamPool,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::RingloopPool => "ringloop WorkerPool",
            Case::CrossbeamPool => "crossbeam pool (before)",
        }
    }
}

/// Seconds to run `jobs` jobs through `case` with `workers` workers.
fn run(case: Case, workers: usize, capacity: usize, jobs: usize) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let make = |done: &Arc<AtomicUsize>| -> Job {
        let done = done.clone();
        Box::new(move || {
            // Relaxed: a count, read after the pool is joined.
            done.fetch_add(1, Ordering::Relaxed);
        })
    };
    let mut full = 0usize;
    let start;
    match case {
        Case::RingloopPool => {
            let pool = WorkerPool::new(workers, capacity, PoolShutdown::Finish).unwrap();
            start = Instant::now();
            for _ in 0..jobs {
                let mut job = make(&done);
                loop {
                    match pool.submit(job) {
                        Ok(()) => break,
                        Err(e) => {
                            assert!(e.is_full());
                            full += 1;
                            job = e.into_job();
                            thread::yield_now();
                        }
                    }
                }
            }
            pool.shutdown();
        }
        Case::CrossbeamPool => {
            let pool = CrossbeamPool::new(workers, capacity);
            start = Instant::now();
            for _ in 0..jobs {
                let mut job = make(&done);
                while let Err(back) = pool.submit(job) {
                    full += 1;
                    job = back;
                    thread::yield_now();
                }
            }
            pool.shutdown();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done.load(Ordering::Relaxed), jobs, "a job was lost");
    std::hint::black_box(full);
    secs
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("POOL_ROUNDS", 9).max(1);
    let jobs = env("POOL_JOBS", 200_000);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "worker pool, {jobs} jobs per run from one submitter, {rounds} rounds, load {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<28} {:>8} {:>6} {:>24} {:>22}",
        "case", "workers", "queue", "M jobs/s med (min-max)", "x crossbeam med (min-max)"
    );
    let cases = [Case::RingloopPool, Case::CrossbeamPool];
    for (workers, capacity) in [(1, 1024), (2, 1024), (4, 64)] {
        let mut secs = vec![Vec::new(); cases.len()];
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let mut this = [0.0; 2];
            for k in 0..cases.len() {
                let i = (k + round) % cases.len(); // rotate the order
                this[i] = run(cases[i], workers, capacity, jobs);
                secs[i].push(this[i]);
            }
            // Throughput ratio: crossbeam's time over ours.
            ratios.push(this[1] / this[0]);
            thread::sleep(Duration::from_millis(20));
        }
        for (i, case) in cases.iter().enumerate() {
            let mut rates: Vec<f64> = secs[i].iter().map(|s| jobs as f64 / s / 1e6).collect();
            let (min, max) = (
                rates.iter().cloned().fold(f64::MAX, f64::min),
                rates.iter().cloned().fold(0.0, f64::max),
            );
            let med = median(&mut rates);
            let ratio = if *case == Case::RingloopPool {
                let (rmin, rmax) = (
                    ratios.iter().cloned().fold(f64::MAX, f64::min),
                    ratios.iter().cloned().fold(0.0, f64::max),
                );
                format!(
                    "{:.2} ({:.2}-{:.2})",
                    median(&mut ratios.clone()),
                    rmin,
                    rmax
                )
            } else {
                "1.00".to_string()
            };
            println!(
                "{:<28} {:>8} {:>6} {:>24} {:>22}",
                case.name(),
                workers,
                capacity,
                format!("{med:.2} ({min:.2}-{max:.2})"),
                ratio
            );
        }
    }
}
