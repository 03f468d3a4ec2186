//! `harness proxy-bench`: ringloop's proxy example against HAProxy (`mode
//! tcp`), each in front of the same kind of echo backend, under the same
//! verified load, alternated, with ratios taken within the run.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::bench::{micros, stop, summarize, thousands, Scenario};
use crate::load::{self, LoadConfig, LoadReport};
use crate::machine::{loadavg, note_run_load, take_run_loads};
use crate::server::{Kind, Server};
use crate::Result;

/// The load shapes: small messages, and 16 KiB messages.
pub const SCENARIOS: [Scenario; 2] = [
    Scenario {
        conns: 50,
        size: 512,
    },
    Scenario {
        conns: 100,
        size: 16 * 1024,
    },
];

/// Settings of one `harness proxy-bench`.
pub struct ProxyBenchConfig {
    /// ringloop's `examples/proxy` binary.
    pub ringloop: PathBuf,
    /// The `haproxy` binary, or `None` to run ringloop alone.
    pub haproxy: Option<PathBuf>,
    /// Loops (ringloop) and threads (HAProxy) to compare, each against the same count.
    pub threads: Vec<usize>,
    /// Also load the backend directly, as a reference.
    pub direct: bool,
    /// A/A calibration: a second HAProxy takes ringloop's place, so the
    /// ratios show the noise of the machine.
    pub calibrate: bool,
    /// How many times each contender runs each scenario.
    pub rounds: usize,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Measured window of each run.
    pub duration: Duration,
    /// Load generator threads.
    pub load_threads: usize,
}

/// One thing the load goes through.
#[derive(Clone, Copy, PartialEq)]
enum Contender {
    /// The backend alone, no proxy.
    Direct,
    Ringloop(usize),
    Haproxy(usize),
    /// HAProxy again, in ringloop's place (A/A calibration).
    HaproxyAgain(usize),
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Direct => "direct (no proxy)".to_string(),
            Contender::Ringloop(n) => format!("ringloop ×{n}"),
            Contender::Haproxy(n) => format!("HAProxy ×{n}"),
            Contender::HaproxyAgain(n) => format!("HAProxy (A/A) ×{n}"),
        }
    }

    /// The proxy in front of `backend`, or `None` for the backend alone.
    fn proxy(self, cfg: &ProxyBenchConfig, backend: SocketAddr) -> Option<Server> {
        let server = match self {
            Contender::Direct => return None,
            // examples/proxy --listen URL --backend URL --loops N
            Contender::Ringloop(n) => Server::new(
                self.name(),
                Kind::command(
                    &cfg.ringloop,
                    &[
                        "--listen",
                        "{url}",
                        "--backend",
                        &format!("tcp://{backend}"),
                        "--loops",
                        &n.to_string(),
                    ],
                ),
                false,
            ),
            // haproxy -db -f FILE: foreground, one process, no master; the
            // file is written for the port it gets. SIGUSR1 is its soft stop
            // (stop listening, exit 0 once the connections are gone);
            // SIGTERM makes it die by the signal.
            Contender::Haproxy(n) | Contender::HaproxyAgain(n) => Server::new(
                self.name(),
                Kind::command(
                    cfg.haproxy.as_ref().expect("only listed with a path"),
                    &["-db", "-f", "{config}"],
                ),
                false,
            )
            .with_config_file(haproxy_config(n, backend))
            .with_stop_signal(Signal::SIGUSR1),
        };
        Some(server)
    }

    /// The HAProxy run this one is compared with.
    fn peer(self) -> Option<Contender> {
        match self {
            Contender::Ringloop(n) | Contender::HaproxyAgain(n) => Some(Contender::Haproxy(n)),
            _ => None,
        }
    }
}

/// Runs everything and prints the markdown report on stdout (progress on
/// stderr). Returns whether every run was clean.
pub fn run(cfg: &ProxyBenchConfig) -> Result<bool> {
    let harness = std::env::current_exe()?;
    let mut contenders = Vec::new();
    if cfg.direct {
        contenders.push(Contender::Direct);
    }
    for &n in &cfg.threads {
        // Alternated: ringloop ×1, HAProxy ×1, ringloop ×2, HAProxy ×2, ...
        contenders.push(if cfg.calibrate {
            Contender::HaproxyAgain(n)
        } else {
            Contender::Ringloop(n)
        });
        if cfg.haproxy.is_some() {
            contenders.push(Contender::Haproxy(n));
        }
    }
    let load_before = loadavg();
    let mut problems = Vec::new();
    // results[scenario][contender]: one report per round.
    let mut results: Vec<Vec<Vec<LoadReport>>> = SCENARIOS
        .iter()
        .map(|_| contenders.iter().map(|_| Vec::new()).collect())
        .collect();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        for round in 1..=cfg.rounds {
            for (k, &contender) in contenders.iter().enumerate() {
                let name = contender.name();
                let label = scenario.label_for(false);
                eprintln!("{label} · round {round}/{} · {name}", cfg.rounds);
                note_run_load();
                // A fresh backend and proxy for every run.
                let backend = Server::new(
                    "backend",
                    Kind::Epoll {
                        harness: harness.clone(),
                    },
                    false,
                )
                .start()?;
                let proxy = match contender.proxy(cfg, backend.addr) {
                    Some(server) => Some(server.start()?),
                    None => None,
                };
                let (addr, pid, others) = match &proxy {
                    Some(p) => (p.addr, p.pid(), vec![backend.pid()]),
                    None => (backend.addr, backend.pid(), Vec::new()),
                };
                let report = load::run(&LoadConfig {
                    addr,
                    udp: false,
                    conns: scenario.conns,
                    size: scenario.size,
                    warmup: cfg.warmup,
                    duration: cfg.duration,
                    threads: cfg.load_threads,
                    server_pid: Some(pid),
                    other_pids: others,
                    client: load::Client::Mio,
                });
                if let Some(p) = proxy {
                    stop(p, &mut problems)?;
                }
                stop(backend, &mut problems)?;
                let report = report.map_err(|e| format!("{name} under {label}: {e}"))?;
                eprintln!(
                    "    {}{}",
                    report.summary(),
                    backend_cpu_us(&report)
                        .map_or(String::new(), |b| format!(", backend CPU {b:.2} µs/msg"))
                );
                for e in &report.error_samples {
                    eprintln!("    error: {e}");
                }
                if report.errors > 0 || report.stalled > 0 {
                    problems.push(format!(
                        "{name} under {label}, round {round}: {} connection(s) lost, {} stalled; first errors: {:?}",
                        report.errors,
                        report.stalled,
                        report.error_samples
                    ));
                }
                results[s][k].push(report);
            }
        }
    }
    print!(
        "{}",
        render(cfg, &contenders, &results, &load_before, &problems)
    );
    Ok(problems.is_empty())
}

/// The backend's CPU per message in a run through a proxy.
fn backend_cpu_us(report: &LoadReport) -> Option<f64> {
    let cpu = (*report.other_cpu.first()?)?;
    Some(report.per_message_us(cpu))
}

/// Backend CPU per message over all rounds.
fn backend_cpu_all(runs: &[LoadReport]) -> Option<f64> {
    let (cpu, messages) = runs
        .iter()
        .map(|r| Some(((*r.other_cpu.first()?)?, r.messages)))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .fold((Duration::ZERO, 0), |(c, m), (rc, rm)| (c + rc, m + rm));
    Some(cpu.as_secs_f64() * 1e6 / messages.max(1) as f64)
}

fn render(
    cfg: &ProxyBenchConfig,
    contenders: &[Contender],
    results: &[Vec<Vec<LoadReport>>],
    load_before: &str,
    problems: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Proxy benchmark (loopback)\n");
    let names: Vec<String> = contenders.iter().map(|c| c.name()).collect();
    let _ = writeln!(
        out,
        "{} CPUs, Linux {}; load average {} before, {} after.{} Proxies: {}{}. Backend: `harness serve epoll` (a fresh one per run). \
         {} round(s) per scenario, alternated ({}), each run {:.1} s warm-up + {:.1} s measured; \
         load generator: mio, {} thread(s), closed loop, every byte verified.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_before,
        loadavg(),
        take_run_loads(),
        if cfg.calibrate {
            "none of ringloop (A/A calibration: HAProxy against itself)".to_string()
        } else {
            format!("ringloop `{}` (`--loops N`)", cfg.ringloop.display())
        },
        match &cfg.haproxy {
            Some(p) => format!(
                ", HAProxy `{}` (`mode tcp`, `nbthread N`, default tuning){}",
                p.display(),
                haproxy_version(p).map_or(String::new(), |v| format!(", {v}"))
            ),
            None => ", HAProxy skipped".to_string(),
        },
        cfg.rounds,
        names.join(", "),
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
        cfg.load_threads,
    );
    let _ = writeln!(
        out,
        "| scenario | through | msgs/s | spread | p50 µs | p99 µs | proxy CPU µs/msg | backend CPU µs/msg \
         | msgs/s ÷ HAProxy | per round | proxy CPU/msg ÷ HAProxy | per round | lost/stalled |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(13));
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        for (k, &c) in contenders.iter().enumerate() {
            let runs = &results[s][k];
            let sum = summarize(runs);
            let peer = c
                .peer()
                .and_then(|p| contenders.iter().position(|&x| x == p))
                .map(|p| &results[s][p]);
            let (rate_ratio, rate_rounds, cpu_ratio, cpu_rounds) = match peer {
                Some(peer_runs) => {
                    let ps = summarize(peer_runs);
                    let per_round = |f: &dyn Fn(&LoadReport) -> f64| {
                        runs.iter()
                            .zip(peer_runs)
                            .map(|(a, b)| ratio(f(a), f(b)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let cpu = |r: &LoadReport| r.server_cpu.map_or(0.0, |c| r.per_message_us(c));
                    (
                        ratio(sum.rate, ps.rate),
                        per_round(&LoadReport::rate),
                        ratio(sum.cpu_us, ps.cpu_us),
                        per_round(&cpu),
                    )
                }
                None => ("—".into(), "—".into(), "—".into(), "—".into()),
            };
            let (proxy_cpu, backend_cpu) = match c {
                Contender::Direct => ("—".to_string(), format!("{:.2}", sum.cpu_us)),
                _ => (
                    format!("{:.2}", sum.cpu_us),
                    backend_cpu_all(runs).map_or("n/a".to_string(), |b| format!("{b:.2}")),
                ),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {proxy_cpu} | {backend_cpu} | {rate_ratio} | {rate_rounds} \
                 | {cpu_ratio} | {cpu_rounds} | {}/{} |",
                scenario.label_for(false),
                names[k],
                thousands(sum.rate),
                sum.spread
                    .map_or("—".to_string(), |s| format!("{:.0} %", s * 100.0)),
                micros(sum.p50_us),
                micros(sum.p99_us),
                sum.lost,
                sum.stalled
            );
        }
    }
    let _ = writeln!(
        out,
        "\nmsgs/s: round trips per second over all rounds; spread: (max − min) / mean of the per-run rates; \
         p50/p99: round-trip latency through the proxy; proxy (backend) CPU: that process's utime + stime \
         over the measured window divided by messages (each message crosses the proxy twice). Ratios compare \
         the row's proxy ×N with HAProxy ×N (same thread count) of the same scenario: overall, then round by \
         round. A msgs/s ratio above 1 and a CPU/msg ratio below 1 favour the row's proxy."
    );
    if !problems.is_empty() {
        let _ = writeln!(out, "\n**Problems:**\n");
        for p in problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    out
}

fn ratio(this: f64, peer: f64) -> String {
    if peer > 0.0 {
        format!("{:.2}", this / peer)
    } else {
        "n/a".to_string()
    }
}

/// "HAProxy version 2.6.12-1+deb12u4 …" → "2.6.12-1+deb12u4".
fn haproxy_version(path: &Path) -> Option<String> {
    let out = std::process::Command::new(path).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    let version = line
        .strip_prefix("HAProxy version ")?
        .split_whitespace()
        .next()?;
    Some(format!("version {version}"))
}

/// HAProxy's configuration for `threads` threads in front of `backend`:
/// `mode tcp`, one frontend on `127.0.0.1:{port}` (filled in at start), one
/// server. Generous timeouts, no logging, nothing else changed from HAProxy's
/// defaults.
fn haproxy_config(threads: usize, backend: SocketAddr) -> String {
    format!(
        "global\n\
         \x20   nbthread {threads}\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend bench\n\
         \x20   bind 127.0.0.1:{{port}}\n\
         \x20   default_backend echo\n\
         backend echo\n\
         \x20   server echo1 {backend}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_configuration() {
        let backend: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let text = haproxy_config(2, backend);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "nbthread 2",
            "mode tcp",
            "bind 127.0.0.1:{port}",
            "server echo1 127.0.0.1:9001",
        ] {
            assert!(lines.contains(&want), "{want:?} missing in:\n{text}");
        }
        // Sections start at column 0, settings are indented.
        assert!(text.lines().any(|l| l == "global"));
        assert!(text.lines().any(|l| l == "    nbthread 2"));
    }

    #[test]
    fn proxies_command_lines() {
        let cfg = ProxyBenchConfig {
            ringloop: PathBuf::from("proxy"),
            haproxy: Some(PathBuf::from("haproxy")),
            threads: vec![2],
            direct: true,
            calibrate: false,
            rounds: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            load_threads: 1,
        };
        let backend: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert!(Contender::Direct.proxy(&cfg, backend).is_none());
        let ringloop = Contender::Ringloop(2).proxy(&cfg, backend).unwrap();
        assert_eq!(
            ringloop.command_line(),
            "proxy --listen tcp://127.0.0.1:PORT --backend tcp://127.0.0.1:9001 --loops 2"
        );
        let haproxy = Contender::HaproxyAgain(2).proxy(&cfg, backend).unwrap();
        assert_eq!(haproxy.command_line(), "haproxy -db -f CONFIG");
    }
}
