//! `harness bench`: every server, every scenario, alternated, one table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::hist::Histogram;
use crate::idle::{self, IdleReport};
use crate::load::{self, LoadConfig, LoadReport};
use crate::server::{Server, Stopped};
use crate::Result;

/// One load shape.
pub struct Scenario {
    /// Concurrent connections.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
}

/// The scenarios of every run.
pub const SCENARIOS: [Scenario; 3] = [
    Scenario {
        conns: 50,
        size: 512,
    },
    Scenario {
        conns: 1000,
        size: 512,
    },
    Scenario {
        conns: 100,
        size: 16 * 1024,
    },
];

impl Scenario {
    /// "50 conns × 512 B".
    pub fn label(&self) -> String {
        let size = if self.size % 1024 == 0 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        format!("{} conns × {size}", thousands(self.conns as f64))
    }
}

/// Settings of one `harness bench`.
pub struct BenchConfig {
    /// ringloop's echo binary, or `None` to compare the peers only.
    pub ringloop: Option<PathBuf>,
    /// How many times each server runs each scenario.
    pub rounds: usize,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Measured window of each run.
    pub duration: Duration,
    /// Load generator threads.
    pub load_threads: usize,
    /// Connections of the idle-memory test (0 skips it).
    pub idle_conns: usize,
}

/// Runs everything and prints the markdown report on stdout (progress on
/// stderr). Returns whether every run was clean.
pub fn run(cfg: &BenchConfig) -> Result<bool> {
    let harness = std::env::current_exe()?;
    let mut servers = Vec::new();
    if let Some(path) = &cfg.ringloop {
        servers.push(Server::ringloop(path.clone()));
    }
    servers.push(Server::tokio(harness.clone()));
    servers.push(Server::epoll(harness));
    let load_before = loadavg();
    let mut problems = Vec::new();

    // results[scenario][server]: one report per round.
    let mut results: Vec<Vec<Vec<LoadReport>>> = SCENARIOS
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        for round in 1..=cfg.rounds {
            for (k, server) in servers.iter().enumerate() {
                eprintln!(
                    "{} · round {round}/{} · {}",
                    scenario.label(),
                    cfg.rounds,
                    server.name
                );
                let running = server.start()?;
                let report = load::run(&LoadConfig {
                    addr: running.addr,
                    conns: scenario.conns,
                    size: scenario.size,
                    warmup: cfg.warmup,
                    duration: cfg.duration,
                    threads: cfg.load_threads,
                    server_pid: Some(running.pid()),
                    other_pids: Vec::new(),
                });
                stop(running, &mut problems)?;
                let report = report
                    .map_err(|e| format!("{} under {}: {e}", server.name, scenario.label()))?;
                eprintln!("    {}", report.summary());
                for e in &report.error_samples {
                    eprintln!("    error: {e}");
                }
                if report.errors > 0 || report.stalled > 0 {
                    problems.push(format!(
                        "{} under {}, round {round}: {} connection(s) lost, {} stalled; first errors: {:?}",
                        server.name,
                        scenario.label(),
                        report.errors,
                        report.stalled,
                        report.error_samples
                    ));
                }
                results[s][k].push(report);
            }
        }
    }

    let mut idle: Vec<Option<IdleReport>> = Vec::new();
    for server in &servers {
        if cfg.idle_conns == 0 {
            idle.push(None);
            continue;
        }
        eprintln!("idle memory · {}", server.name);
        let running = server.start()?;
        let report = idle::run(running.addr, cfg.idle_conns, running.pid());
        stop(running, &mut problems)?;
        let report = report.map_err(|e| format!("{} idle test: {e}", server.name))?;
        eprintln!("    {}", report.summary());
        idle.push(Some(report));
    }

    print!(
        "{}",
        render(cfg, &servers, &results, &idle, &load_before, &problems)
    );
    Ok(problems.is_empty())
}

/// Stops a server and notes how it ended if that was not clean.
pub fn stop(running: crate::server::Running, problems: &mut Vec<String>) -> Result<()> {
    let name = running.name;
    match running.stop()? {
        Stopped::Early(status) => {
            problems.push(format!("{name} exited by itself during the run: {status}"))
        }
        Stopped::Exited(status) if status.success() => {}
        Stopped::Exited(status) => problems.push(format!(
            "{name} did not exit cleanly when stopped: {status}"
        )),
        Stopped::Killed => problems.push(format!(
            "{name} was still running 5 s after SIGTERM and was killed"
        )),
    }
    Ok(())
}

/// One server under one scenario, all rounds together.
pub struct Summary {
    /// Round trips per second over all rounds.
    pub rate: f64,
    /// (max − min) / mean of the per-run rates; `None` with a single run.
    pub spread: Option<f64>,
    /// Median round trip, µs.
    pub p50_us: f64,
    /// 99th percentile round trip, µs.
    pub p99_us: f64,
    /// The measured server's CPU per message, µs.
    pub cpu_us: f64,
    /// Connections lost.
    pub lost: u64,
    /// Connections that completed no round trip in a window.
    pub stalled: usize,
}

/// Sums up the runs of one server under one scenario.
pub fn summarize(runs: &[LoadReport]) -> Summary {
    let messages: u64 = runs.iter().map(|r| r.messages).sum();
    let window: f64 = runs.iter().map(|r| r.window.as_secs_f64()).sum();
    let rates: Vec<f64> = runs.iter().map(LoadReport::rate).collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let mut latency = Histogram::default();
    for r in runs {
        latency.merge(&r.latency);
    }
    // Runs whose server died have no CPU figure; leave their messages out too.
    let (cpu, cpu_messages) = runs
        .iter()
        .filter_map(|r| Some((r.server_cpu?, r.messages)))
        .fold((Duration::ZERO, 0), |(c, m), (rc, rm)| (c + rc, m + rm));
    Summary {
        rate: messages as f64 / window,
        spread: (runs.len() > 1 && mean > 0.0).then(|| (hi - lo) / mean),
        p50_us: latency.quantile(0.50) as f64 / 1e3,
        p99_us: latency.quantile(0.99) as f64 / 1e3,
        cpu_us: cpu.as_secs_f64() * 1e6 / cpu_messages.max(1) as f64,
        lost: runs.iter().map(|r| r.errors).sum(),
        stalled: runs.iter().map(|r| r.stalled).sum(),
    }
}

fn render(
    cfg: &BenchConfig,
    servers: &[Server],
    results: &[Vec<Vec<LoadReport>>],
    idle: &[Option<IdleReport>],
    load_before: &str,
    problems: &[String],
) -> String {
    let names: Vec<&str> = servers.iter().map(|s| s.name).collect();
    let peers: Vec<usize> = ["tokio", "epoll"]
        .iter()
        .filter_map(|p| names.iter().position(|n| n == p))
        .collect();
    let ratio = |this: f64, peer: f64, same: bool| {
        if same {
            "—".to_string()
        } else if peer > 0.0 {
            format!("{:.2}", this / peer)
        } else {
            "n/a".to_string()
        }
    };

    let mut out = String::new();
    let _ = writeln!(out, "## Echo benchmark (loopback)\n");
    let _ = writeln!(
        out,
        "{} CPUs, Linux {}; load average {} before, {} after. Servers: {}. \
         {} round(s) per scenario, servers alternated ({}), each run {:.1} s warm-up + {:.1} s measured; \
         load generator: mio, {} thread(s), closed loop, every byte verified.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_before,
        loadavg(),
        servers_line(servers, cfg),
        cfg.rounds,
        names.join(" "),
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
        cfg.load_threads,
    );

    let _ = write!(
        out,
        "| scenario | server | msgs/s | spread | p50 µs | p99 µs | server CPU µs/msg |"
    );
    for &p in &peers {
        let _ = write!(out, " msgs/s ÷ {} |", names[p]);
    }
    for &p in &peers {
        let _ = write!(out, " CPU/msg ÷ {} |", names[p]);
    }
    let _ = writeln!(out, " lost/stalled |");
    let _ = writeln!(out, "|{}", "---|".repeat(8 + 2 * peers.len()));
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let sums: Vec<Summary> = results[s].iter().map(|runs| summarize(runs)).collect();
        for (k, sum) in sums.iter().enumerate() {
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.2} |",
                scenario.label(),
                names[k],
                thousands(sum.rate),
                sum.spread
                    .map_or("—".to_string(), |s| format!("{:.0} %", s * 100.0)),
                micros(sum.p50_us),
                micros(sum.p99_us),
                sum.cpu_us
            );
            for &p in &peers {
                let _ = write!(out, " {} |", ratio(sum.rate, sums[p].rate, p == k));
            }
            for &p in &peers {
                let _ = write!(out, " {} |", ratio(sum.cpu_us, sums[p].cpu_us, p == k));
            }
            let _ = writeln!(out, " {}/{} |", sum.lost, sum.stalled);
        }
    }
    let _ = writeln!(
        out,
        "\nmsgs/s: round trips per second over all rounds; spread: (max − min) / mean of the per-run rates (— with one round); \
         p50/p99: round-trip latency; server CPU: the server's utime + stime over the measured window \
         divided by messages. A msgs/s ratio above 1 and a CPU/msg ratio below 1 favour the row's server."
    );

    if idle.iter().any(Option::is_some) {
        let _ = writeln!(out);
        let _ = write!(
            out,
            "| server | idle conns | VmRSS before KiB | VmRSS after KiB | bytes per idle conn |"
        );
        for &p in &peers {
            let _ = write!(out, " ÷ {} |", names[p]);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "|{}", "---|".repeat(5 + peers.len()));
        for (k, report) in idle.iter().enumerate() {
            let Some(r) = report else { continue };
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} |",
                names[k],
                thousands(r.conns as f64),
                thousands((r.rss_before / 1024) as f64),
                thousands((r.rss_after / 1024) as f64),
                thousands(r.bytes_per_conn())
            );
            for &p in &peers {
                let peer = idle[p].as_ref().map_or(0.0, IdleReport::bytes_per_conn);
                let _ = write!(out, " {} |", ratio(r.bytes_per_conn(), peer, p == k));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "\nbytes per idle conn: growth of the server's VmRSS divided by connections, each confirmed by a \
             one-byte echo; kernel socket memory is not included."
        );
    }

    if !problems.is_empty() {
        let _ = writeln!(out, "\n**Problems:**\n");
        for p in problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    out
}

fn servers_line(servers: &[Server], cfg: &BenchConfig) -> String {
    let mut parts: Vec<String> = servers.iter().map(Server::describe).collect();
    if cfg.ringloop.is_none() {
        parts.push("ringloop skipped".to_string());
    }
    parts.join(", ")
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".to_string())
}

/// Microseconds: one decimal below 100, whole and grouped above.
pub fn micros(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        thousands(us)
    }
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-4096.0), "-4,096");
        assert_eq!(micros(42.25), "42.2");
        assert_eq!(micros(33292.3), "33,292");
    }

    #[test]
    fn labels() {
        assert_eq!(SCENARIOS[0].label(), "50 conns × 512 B");
        assert_eq!(SCENARIOS[1].label(), "1,000 conns × 512 B");
        assert_eq!(SCENARIOS[2].label(), "100 conns × 16 KiB");
    }
}
