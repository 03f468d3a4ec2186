//! The state of the machine around a measurement, so that a figure is
//! never read without the load it was measured under: waiting for an idle
//! machine before a benchmark starts (up to a bound; a machine that stays
//! busy is measured anyway and said so in the report), the load average
//! noted at the start of every run, and the median and range of repeated
//! figures.
//!
//! It never fails a benchmark and never measures anything itself. The
//! sampling and the idle rule are `benches/common/mod.rs`'s (compiled in
//! by path); `benches/lib.sh` applies the same thresholds:
//! `BENCH_IDLE_WAIT` (seconds, default 300; 0 measures at once),
//! `BENCH_IDLE_LOAD` (highest 1-minute load average counted as idle, default
//! a quarter of the CPU count), `BENCH_IDLE_SHARE` (lowest idle share of the
//! CPUs over a 1 s `/proc/stat` sample, default 0.90).

use std::sync::Mutex;
use std::time::{Duration, Instant};

// The Rust benches' machine-state module: one sampling and one idle rule
// for both workspaces.
#[path = "../../common/mod.rs"]
mod common;
use common::Load;

/// 1-minute load averages noted at the start of each run since the last
/// [`take_run_loads`].
static RUN_LOADS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The 1-minute load average as printed by the kernel, or `?`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".to_string())
}

/// Waits for an idle machine (at most `BENCH_IDLE_WAIT` seconds), says what
/// it found on stderr and returns one sentence for the report.
pub fn wait_for_idle(what: &str) -> String {
    let bound =
        env_f64("BENCH_IDLE_WAIT").map_or(Duration::from_secs(300), Duration::from_secs_f64);
    let start = Instant::now();
    let mut said: Option<Instant> = None;
    let line = loop {
        let Some(load) = Load::sample(Duration::from_secs(1)) else {
            break "machine state unknown (no /proc/loadavg or /proc/stat)".to_string();
        };
        let waited = start.elapsed().as_secs();
        let state = load.to_string();
        if load.is_idle() {
            break format!("idle machine ({state}; waited {waited} s)");
        }
        if start.elapsed() >= bound {
            break format!(
                "**MEASURED UNDER LOAD**: still busy after waiting {waited} s ({state}); \
                 these figures are not for the README"
            );
        }
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
            said = Some(Instant::now());
            eprintln!(
                "{what}: waiting for an idle machine ({state}; {waited} of {} s)",
                bound.as_secs()
            );
        }
    };
    eprintln!("{what}: {line}");
    line
}

/// Notes the 1-minute load average at the start of a run, and returns it.
pub fn note_run_load() -> Option<f64> {
    let load = common::loadavg1();
    if let Some(l) = load {
        RUN_LOADS.lock().unwrap_or_else(|e| e.into_inner()).push(l);
    }
    load
}

/// The range of the load averages noted since the last call, as a
/// sentence for a report header (empty if none were noted).
pub fn take_run_loads() -> String {
    let seen = std::mem::take(&mut *RUN_LOADS.lock().unwrap_or_else(|e| e.into_inner()));
    match median_range(&seen) {
        Some((med, lo, hi)) => format!(
            " 1-minute load average at the start of the {} runs: median {med:.1}, {lo:.1} to {hi:.1}.",
            seen.len()
        ),
        None => String::new(),
    }
}

/// `(median, min, max)` of `values` (NaNs left out), `None` if empty.
pub fn median_range(values: &[f64]) -> Option<(f64, f64, f64)> {
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
    Some((median, v[0], v[n - 1]))
}
