//! What every benchmark of this workspace (`benches/*.rs`) shares so that
//! its figures repeat: a check that the machine is idle before measuring
//! (waiting up to a bound, and saying so beside every figure when it is
//! not), pinning threads to chosen CPUs, and the median and range of
//! repeated runs.
//!
//! It measures nothing itself and never fails a benchmark: a machine that
//! stays busy is reported, not refused, because a loaded figure labelled as
//! such is still worth more than no figure. `benches/lib.sh` does the same
//! for the shell scripts and `benches/harness/src/machine.rs` for the
//! harness; the three agree on the thresholds below.
//!
//! Environment (all optional):
//! * `BENCH_IDLE_WAIT` — longest wait for an idle machine, seconds (default
//!   300; 0 measures at once, still reporting the load);
//! * `BENCH_IDLE_LOAD` — highest 1-minute load average that counts as idle
//!   (default: a quarter of the CPU count);
//! * `BENCH_IDLE_SHARE` — lowest share of CPU time idle over a 1 s sample
//!   of `/proc/stat` that counts as idle (default 0.90).

#![allow(dead_code)] // each bench uses its own part of this module

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// How long one `/proc/stat` sample lasts.
const SAMPLE: Duration = Duration::from_secs(1);
/// Default bound on the wait for an idle machine.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Default lowest idle share of the CPUs.
const DEFAULT_IDLE_SHARE: f64 = 0.90;

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// CPUs online on the machine (not only those this thread may run on: a
/// benchmark pins its threads, and the idle threshold is the machine's).
pub fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .map(|stat| {
            stat.lines()
                .filter(|l| {
                    l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                })
                .count()
        })
        .filter(|&n| n > 0)
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The 1-minute load average, if `/proc/loadavg` can be read.
pub fn loadavg1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `(idle, total)` jiffies of all CPUs, from the first line of `/proc/stat`
/// (idle counts idle and iowait).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    // guest time is already counted in user time (fields 9 and 10).
    let total = fields.iter().take(8).sum();
    Some((idle, total))
}

/// The state of the machine at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// 1-minute load average.
    pub load1: f64,
    /// Share of all CPUs' time spent idle over the sample (0 to 1).
    pub idle_share: f64,
}

impl Load {
    /// Samples the load average and the CPUs' idle share over `window`.
    pub fn sample(window: Duration) -> Option<Load> {
        let (idle0, total0) = cpu_jiffies()?;
        thread::sleep(window);
        let (idle1, total1) = cpu_jiffies()?;
        let total = total1.saturating_sub(total0).max(1);
        Some(Load {
            load1: loadavg1()?,
            idle_share: idle1.saturating_sub(idle0) as f64 / total as f64,
        })
    }

    /// Whether this counts as an idle machine.
    pub fn is_idle(&self) -> bool {
        let max_load = env_f64("BENCH_IDLE_LOAD").unwrap_or(cpus() as f64 / 4.0);
        let min_idle = env_f64("BENCH_IDLE_SHARE").unwrap_or(DEFAULT_IDLE_SHARE);
        self.load1 <= max_load && self.idle_share >= min_idle
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load {:.2}, CPUs {:.0}% idle",
            self.load1,
            self.idle_share * 100.0
        )
    }
}

/// What the idle check found before a benchmark measured.
#[derive(Clone, Copy, Debug)]
pub struct IdleCheck {
    /// The last sample taken.
    pub load: Option<Load>,
    /// How long the check waited for the machine to become idle.
    pub waited: Duration,
}

impl IdleCheck {
    /// Whether the figures that follow were measured on an idle machine.
    pub fn idle(&self) -> bool {
        self.load.is_some_and(|l| l.is_idle())
    }

    /// One line for a report header.
    pub fn line(&self) -> String {
        match self.load {
            None => "machine state not checked (not under `cargo bench`, or no /proc)".to_string(),
            Some(load) if load.is_idle() => {
                format!("idle machine ({load}; waited {} s)", self.waited.as_secs())
            }
            Some(load) => format!(
                "MEASURED UNDER LOAD: still busy after waiting {} s ({load}); \
                 these figures are not for the README",
                self.waited.as_secs()
            ),
        }
    }
}

/// Waits until the machine is idle (see the module doc), at most
/// `BENCH_IDLE_WAIT` seconds, and reports what it found on stderr.
pub fn wait_for_idle(what: &str) -> IdleCheck {
    let bound = env_f64("BENCH_IDLE_WAIT").map_or(DEFAULT_WAIT, Duration::from_secs_f64);
    let start = Instant::now();
    let mut said = Instant::now() - Duration::from_secs(60);
    loop {
        let load = Load::sample(SAMPLE);
        let check = IdleCheck {
            load,
            waited: start.elapsed(),
        };
        if load.is_none() || check.idle() || start.elapsed() >= bound {
            eprintln!("{what}: {}", check.line());
            return check;
        }
        if said.elapsed() >= Duration::from_secs(15) {
            said = Instant::now();
            eprintln!(
                "{what}: waiting for an idle machine ({}; {} of {} s)",
                load.expect("checked above"),
                start.elapsed().as_secs(),
                bound.as_secs()
            );
        }
    }
}

/// Under `cargo bench`, [`wait_for_idle`]; under `cargo test --benches`
/// (one quick pass of every case) no wait and no check.
pub fn idle_check(what: &str) -> IdleCheck {
    if is_bench() {
        wait_for_idle(what)
    } else {
        IdleCheck {
            load: None,
            waited: Duration::ZERO,
        }
    }
}

/// Pins the calling thread to `cpu`; `false` if that failed (the thread
/// then runs wherever the scheduler puts it).
pub fn pin(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// Where a benchmark's two sides run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Producer on CPU 1, consumer on CPU 0: a worker thread writing to an
    /// event loop on another core (every message crosses a cache line
    /// between cores).
    CrossCpu,
    /// Both on CPU 0: they take turns on one core (a loop writing to
    /// itself, or a machine with fewer cores than threads).
    SameCpu,
}

impl Placement {
    /// The placements this machine can run, cross-CPU first; narrowed by
    /// the environment variable `var` (`cross`, `same` or `both`).
    pub fn chosen(var: &str) -> Vec<Placement> {
        let want = std::env::var(var).unwrap_or_default();
        let mut all = Vec::new();
        if cpus() >= 2 && want != "same" {
            all.push(Placement::CrossCpu);
        }
        if want != "cross" {
            all.push(Placement::SameCpu);
        }
        all
    }

    /// The producer's CPU.
    pub fn producer_cpu(self) -> usize {
        match self {
            Placement::CrossCpu => 1,
            Placement::SameCpu => 0,
        }
    }

    /// The consumer's CPU.
    pub fn consumer_cpu(self) -> usize {
        0
    }

    /// Short name for report rows and criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            Placement::CrossCpu => "cross_cpu",
            Placement::SameCpu => "same_cpu",
        }
    }

    /// A sentence for a table header.
    pub fn describe(self) -> &'static str {
        match self {
            Placement::CrossCpu => "cross-CPU: producer pinned to CPU 1, consumer to CPU 0",
            Placement::SameCpu => "same-CPU: producer and consumer both pinned to CPU 0",
        }
    }

    /// Share of a run of `elapsed` during which *other work* held the CPUs
    /// from threads that together `waited` runnable. On one CPU two busy
    /// threads take turns, so up to one run's length of waiting is each
    /// waiting for the other; only the excess is other work.
    pub fn disturbance(self, waited: Duration, elapsed: Duration) -> f64 {
        let elapsed = elapsed.as_secs_f64().max(1e-9);
        let waited = waited.as_secs_f64();
        match self {
            Placement::CrossCpu => waited / elapsed,
            Placement::SameCpu => (waited - elapsed).max(0.0) / elapsed,
        }
    }
}

/// Nanoseconds this thread has been runnable but not running, from the
/// second field of `/proc/thread-self/schedstat` (Linux with schedstats).
pub fn runqueue_wait_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().nth(1)?.parse().ok()
}

/// The median and range of repeated measurements of one figure.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// `None` for no values; NaNs are left out.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `median (min–max)` with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// Smallest number of repetitions a reported median may rest on.
pub const MIN_RUNS: usize = 3;

/// `requested`, raised to [`MIN_RUNS`] when measuring for real (`bench`),
/// with a note on stderr when it was raised.
pub fn at_least_min_runs(requested: usize, bench: bool, what: &str) -> usize {
    if bench && requested > 0 && requested < MIN_RUNS {
        eprintln!("{what}: {requested} rounds raised to {MIN_RUNS}, the fewest a median and range rest on");
        MIN_RUNS
    } else {
        requested
    }
}

/// `true` when run by `cargo bench` (which passes `--bench`), not by
/// `cargo test --benches`.
pub fn is_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The 1-minute load averages seen during a table, as `min–max`.
#[derive(Default)]
pub struct LoadTrack {
    seen: Vec<f64>,
}

impl LoadTrack {
    /// Notes the current 1-minute load average.
    pub fn note(&mut self) {
        if let Some(l) = loadavg1() {
            self.seen.push(l);
        }
    }

    /// `min–max` of what was noted, or `?`.
    pub fn show(&self) -> String {
        match Spread::of(&self.seen) {
            Some(s) if s.min == s.max => format!("{:.1}", s.min),
            Some(s) => format!("{:.1}–{:.1}", s.min, s.max),
            None => "?".to_string(),
        }
    }
}
