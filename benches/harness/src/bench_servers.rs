//! `harness bench-http` and `harness bench-kv`: ringloop's HTTP and
//! Redis-protocol examples against peer servers, driven by the real tools
//! (`wrk`, `redis-benchmark`), servers alternated within each round, server
//! CPU per request from `/proc/PID/stat`, one markdown report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::bench::ratio_cell;
use crate::machine::{loadavg, note_run_load, take_run_loads};
use crate::procfs;
use crate::server::{Running, Server, Stopped};
use crate::tools::{self, RedisBenchReport, WrkReport};
use crate::Result;

/// The wrk script that pipelines requests.
const PIPELINE_LUA: &str = include_str!("../pipeline.lua");

/// Settings of `harness bench-http`.
pub struct HttpConfig {
    /// Servers, in the order they run in each round.
    pub servers: Vec<Server>,
    /// Names of the servers the others are compared with.
    pub peers: Vec<String>,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Unmeasured wrk run before each measured one.
    pub warmup: Duration,
    /// Measured wrk run.
    pub duration: Duration,
    /// wrk connections.
    pub conns: usize,
    /// Requests per write in the pipelined scenario.
    pub depth: usize,
    /// Pin every server to CPU 0 and wrk to CPU 1 (`--pin`), so that the
    /// load generator cannot take the server's core and the rate follows
    /// the server's cost per request.
    pub pin: bool,
    /// What generates the load.
    pub client: HttpClient,
}

/// The HTTP load generator of `harness bench-http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpClient {
    /// `wrk -t1`, a real client (and on 2 cores the bottleneck: it spends
    /// more CPU per request than the servers).
    Wrk,
    /// The harness's own closed-loop generator ([`crate::http_load`]), run
    /// in-process on one thread: far cheaper per request, so the server is
    /// what limits the rate.
    Harness,
}

impl HttpClient {
    fn name(self) -> &'static str {
        match self {
            HttpClient::Wrk => "wrk",
            HttpClient::Harness => "harness http-load",
        }
    }
}

/// Settings of `harness bench-kv`.
pub struct KvConfig {
    /// Servers, in the order they run in each round.
    pub servers: Vec<Server>,
    /// Names of the servers the others are compared with.
    pub peers: Vec<String>,
    /// Rounds.
    pub rounds: usize,
    /// `-n` with `-P 16`.
    pub requests_pipelined: u64,
    /// `-n` with `-P 1`.
    pub requests_single: u64,
    /// `-c`.
    pub clients: usize,
    /// `-r`: random keys from this many (`None`: one key per test, as
    /// redis-benchmark does by default).
    pub keyspace: Option<u64>,
}

/// One measured run.
struct Run {
    requests: u64,
    seconds: f64,
    rate: f64,
    /// Latency percentiles (`None` when the tool printed none, as wrk
    /// sometimes does with pipelining).
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    /// Server CPU over the run (`None` if it could not be read).
    cpu: Option<Duration>,
    /// The user-space part of `cpu` (`None` where not measured).
    user: Option<Duration>,
    /// The load generator's CPU over the run (wrk; `None` where not
    /// measured).
    load_cpu: Option<Duration>,
}

/// One table row: all rounds of one server in one scenario.
struct Row {
    rate: f64,
    spread: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    cpu_us: Option<f64>,
    /// Per run, in round order: requests per second, and server CPU µs per
    /// request (NaN where unreadable), for the per-round ratios.
    run_rates: Vec<f64>,
    run_cpu_us: Vec<f64>,
}

/// The mean of the values that are there.
fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

fn summarize(runs: &[Run]) -> Row {
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let with_cpu: Vec<&Run> = runs.iter().filter(|r| r.cpu.is_some()).collect();
    let cpu: Duration = with_cpu.iter().filter_map(|r| r.cpu).sum();
    let cpu_requests: u64 = with_cpu.iter().map(|r| r.requests).sum();
    Row {
        rate: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        spread: (runs.len() > 1 && mean > 0.0).then(|| (hi - lo) / mean),
        p50_us: mean_of(runs.iter().map(|r| r.p50_us)),
        p99_us: mean_of(runs.iter().map(|r| r.p99_us)),
        cpu_us: (cpu_requests > 0).then(|| cpu.as_secs_f64() * 1e6 / cpu_requests as f64),
        run_rates: rates,
        run_cpu_us: runs
            .iter()
            .map(|r| match r.cpu {
                Some(c) if r.requests > 0 => c.as_secs_f64() * 1e6 / r.requests as f64,
                _ => f64::NAN,
            })
            .collect(),
    }
}

/// Server CPU time, if readable.
fn cpu(running: &Running) -> Option<Duration> {
    procfs::cpu_time(running.pid()).ok()
}

/// Server user and system CPU time, if readable.
fn cpu_split(running: &Running) -> Option<(Duration, Duration)> {
    procfs::user_system_time(running.pid()).ok()
}

/// Per run: `what` (a time) in µs per request, NaN where unmeasured.
fn per_request_us(runs: &[Run], what: impl Fn(&Run) -> Option<Duration>) -> Vec<f64> {
    runs.iter()
        .map(|r| match what(r) {
            Some(c) if r.requests > 0 => c.as_secs_f64() * 1e6 / r.requests as f64,
            _ => f64::NAN,
        })
        .collect()
}

/// Median of the values that are numbers, and their range, as
/// "median (min–max)" with `digits` decimals; "?" when there are none.
fn median_range(values: &[f64], digits: usize) -> String {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return "?".to_string();
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    format!(
        "{median:.digits$} ({:.digits$}–{:.digits$})",
        v[0],
        v[v.len() - 1]
    )
}

/// Per-round ratios `a[i] / b[i]` (NaN where either is missing).
fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// CPU time of the harness's children that have been waited for (wrk, once
/// `run_wrk` returns; the servers still running do not count).
fn children_cpu() -> Option<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Some(tv(usage.user_time()) + tv(usage.system_time()))
}

/// The harness (and so whatever it starts next) on `cpu` only, or on
/// every CPU again (`None`).
pub(crate) fn pin_to(cpu: Option<usize>) -> Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    match cpu {
        Some(c) => set.set(c)?,
        None => {
            for c in 0..CpuSet::count() {
                let _ = set.set(c);
            }
        }
    }
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| format!("--pin: cannot run on CPU {cpu:?} ({e}); it needs 2 CPUs").into())
}

/// Mean share of one core over the runs that have the figure.
fn core_share(runs: &[Run], what: impl Fn(&Run) -> Option<Duration>) -> String {
    let shares: Vec<f64> = runs
        .iter()
        .filter_map(|r| what(r).map(|c| c.as_secs_f64() / r.seconds.max(1e-9)))
        .collect();
    if shares.is_empty() {
        return "?".to_string();
    }
    format!(
        "{:.0} %",
        100.0 * shares.iter().sum::<f64>() / shares.len() as f64
    )
}

fn stop(running: Running, problems: &mut Vec<String>) -> Result<()> {
    let name = running.name.clone();
    match running.stop()? {
        Stopped::Early(status) => {
            problems.push(format!("{name} exited by itself during the run: {status}"))
        }
        Stopped::Exited(status) if status.success() => {}
        Stopped::Exited(status) => {
            problems.push(format!("{name} did not exit cleanly on SIGTERM: {status}"))
        }
        Stopped::Killed => problems.push(format!(
            "{name} was still running 5 s after SIGTERM and was killed"
        )),
    }
    Ok(())
}

fn wrk_args(cfg: &HttpConfig, depth: usize, seconds: f64, script: &str) -> Vec<String> {
    let mut args = vec![
        "-t1".to_string(),
        format!("-c{}", cfg.conns),
        format!("-d{seconds}s"),
        "--latency".to_string(),
    ];
    if depth > 1 {
        args.push("-s".to_string());
        args.push(script.to_string());
    }
    args.push("{URL}".to_string());
    if depth > 1 {
        args.push("--".to_string());
        args.push(depth.to_string());
    }
    args
}

/// One run of the in-process load generator (warm-up included), as a
/// [`WrkReport`] with the server's and the generator's CPU over the window.
fn run_http_load(cfg: &HttpConfig, depth: usize, running: &Running) -> Result<HttpMeasured> {
    let report = crate::http_load::run(&crate::http_load::HttpLoadConfig {
        addr: running.addr,
        path: "/plaintext".to_string(),
        conns: cfg.conns,
        depth,
        warmup: cfg.warmup,
        duration: cfg.duration,
        server_pid: Some(running.pid()),
    })?;
    if report.stalled > 0 {
        return Err(format!(
            "{} of {} connections completed no request in the window",
            report.stalled, cfg.conns
        )
        .into());
    }
    let wrk = WrkReport {
        requests: report.requests,
        seconds: report.seconds,
        p50_us: report.latency.quantile(0.50) as f64 / 1e3,
        p99_us: report.latency.quantile(0.99) as f64 / 1e3,
        socket_errors: 0,
        non_2xx: 0,
    };
    Ok((
        wrk,
        report.server_cpu,
        report.server_user,
        report.client_cpu,
    ))
}

fn run_wrk(args: &[String], url: &str, seconds: f64) -> Result<WrkReport> {
    let mut cmd = Command::new("wrk");
    cmd.args(args.iter().map(|a| a.replace("{URL}", url)));
    let out = tools::run(cmd, Duration::from_secs_f64(seconds + 30.0))?;
    tools::parse_wrk(&out)
}

/// Runs the HTTP benchmark and prints its report. Returns whether every
/// run was clean.
pub fn run_http(cfg: &HttpConfig) -> Result<bool> {
    if cfg.client == HttpClient::Wrk && !tools::on_path("wrk") {
        return Err("wrk is not installed (Debian package `wrk`)".into());
    }
    let script = std::env::temp_dir().join(format!("ringloop-pipeline-{}.lua", std::process::id()));
    std::fs::write(&script, PIPELINE_LUA)?;
    let script_path = script.display().to_string();
    let outcome = http_rounds(cfg, &script_path);
    let _ = std::fs::remove_file(&script);
    let (results, problems, load_before) = outcome?;

    let scenarios = http_scenarios(cfg);
    let mut out = String::new();
    let client = cfg.client.name();
    let _ = writeln!(out, "## HTTP plaintext benchmark (loopback, {client})\n");
    let _ = writeln!(
        out,
        "{}; load average {} before, {} after.{} {} round(s) per scenario, servers alternated ({}), \
         each run {:.1} s of {client} warm-up (not measured) then {:.1} s measured, a fresh server per run.\n",
        machine(),
        load_before,
        loadavg(),
        take_run_loads(),
        cfg.rounds,
        names(&cfg.servers).join(" "),
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
    );
    let _ = write!(
        out,
        "| scenario | server | req/s | spread | p50 ms | p99 ms | server CPU µs/req |"
    );
    let peers = peer_indices(&cfg.servers, &cfg.peers);
    for &p in &peers {
        let _ = write!(out, " req/s ÷ {} |", cfg.servers[p].name);
    }
    for &p in &peers {
        let _ = write!(out, " CPU/req ÷ {} |", cfg.servers[p].name);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|{}", "---|".repeat(7 + 2 * peers.len()));
    for (s, (label, _)) in scenarios.iter().enumerate() {
        let rows: Vec<Row> = results[s].iter().map(|runs| summarize(runs)).collect();
        for (k, row) in rows.iter().enumerate() {
            write_row(&mut out, label, &cfg.servers[k].name, row, &rows, &peers, k);
        }
    }
    let _ = writeln!(
        out,
        "\nCPU shares (mean over the rounds, % of one core over the measured run): whether the \
         server or the load generator is the bottleneck. Near 100 % for the load and below it for \
         the server: the rate is the load generator's, not the server's ({}).\n",
        if cfg.pin {
            "--pin: every server on CPU 0, the load on CPU 1"
        } else {
            "not pinned: server and load share the CPUs; --pin separates them"
        }
    );
    let _ = writeln!(
        out,
        "| scenario | server | server CPU | {client} CPU |\n|---|---|---|---|"
    );
    for (s, (label, _)) in scenarios.iter().enumerate() {
        for (k, runs) in results[s].iter().enumerate() {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} |",
                cfg.servers[k].name,
                core_share(runs, |r| r.cpu),
                core_share(runs, |r| r.load_cpu),
            );
        }
    }
    write_split(&mut out, cfg, &scenarios, &results, &peers);
    let _ = writeln!(
        out,
        "\nreq/s: responses per second over all rounds ({client}); spread: (max − min) / mean of the \
         per-run rates; p50/p99: {client}'s latency percentiles (http-load: of each write's \
         round trip, all its pipelined responses), mean over the runs; server CPU: the \
         server's utime + stime over the measured run divided by its responses. Ratios: median \
         of the per-round ratios, their range in brackets. A req/s ratio above 1 and a CPU/req ratio below 1 favour the row's server.\n"
    );
    let _ = writeln!(out, "Commands (PORT is a fresh loopback port per run):\n");
    let _ = writeln!(out, "```text");
    for server in &cfg.servers {
        let _ = writeln!(out, "{}", server.command_line());
    }
    for (label, depth) in &scenarios {
        if cfg.client == HttpClient::Harness {
            let _ = writeln!(
                out,
                "harness http-load tcp://127.0.0.1:PORT --conns {} --depth {depth} --seconds {} \
                 --warmup {}    # {label} (in-process in bench-http{})",
                cfg.conns,
                cfg.duration.as_secs_f64(),
                cfg.warmup.as_secs_f64(),
                if cfg.pin { ", on CPU 1" } else { "" }
            );
            continue;
        }
        let args = wrk_args(
            cfg,
            *depth,
            cfg.duration.as_secs_f64(),
            "benches/harness/pipeline.lua",
        );
        let _ = writeln!(
            out,
            "wrk {}    # {label}",
            args.join(" ")
                .replace("{URL}", "http://127.0.0.1:PORT/plaintext")
        );
    }
    let _ = writeln!(out, "```");
    finish(out, problems)
}

type Results = Vec<Vec<Vec<Run>>>;

/// One HTTP run's report, server CPU, its user part and the load's CPU.
type HttpMeasured = (
    WrkReport,
    Option<Duration>,
    Option<Duration>,
    Option<Duration>,
);

fn http_scenarios(cfg: &HttpConfig) -> Vec<(String, usize)> {
    vec![
        (
            format!("{} conns, {} pipelined", cfg.conns, cfg.depth),
            cfg.depth,
        ),
        (format!("{} conns, no pipelining", cfg.conns), 1),
    ]
}

fn http_rounds(cfg: &HttpConfig, script: &str) -> Result<(Results, Vec<String>, String)> {
    let load_before = loadavg();
    let scenarios = http_scenarios(cfg);
    let mut problems = Vec::new();
    let mut results: Results = scenarios
        .iter()
        .map(|_| cfg.servers.iter().map(|_| Vec::new()).collect())
        .collect();
    for (s, (label, depth)) in scenarios.iter().enumerate() {
        for round in 1..=cfg.rounds {
            for (k, server) in cfg.servers.iter().enumerate() {
                eprintln!("{label} · round {round}/{} · {}", cfg.rounds, server.name);
                note_run_load();
                if cfg.pin {
                    // The server inherits CPU 0 from the harness, wrk (started
                    // after it) CPU 1.
                    pin_to(Some(0))?;
                }
                let running = server.start()?;
                if cfg.pin {
                    pin_to(Some(1))?;
                }
                let url = format!("http://{}/plaintext", running.addr);
                let warm = cfg.warmup.as_secs_f64();
                let measured = cfg.duration.as_secs_f64();
                let outcome = (|| -> Result<HttpMeasured> {
                    if cfg.client == HttpClient::Harness {
                        return run_http_load(cfg, *depth, &running);
                    }
                    if warm > 0.0 {
                        run_wrk(&wrk_args(cfg, *depth, warm, script), &url, warm)?;
                    }
                    let before = cpu_split(&running);
                    let load_before = children_cpu();
                    let report = run_wrk(&wrk_args(cfg, *depth, measured, script), &url, measured)?;
                    let load_cpu = children_cpu()
                        .zip(load_before)
                        .map(|(a, b)| a.saturating_sub(b));
                    let after = cpu_split(&running);
                    let (cpu, user) = match after.zip(before) {
                        Some(((u1, s1), (u0, s0))) => (
                            Some((u1 + s1).saturating_sub(u0 + s0)),
                            Some(u1.saturating_sub(u0)),
                        ),
                        None => (None, None),
                    };
                    Ok((report, cpu, user, load_cpu))
                })();
                stop(running, &mut problems)?;
                let (report, cpu, user, load_cpu) =
                    outcome.map_err(|e| format!("{} under {label}: {e}", server.name))?;
                let share = |c: Option<Duration>| {
                    c.map_or("?".to_string(), |c| {
                        format!(
                            "{:.0} %",
                            100.0 * c.as_secs_f64() / report.seconds.max(1e-9)
                        )
                    })
                };
                let per_req = |c: Option<Duration>| {
                    c.map_or("?".to_string(), |c| {
                        format!(
                            "{:.3}",
                            c.as_secs_f64() * 1e6 / report.requests.max(1) as f64
                        )
                    })
                };
                eprintln!(
                    "    {:.0} req/s, p99 {:.2} ms, server CPU {} µs/req (user {}, kernel {}; \
                     {} of a core; load {})",
                    report.requests as f64 / report.seconds,
                    report.p99_us / 1e3,
                    per_req(cpu),
                    per_req(user),
                    per_req(cpu.zip(user).map(|(c, u)| c.saturating_sub(u))),
                    share(cpu),
                    share(load_cpu),
                );
                if report.socket_errors > 0 || report.non_2xx > 0 {
                    problems.push(format!(
                        "{} under {label}, round {round}: {} socket errors, {} non-2xx responses",
                        server.name, report.socket_errors, report.non_2xx
                    ));
                }
                results[s][k].push(Run {
                    requests: report.requests,
                    seconds: report.seconds,
                    rate: report.requests as f64 / report.seconds,
                    p50_us: (report.p50_us > 0.0).then_some(report.p50_us),
                    p99_us: (report.p99_us > 0.0).then_some(report.p99_us),
                    cpu,
                    user,
                    load_cpu,
                });
            }
        }
    }
    if cfg.pin {
        pin_to(None)?;
    }
    Ok((results, problems, load_before))
}

/// `redis-benchmark` tests, in run order (GET reads what SET wrote).
const KV_TESTS: [&str; 3] = ["set", "get", "incr"];

fn kv_args(cfg: &KvConfig, test: &str, pipeline: u64) -> Vec<String> {
    let requests = if pipeline > 1 {
        cfg.requests_pipelined
    } else {
        cfg.requests_single
    };
    let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", "{PORT}", "-t", test]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-n".to_string(),
        requests.to_string(),
        "-c".to_string(),
        cfg.clients.to_string(),
        "-P".to_string(),
        pipeline.to_string(),
    ]);
    if let Some(keys) = cfg.keyspace {
        args.extend(["-r".to_string(), keys.to_string()]);
    }
    args.push("--csv".to_string());
    args
}

/// Runs the key-value benchmark and prints its report. Returns whether
/// every run was clean.
pub fn run_kv(cfg: &KvConfig) -> Result<bool> {
    if !tools::on_path("redis-benchmark") {
        return Err("redis-benchmark is not installed (Debian package `redis-tools`)".into());
    }
    let load_before = loadavg();
    let pipelines = [16u64, 1];
    let mut problems = Vec::new();
    // results[pipeline][test][server]
    let mut results: Vec<Vec<Vec<Vec<Run>>>> = pipelines
        .iter()
        .map(|_| {
            KV_TESTS
                .iter()
                .map(|_| cfg.servers.iter().map(|_| Vec::new()).collect())
                .collect()
        })
        .collect();
    for (pi, &pipeline) in pipelines.iter().enumerate() {
        for round in 1..=cfg.rounds {
            for (k, server) in cfg.servers.iter().enumerate() {
                eprintln!(
                    "-P {pipeline} · round {round}/{} · {}",
                    cfg.rounds, server.name
                );
                note_run_load();
                let running = server.start()?;
                let outcome = kv_tests(cfg, &running, pipeline, &mut problems);
                stop(running, &mut problems)?;
                let runs =
                    outcome.map_err(|e| format!("{} with -P {pipeline}: {e}", server.name))?;
                for (t, run) in runs.into_iter().enumerate() {
                    results[pi][t][k].push(run);
                }
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Redis-protocol benchmark (loopback, redis-benchmark)\n"
    );
    let _ = writeln!(
        out,
        "{}; load average {} before, {} after.{} {} round(s), servers alternated ({}), a fresh \
         server per round and pipeline depth; in each, the tests run in the order {} (GET \
         reads the key SET wrote). {} clients, {} requests per test with -P 16 and {} with -P 1{}.\n",
        machine(),
        load_before,
        loadavg(),
        take_run_loads(),
        cfg.rounds,
        names(&cfg.servers).join(" "),
        KV_TESTS.join(", "),
        cfg.clients,
        thousands(cfg.requests_pipelined as f64),
        thousands(cfg.requests_single as f64),
        cfg.keyspace
            .map_or(", one key per test (redis-benchmark's default)".to_string(), |k| format!(
                ", keys drawn from {} (-r)",
                thousands(k as f64)
            )),
    );
    let peers = peer_indices(&cfg.servers, &cfg.peers);
    let _ = write!(
        out,
        "| test | server | req/s | spread | p50 ms | p99 ms | server CPU µs/req |"
    );
    for &p in &peers {
        let _ = write!(out, " req/s ÷ {} |", cfg.servers[p].name);
    }
    for &p in &peers {
        let _ = write!(out, " CPU/req ÷ {} |", cfg.servers[p].name);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|{}", "---|".repeat(7 + 2 * peers.len()));
    for (pi, pipeline) in pipelines.iter().enumerate() {
        for (t, test) in KV_TESTS.iter().enumerate() {
            let label = format!("{} -P {pipeline}", test.to_uppercase());
            let rows: Vec<Row> = results[pi][t].iter().map(|runs| summarize(runs)).collect();
            for (k, row) in rows.iter().enumerate() {
                write_row(
                    &mut out,
                    &label,
                    &cfg.servers[k].name,
                    row,
                    &rows,
                    &peers,
                    k,
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nreq/s: redis-benchmark's requests per second, over all rounds; spread: (max − min) / \
         mean of the per-run rates; p50/p99: redis-benchmark's latency percentiles, mean over the \
         runs; server CPU: the server's utime + stime over the redis-benchmark run divided by its \
         requests. Ratios: median of the per-round ratios, their range in brackets. A req/s \
         ratio above 1 and a CPU/req ratio below 1 favour the row's server.\n"
    );
    let _ = writeln!(out, "Commands (PORT is a fresh loopback port per run):\n");
    let _ = writeln!(out, "```text");
    for server in &cfg.servers {
        let _ = writeln!(out, "{}", server.command_line());
    }
    for pipeline in pipelines {
        for test in KV_TESTS {
            let _ = writeln!(
                out,
                "redis-benchmark {}",
                kv_args(cfg, test, pipeline)
                    .join(" ")
                    .replace("{PORT}", "PORT")
            );
        }
    }
    let _ = writeln!(out, "```");
    finish(out, problems)
}

/// Runs the three tests against one server and checks what they left.
fn kv_tests(
    cfg: &KvConfig,
    running: &Running,
    pipeline: u64,
    problems: &mut Vec<String>,
) -> Result<Vec<Run>> {
    let port = running.addr.port().to_string();
    let mut runs = Vec::new();
    for test in KV_TESTS {
        let args = kv_args(cfg, test, pipeline);
        let requests: u64 = args
            .iter()
            .position(|a| a == "-n")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut cmd = Command::new("redis-benchmark");
        cmd.args(args.iter().map(|a| a.replace("{PORT}", &port)));
        let before = cpu(running);
        let out = tools::run(cmd, Duration::from_secs(300))?;
        let after = cpu(running);
        let RedisBenchReport {
            rps,
            p50_ms,
            p99_ms,
        } = tools::parse_redis_csv(&out, &test.to_uppercase())?;
        let cpu = after.zip(before).map(|(a, b)| a.saturating_sub(b));
        eprintln!(
            "    {}: {rps:.0} req/s, p99 {p99_ms:.3} ms, server CPU {}",
            test.to_uppercase(),
            cpu.map_or("?".to_string(), |c| format!(
                "{:.2} µs/req",
                c.as_secs_f64() * 1e6 / requests as f64
            ))
        );
        runs.push(Run {
            user: None,
            load_cpu: None,
            requests,
            seconds: requests as f64 / rps.max(f64::MIN_POSITIVE),
            rate: rps,
            p50_us: Some(p50_ms * 1e3),
            p99_us: Some(p99_ms * 1e3),
            cpu,
        });
    }
    // What the benchmark left must be right: SET wrote a 3-byte value (-d 3,
    // random bytes in redis-benchmark 7) and every INCR counted once (with
    // one key per test).
    if cfg.keyspace.is_none() {
        let value = tools::resp_get(running.addr, "key:__rand_int__")?;
        if value.as_ref().map(Vec::len) != Some(3) {
            problems.push(format!(
                "{}: after SET, key:__rand_int__ is {value:?}, not a 3-byte value",
                running.name
            ));
        }
        let counter = tools::resp_get(running.addr, "counter:__rand_int__")?;
        let expected = runs[2].requests.to_string();
        if counter.as_deref() != Some(expected.as_bytes()) {
            problems.push(format!(
                "{}: after {expected} INCRs, counter:__rand_int__ is {:?}",
                running.name,
                counter.map(|c| String::from_utf8_lossy(&c).into_owned())
            ));
        }
    }
    Ok(runs)
}

/// Where each server's CPU goes (user and kernel time per request, median
/// and range over the rounds, kernel time ÷ each peer per round), then every
/// run by itself.
fn write_split(
    out: &mut String,
    cfg: &HttpConfig,
    scenarios: &[(String, usize)],
    results: &Results,
    peers: &[usize],
) {
    let _ = writeln!(
        out,
        "\nServer CPU per request split from /proc/PID/stat (utime, stime; one clock tick of \
         resolution over the run): median over the rounds (range).\n"
    );
    let _ = write!(
        out,
        "| scenario | server | user µs/req | kernel µs/req | CPU µs/req |"
    );
    for &p in peers {
        let _ = write!(out, " kernel/req ÷ {} |", cfg.servers[p].name);
    }
    let _ = writeln!(out, "\n|{}", "---|".repeat(5 + peers.len()));
    let kernel = |r: &Run| r.cpu.zip(r.user).map(|(c, u)| c.saturating_sub(u));
    for (s, (label, _)) in scenarios.iter().enumerate() {
        for (k, runs) in results[s].iter().enumerate() {
            let _ = write!(
                out,
                "| {label} | {} | {} | {} | {} |",
                cfg.servers[k].name,
                median_range(&per_request_us(runs, |r| r.user), 3),
                median_range(&per_request_us(runs, kernel), 3),
                median_range(&per_request_us(runs, |r| r.cpu), 3),
            );
            for &p in peers {
                let cell = if p == k {
                    "—".to_string()
                } else {
                    median_range(
                        &ratios(
                            &per_request_us(runs, kernel),
                            &per_request_us(&results[s][p], kernel),
                        ),
                        2,
                    )
                };
                let _ = write!(out, " {cell} |");
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "\nEvery run, in the order run (servers alternated within a round):\n\n\
         | scenario | round | server | req/s | p99 ms | user µs/req | kernel µs/req | CPU µs/req | server % of a core |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (s, (label, _)) in scenarios.iter().enumerate() {
        for round in 0..cfg.rounds {
            for (k, runs) in results[s].iter().enumerate() {
                let Some(run) = runs.get(round) else { continue };
                let one = std::slice::from_ref(run);
                let us = |v: Vec<f64>| {
                    v.first()
                        .filter(|x| !x.is_nan())
                        .map_or("?".to_string(), |x| format!("{x:.3}"))
                };
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    round + 1,
                    cfg.servers[k].name,
                    thousands(run.rate),
                    run.p99_us
                        .map_or("?".to_string(), |p| format!("{:.2}", p / 1e3)),
                    us(per_request_us(one, |r| r.user)),
                    us(per_request_us(one, kernel)),
                    us(per_request_us(one, |r| r.cpu)),
                    core_share(one, |r| r.cpu),
                );
            }
        }
    }
}

fn write_row(
    out: &mut String,
    label: &str,
    name: &str,
    row: &Row,
    rows: &[Row],
    peers: &[usize],
    k: usize,
) {
    // Median of the per-round ratios with their range (each round runs the
    // servers back to back), or the overall ratio with a single round.
    let ratio =
        |this: Option<f64>, peer: Option<f64>, a: &[f64], b: &[f64], same: bool| match (this, peer)
        {
            _ if same => "—".to_string(),
            (Some(x), Some(y)) => {
                let per_round: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
                ratio_cell(x, y, &per_round)
            }
            _ => "n/a".to_string(),
        };
    let _ = write!(
        out,
        "| {label} | {name} | {} | {} | {} | {} | {} |",
        thousands(row.rate),
        row.spread
            .map_or("—".to_string(), |s| format!("{:.0} %", s * 100.0)),
        row.p50_us
            .map_or("?".to_string(), |us| format!("{:.2}", us / 1e3)),
        row.p99_us
            .map_or("?".to_string(), |us| format!("{:.2}", us / 1e3)),
        row.cpu_us.map_or("?".to_string(), |c| format!("{c:.2}")),
    );
    for &p in peers {
        let _ = write!(
            out,
            " {} |",
            ratio(
                Some(row.rate),
                Some(rows[p].rate),
                &row.run_rates,
                &rows[p].run_rates,
                p == k
            )
        );
    }
    for &p in peers {
        let cell = ratio(
            row.cpu_us,
            rows[p].cpu_us,
            &row.run_cpu_us,
            &rows[p].run_cpu_us,
            p == k,
        );
        let _ = write!(out, " {cell} |");
    }
    let _ = writeln!(out);
}

fn finish(mut out: String, problems: Vec<String>) -> Result<bool> {
    if !problems.is_empty() {
        let _ = writeln!(out, "\n**Problems:**\n");
        for p in &problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    print!("{out}");
    Ok(problems.is_empty())
}

fn peer_indices(servers: &[Server], peers: &[String]) -> Vec<usize> {
    peers
        .iter()
        .filter_map(|p| servers.iter().position(|s| s.name == *p))
        .collect()
}

fn names(servers: &[Server]) -> Vec<&str> {
    servers.iter().map(|s| s.name.as_str()).collect()
}

fn machine() -> String {
    format!(
        "{} CPUs, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    )
}

/// `1234567.8` as `1,234,568`.
fn thousands(v: f64) -> String {
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

/// ringloop's server `example` under the target directory (honouring
/// `$CARGO_TARGET_DIR`, relative to the workspace root).
pub fn default_example(example: &str) -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("release/examples").join(example)
}
