//! `harness bench`: every server, every scenario, alternated, one table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench_servers::pin_to;
use crate::hist::Histogram;
use crate::idle::{self, IdleReport};
use crate::load::{self, Client, LoadConfig, LoadReport};
use crate::machine::{loadavg, note_run_load, take_run_loads};
use crate::server::{Server, Stopped};
use crate::Result;

/// One load shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Concurrent connections.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
}

/// The default scenarios.
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
    /// Parses `CONNSxSIZE`, for example `1000x512`.
    pub fn parse(text: &str) -> Result<Scenario> {
        let (conns, size) = text
            .split_once('x')
            .ok_or_else(|| format!("scenario {text:?}: expected CONNSxSIZE, e.g. 50x512"))?;
        let conns: usize = conns
            .trim()
            .parse()
            .map_err(|e| format!("scenario {text:?}: {e}"))?;
        let size: usize = size
            .trim()
            .parse()
            .map_err(|e| format!("scenario {text:?}: {e}"))?;
        if conns == 0 || size == 0 {
            return Err(
                format!("scenario {text:?}: connections and size must be above zero").into(),
            );
        }
        Ok(Scenario { conns, size })
    }

    /// "… conns × …", or "… UDP sockets × …" for UDP.
    pub fn label_for(&self, udp: bool) -> String {
        let size = if self.size % 1024 == 0 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        format!(
            "{} {} × {size}",
            thousands(self.conns as f64),
            if udp { "UDP sockets" } else { "conns" }
        )
    }
}

/// Settings of one `harness bench`.
pub struct BenchConfig {
    /// Heading of the report.
    pub title: String,
    /// The servers compared, in the order of the first round.
    pub servers: Vec<Server>,
    /// Servers whose figures the others are divided by (one column each).
    pub peers: Vec<String>,
    /// The load shapes.
    pub scenarios: Vec<Scenario>,
    /// Whether ringloop was left out on purpose (said in the header).
    pub ringloop_skipped: bool,
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
    /// Run the idle-memory test only, no load scenario.
    pub idle_only: bool,
    /// The TCP load generator's I/O.
    pub client: Client,
    /// Every server on CPU 0, the load on CPU 1 (`--pin`).
    pub pin: bool,
}

/// Runs everything and prints the markdown report on stdout (progress on
/// stderr). Returns whether every run was clean.
pub fn run(cfg: &BenchConfig) -> Result<bool> {
    let servers = &cfg.servers;
    let load_before = loadavg();
    let mut problems = Vec::new();
    let udp = servers.iter().any(|s| s.udp);
    if servers.iter().any(|s| s.udp != udp) {
        return Err("one bench compares TCP servers or UDP servers, not both".into());
    }

    // results[scenario][server]: one report per round.
    let mut results: Vec<Vec<Vec<LoadReport>>> = cfg
        .scenarios
        .iter()
        .map(|_| servers.iter().map(|_| Vec::new()).collect())
        .collect();
    let scenarios = if cfg.idle_only {
        0
    } else {
        cfg.scenarios.len()
    };
    for (s, scenario) in cfg.scenarios.iter().enumerate().take(scenarios) {
        for round in 1..=cfg.rounds {
            // Round r starts with server r - 1 (mod n): over n rounds every
            // server takes every position once, which cancels position bias
            // (a warm cache, a neighbour's job starting) to first order.
            for k in rotation(servers.len(), round - 1) {
                let server = &servers[k];
                eprintln!(
                    "{} · round {round}/{} · {}",
                    scenario.label_for(udp),
                    cfg.rounds,
                    server.name
                );
                let load_at_start = note_run_load();
                if cfg.pin {
                    // The server inherits CPU 0 from the harness, the load
                    // threads (started after it) CPU 1.
                    pin_to(Some(0))?;
                }
                let running = server.start()?;
                if cfg.pin {
                    pin_to(Some(1))?;
                }
                let report = load::run(&LoadConfig {
                    addr: running.addr,
                    udp,
                    conns: scenario.conns,
                    size: scenario.size,
                    warmup: cfg.warmup,
                    duration: cfg.duration,
                    threads: cfg.load_threads,
                    server_pid: Some(running.pid()),
                    other_pids: Vec::new(),
                    client: cfg.client,
                });
                stop(running, &mut problems)?;
                let mut report = report.map_err(|e| {
                    format!("{} under {}: {e}", server.name, scenario.label_for(udp))
                })?;
                report.load_at_start = load_at_start;
                eprintln!("    {}", report.summary());
                for e in &report.error_samples {
                    eprintln!("    error: {e}");
                }
                if report.errors > 0 || report.stalled > 0 {
                    problems.push(format!(
                        "{} under {}, round {round}: {} connection(s) lost, {} stalled; first errors: {:?}",
                        server.name,
                        scenario.label_for(udp),
                        report.errors,
                        report.stalled,
                        report.error_samples
                    ));
                }
                results[s][k].push(report);
            }
        }
    }

    if cfg.pin {
        pin_to(None)?;
    }

    let mut idle: Vec<Option<IdleReport>> = Vec::new();
    for server in servers {
        if cfg.idle_conns == 0 || server.udp {
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
        render(cfg, &results, &idle, &load_before, &problems, udp)
    );
    Ok(problems.is_empty())
}

/// The order of servers in round `round` (0-based) of `n` servers.
pub fn rotation(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + round) % n.max(1))
}

/// Stops a server and notes how it ended if that was not clean.
pub fn stop(running: crate::server::Running, problems: &mut Vec<String>) -> Result<()> {
    let name = running.name.clone();
    let signal = running.stop_signal();
    match running.stop()? {
        Stopped::Early(status) => {
            problems.push(format!("{name} exited by itself during the run: {status}"))
        }
        Stopped::Exited(status) if status.success() => {}
        Stopped::Exited(status) => {
            problems.push(format!("{name} did not exit cleanly on {signal}: {status}"))
        }
        Stopped::Killed => problems.push(format!(
            "{name} was still running 5 s after {signal} and was killed"
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
    /// The server's CPU time as a share of the window (1.0: one core).
    pub server_share: f64,
    /// The load generator's CPU per message, µs.
    pub client_us: f64,
    /// The load generator's CPU time as a share of the window.
    pub client_share: f64,
    /// Median, lowest and highest 1-minute load average at the start of the
    /// runs.
    pub load: Option<(f64, f64, f64)>,
    /// Connections lost.
    pub lost: u64,
    /// Connections that completed no round trip in a window.
    pub stalled: usize,
    /// UDP only: datagrams that got no reply in time.
    pub datagrams_lost: u64,
}

/// Sums up the runs of one server under one scenario.
pub fn summarize(runs: &[LoadReport]) -> Summary {
    let messages: u64 = runs.iter().map(|r| r.messages).sum();
    let window: f64 = runs.iter().map(|r| r.window.as_secs_f64()).sum();
    let rates: Vec<f64> = runs.iter().map(LoadReport::rate).collect();
    let mut latency = Histogram::default();
    for r in runs {
        latency.merge(&r.latency);
    }
    let client_cpu = runs
        .iter()
        .map(|r| r.client_cpu)
        .sum::<Duration>()
        .as_secs_f64();
    Summary {
        rate: messages as f64 / window,
        spread: spread(&rates),
        p50_us: latency.quantile(0.50) as f64 / 1e3,
        p99_us: latency.quantile(0.99) as f64 / 1e3,
        cpu_us: cpu_per_message(runs),
        server_share: runs
            .iter()
            .filter_map(|r| r.server_cpu)
            .sum::<Duration>()
            .as_secs_f64()
            / window.max(1e-9),
        client_us: client_cpu * 1e6 / messages.max(1) as f64,
        client_share: client_cpu / window.max(1e-9),
        load: crate::machine::median_range(
            &runs
                .iter()
                .filter_map(|r| r.load_at_start)
                .collect::<Vec<_>>(),
        ),
        lost: runs.iter().map(|r| r.errors).sum(),
        stalled: runs.iter().map(|r| r.stalled).sum(),
        datagrams_lost: runs.iter().map(|r| r.datagrams_lost).sum(),
    }
}

/// Server CPU µs per message over `runs`; runs whose server died have no CPU
/// figure, and their messages are left out too.
fn cpu_per_message(runs: &[LoadReport]) -> f64 {
    let (cpu, messages) = runs
        .iter()
        .filter_map(|r| Some((r.server_cpu?, r.messages)))
        .fold((Duration::ZERO, 0), |(c, m), (rc, rm)| (c + rc, m + rm));
    cpu.as_secs_f64() * 1e6 / messages.max(1) as f64
}

/// (max − min) / mean, or `None` for fewer than two values.
pub fn spread(values: &[f64]) -> Option<f64> {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    (values.len() > 1 && mean > 0.0).then(|| (hi - lo) / mean)
}

/// `this ÷ peer`: the median of the per-round ratios with their range in
/// brackets (each round's pair ran back to back, so the range is the noise
/// of the ratio itself); with fewer than two rounds, the ratio over all
/// rounds.
pub fn ratio_cell(total: f64, total_peer: f64, per_round: &[f64]) -> String {
    if total_peer <= 0.0 {
        return "n/a".to_string();
    }
    let finite: Vec<f64> = per_round
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    match crate::machine::median_range(&finite) {
        Some((med, lo, hi)) if finite.len() >= 2 => format!("{med:.2} ({lo:.2}–{hi:.2})"),
        _ => format!("{:.2}", total / total_peer),
    }
}

fn render(
    cfg: &BenchConfig,
    results: &[Vec<Vec<LoadReport>>],
    idle: &[Option<IdleReport>],
    load_before: &str,
    problems: &[String],
    udp: bool,
) -> String {
    let servers = &cfg.servers;
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let peers: Vec<usize> = cfg
        .peers
        .iter()
        .filter_map(|p| names.iter().position(|n| n == p))
        .collect();

    let mut out = String::new();
    let _ = writeln!(out, "### {}\n", cfg.title);
    let machine = format!(
        "{} CPUs, Linux {}; load average {} before, {} after.{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_before,
        loadavg(),
        take_run_loads(),
    );
    if cfg.idle_only {
        let _ = writeln!(
            out,
            "{machine} Idle-connection memory only, no load scenario.\n"
        );
    } else {
        let order: Vec<String> = (0..cfg.rounds.min(servers.len()))
            .map(|r| {
                rotation(servers.len(), r)
                    .map(|k| names[k])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let _ =
            writeln!(
            out,
            "{machine} {} round(s) per scenario, servers alternated and rotated per round ({}{}), \
             each run {:.1} s warm-up + {:.1} s measured; load generator: {}, {} thread(s), \
             closed loop, {}, every byte verified; {}.\n",
            cfg.rounds,
            order.join(" / "),
            if cfg.rounds > servers.len() { " / …" } else { "" },
            cfg.warmup.as_secs_f64(),
            cfg.duration.as_secs_f64(),
            if udp { "mio" } else { cfg.client.name() },
            cfg.load_threads,
            if udp {
                "one datagram in flight per UDP socket"
            } else {
                "one message in flight per connection"
            },
            if cfg.pin {
                "--pin: every server on CPU 0, the load on CPU 1"
            } else {
                "not pinned: server and load share the CPUs"
            }
        );
    }
    for s in servers {
        let _ = writeln!(out, "- {}", s.describe());
    }
    if cfg.ringloop_skipped {
        let _ = writeln!(out, "- ringloop skipped");
    }
    let _ = writeln!(out);

    if !cfg.idle_only {
        render_load(&mut out, cfg, results, &names, &peers, udp);
    }

    if idle.iter().any(Option::is_some) {
        if !cfg.idle_only {
            let _ = writeln!(out);
        }
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
                let cell = match (&idle[p], p == k) {
                    (_, true) => "—".to_string(),
                    (Some(peer), false) if peer.bytes_per_conn() > 0.0 => {
                        format!("{:.2}", r.bytes_per_conn() / peer.bytes_per_conn())
                    }
                    _ => "n/a".to_string(),
                };
                let _ = write!(out, " {cell} |");
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

/// The table of the load scenarios and its legend.
fn render_load(
    out: &mut String,
    cfg: &BenchConfig,
    results: &[Vec<Vec<LoadReport>>],
    names: &[&str],
    peers: &[usize],
    udp: bool,
) {
    let _ = write!(
        out,
        "| scenario | server | msgs/s | spread | p50 µs | p99 µs | server CPU µs/msg | server % of a core | client CPU µs/msg | client % of a core | load 1m |"
    );
    for &p in peers {
        let _ = write!(out, " msgs/s ÷ {} |", names[p]);
    }
    for &p in peers {
        let _ = write!(out, " CPU/msg ÷ {} |", names[p]);
    }
    let _ = writeln!(
        out,
        " {} |",
        if udp {
            "dead sockets/stalled | datagrams lost"
        } else {
            "lost/stalled"
        }
    );
    let columns = 12 + 2 * peers.len() + usize::from(udp);
    let _ = writeln!(out, "|{}", "---|".repeat(columns));
    for (s, scenario) in cfg.scenarios.iter().enumerate() {
        let sums: Vec<Summary> = results[s].iter().map(|runs| summarize(runs)).collect();
        for (k, sum) in sums.iter().enumerate() {
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} |",
                scenario.label_for(udp),
                names[k],
                thousands(sum.rate),
                sum.spread
                    .map_or("—".to_string(), |s| format!("{:.0} %", s * 100.0)),
                micros(sum.p50_us),
                micros(sum.p99_us),
                sum.cpu_us,
                sum.server_share * 100.0,
                sum.client_us,
                sum.client_share * 100.0,
                sum.load
                    .map_or("?".to_string(), |(med, lo, hi)| if lo == hi {
                        format!("{med:.2}")
                    } else {
                        format!("{med:.2} ({lo:.2}–{hi:.2})")
                    })
            );
            let runs = &results[s][k];
            for &p in peers {
                let cell = if p == k {
                    "—".to_string()
                } else {
                    let per_round: Vec<f64> = runs
                        .iter()
                        .zip(&results[s][p])
                        .map(|(a, b)| a.rate() / b.rate())
                        .collect();
                    ratio_cell(sum.rate, sums[p].rate, &per_round)
                };
                let _ = write!(out, " {cell} |");
            }
            for &p in peers {
                let cell = if p == k {
                    "—".to_string()
                } else {
                    let per_round: Vec<f64> = runs
                        .iter()
                        .zip(&results[s][p])
                        .map(|(a, b)| {
                            cpu_per_message(std::slice::from_ref(a))
                                / cpu_per_message(std::slice::from_ref(b))
                        })
                        .collect();
                    ratio_cell(sum.cpu_us, sums[p].cpu_us, &per_round)
                };
                let _ = write!(out, " {cell} |");
            }
            if udp {
                let total: u64 = runs.iter().map(|r| r.messages + r.datagrams_lost).sum();
                let _ = writeln!(
                    out,
                    " {}/{} | {} ({:.2} %) |",
                    sum.lost,
                    sum.stalled,
                    thousands(sum.datagrams_lost as f64),
                    100.0 * sum.datagrams_lost as f64 / total.max(1) as f64
                );
            } else {
                let _ = writeln!(out, " {}/{} |", sum.lost, sum.stalled);
            }
        }
    }
    render_split(out, cfg, results, names);
    let _ = writeln!(
        out,
        "\nmsgs/s: round trips per second over all rounds; spread: (max − min) / mean of the per-run rates \
         (— with one round); ratios: median of the per-round ratios, with their range in brackets \
         (each round runs the servers back to back); p50/p99: round-trip latency; server CPU: the \
         server's utime + stime over the measured window divided by messages (the load generator's \
         the same from its own /proc entry; % of a core: that CPU time over the window); load 1m: the \
         1-minute load average at the start of the runs, median (range). A msgs/s ratio above 1 \
         and a CPU/msg ratio below 1 favour the row's server.{}",
        if udp {
            " Datagrams lost: sent in the window and not answered within 200 ms (the next one is then \
             sent), as a share of datagrams sent."
        } else {
            ""
        }
    );
}

/// The servers' CPU per message split into user and kernel time (utime and
/// stime of `/proc/PID/stat`), median and range over the rounds, after the
/// main table. Nothing when no run measured it.
fn render_split(
    out: &mut String,
    cfg: &BenchConfig,
    results: &[Vec<Vec<LoadReport>>],
    names: &[&str],
) {
    let per_run = |r: &LoadReport| -> Option<(f64, f64)> {
        let (cpu, user) = (r.server_cpu?, r.server_user?);
        Some((
            r.per_message_us(user),
            r.per_message_us(cpu.saturating_sub(user)),
        ))
    };
    if !results
        .iter()
        .flatten()
        .flatten()
        .any(|r| per_run(r).is_some())
    {
        return;
    }
    let cell = |values: Vec<f64>| match crate::machine::median_range(&values) {
        Some((med, lo, hi)) if values.len() >= 2 => format!("{med:.2} ({lo:.2}–{hi:.2})"),
        Some((med, _, _)) => format!("{med:.2}"),
        None => "?".to_string(),
    };
    let _ = writeln!(
        out,
        "\n| scenario | server | server user µs/msg | server kernel µs/msg | server CPU µs/msg |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (s, scenario) in cfg.scenarios.iter().enumerate() {
        for (k, runs) in results[s].iter().enumerate() {
            let split: Vec<(f64, f64)> = runs.iter().filter_map(per_run).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                scenario.label_for(false),
                names[k],
                cell(split.iter().map(|p| p.0).collect()),
                cell(split.iter().map(|p| p.1).collect()),
                cell(split.iter().map(|p| p.0 + p.1).collect()),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nuser / kernel: the server's utime / stime over the measured window per message, median \
         (range) over the rounds (clock-tick resolution)."
    );
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
        assert_eq!(SCENARIOS[0].label_for(false), "50 conns × 512 B");
        assert_eq!(SCENARIOS[1].label_for(false), "1,000 conns × 512 B");
        assert_eq!(SCENARIOS[2].label_for(false), "100 conns × 16 KiB");
        assert_eq!(SCENARIOS[0].label_for(true), "50 UDP sockets × 512 B");
        assert_eq!(
            Scenario::parse("200x64").unwrap(),
            Scenario {
                conns: 200,
                size: 64
            }
        );
        assert!(Scenario::parse("200").is_err());
        assert!(Scenario::parse("0x64").is_err());
        let order: Vec<Vec<usize>> = (0..3).map(|r| rotation(3, r).collect()).collect();
        assert_eq!(order, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]);
        assert_eq!(spread(&[1.0]), None);
        assert_eq!(spread(&[1.0, 3.0]), Some(1.0));
        assert_eq!(ratio_cell(2.0, 1.0, &[1.5, 2.5]), "2.00 (1.50–2.50)");
        assert_eq!(ratio_cell(2.0, 1.0, &[1.0, 3.0, 1.2]), "1.20 (1.00–3.00)");
        assert_eq!(ratio_cell(2.0, 1.0, &[1.7]), "2.00");
    }
}
