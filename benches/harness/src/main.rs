//! `harness`: ringloop's end-to-end benchmarks on loopback. For echo it
//! serves the peer echo servers (tokio, a hand-written mio loop), generates
//! verified closed-loop load, measures idle-connection memory, and runs the
//! whole side-by-side comparison. For the HTTP and Redis-protocol examples
//! it serves the peer HTTP servers (tokio + httparse, may_minihttp) and runs
//! `wrk` and `redis-benchmark` against them, `redis-server` and ringloop.
//! For the proxy example it runs ringloop's proxy against HAProxy in front of
//! the same echo backend (`proxy-bench`). See `README.md` next to this crate.

mod args;
mod async_write;
mod bench;
mod bench_servers;
mod connect;
mod hist;
mod http_load;
mod idle;
mod load;
mod load_uring;
mod machine;
mod pattern;
mod procfs;
mod proxy_bench;
mod serve_epoll;
mod serve_http_floor;
mod serve_may_http;
mod serve_monoio;
mod serve_tokio;
mod serve_tokio_http;
mod serve_tokio_udp;
mod serve_uring;
mod serve_uring_lean;
mod server;
mod soak;
mod stream;
mod tools;
mod udp_load;
/// ringloop's io_uring groundwork (crate-private in ringloop), compiled in
/// for the `uring` echo server.
#[path = "../../../src/sys/uring/mod.rs"]
mod uring;
// The ring gives finished send buffers back to the loop's pool.
#[allow(dead_code)]
#[path = "../../../src/buffer_pool.rs"]
mod buffer_pool;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use args::{parse_endpoint, parse_url, seconds, Args};
use server::{Kind, Server};

/// The error type of this tool.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of this tool: a message for the user.
pub type Result<T> = std::result::Result<T, BoxError>;

const USAGE: &str = "\
usage:
  harness serve tokio tcp://127.0.0.1:PORT [--threads 2 | --current-thread] [--buf 16384]
  harness serve tokio-blocking tcp://127.0.0.1:PORT [--threads 2 | --current-thread]
               [--delay-ms 1] [--blocking-threads N] [--buf 16384]
  harness serve tokio-udp udp://127.0.0.1:PORT [--threads 2 | --current-thread]
  harness serve epoll tcp://127.0.0.1:PORT
  harness serve monoio|uring tcp://127.0.0.1:PORT [--buf 16384]
  harness serve lean[+fixed][+regring][+coop|+plain|+sqpoll][+nosqarray][+single|+bundle]
               [+bufs=N][+size=S] tcp://127.0.0.1:PORT [--buf 16384]
               (the cheapest io_uring echo, on the io-uring crate directly;
                see src/serve_uring_lean.rs; also a `bench --servers` name)
  harness serve tokio-http tcp://127.0.0.1:PORT [--threads 2]
  harness serve may-http tcp://127.0.0.1:PORT [--threads 2]
  harness serve http-floor tcp://127.0.0.1:PORT   (one thread: the least a readiness
                                                   HTTP server can do per request)
  harness load tcp://127.0.0.1:PORT|udp://127.0.0.1:PORT --conns C --size S --seconds T
               [--threads 1] [--warmup 0.5] [--pid SERVER_PID]
               [--client mio|uring|uring-multishot]   (TCP: readiness on mio, the
                                       default, or the cheaper io_uring client)
               [--cpu N]   (run the load on CPU N only)
  harness http-load tcp://127.0.0.1:PORT [--conns 256] [--depth 16] [--seconds 3]
                    [--warmup 1] [--path /plaintext] [--pid SERVER_PID]
  harness idle tcp://127.0.0.1:PORT --conns 10000 --pid SERVER_PID
  harness bench [--quick] [--servers ringloop,tokio,epoll] [--peers tokio,epoll]
                [--scenarios 50x512,1000x512,100x16384] [--udp] [--title TEXT]
                [--ringloop PATH] [--echo-pool PATH] [--skip-ringloop]
                [--ringloop-loops 2] [--tokio-threads 2] [--delay-ms 1] [--workers 50]
                [--rounds N] [--seconds T] [--load-threads N] [--idle-conns N]
                [--idle-only] [--client mio|uring|uring-multishot]
                [--pin]   (every server on CPU 0, the load on CPU 1)
  harness async-write [--quick] [--title TEXT] [--loops 1] [--workers 2] [--conns 64] [--size 64]
                [--rates 20000,0] [--rounds 3] [--seconds 3] [--designs ringloop,naive|framed,ringloop]
  harness bench-http [--quick] [--ringloop PATH] [--loops 2] [--threads 2] [--skip-may]
                     [--rounds N] [--seconds T] [--warmup T] [--conns 256] [--depth 16]
                     [--pin]   (servers on CPU 0, wrk on CPU 1: a server-bound rate)
                     [--client wrk|harness]   (harness: the cheap in-process load of
                                               `http-load` instead of wrk)
                     [--floor]   (also the http floor, `serve http-floor`)
  harness bench-kv [--quick] [--ringloop PATH] [--loops 1,2] [--rounds N]
                   [--requests N] [--requests-p1 N] [--clients 50] [--keyspace N]
  harness soak [--server PATH] [--seconds 180] [--loops 2]
               [--idle-timeout-ms 2000] [--echo-conns 50]
  harness proxy-bench [--quick] [--ringloop PATH] [--haproxy PATH | --skip-haproxy]
                      [--threads 1,2] [--no-direct] [--calibrate] [--rounds N] [--seconds T]
                      [--load-threads N]
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    // Thousands of sockets on each side: lift the soft limit to the hard one
    // before anything opens them; servers started by `bench` inherit it.
    procfs::raise_nofile_limit()?;
    // Every command that measures first waits for an idle machine and puts
    // what it found at the top of its report.
    if matches!(
        command.as_str(),
        "bench" | "async-write" | "bench-http" | "bench-kv" | "soak" | "proxy-bench"
    ) && !rest.iter().any(|a| a == "-h" || a == "--help")
    {
        let idle = machine::wait_for_idle(&format!("harness {command}"));
        println!("Before measuring (`harness {command}`): {idle}.\n");
    }
    match command.as_str() {
        "serve" => serve(rest),
        "load" => load(rest),
        "http-load" => http_load(rest),
        "idle" => idle(rest),
        "bench" => bench(rest),
        "async-write" => async_write::main(rest),
        "bench-http" => bench_http(rest),
        "bench-kv" => bench_kv(rest),
        "soak" => soak(rest),
        "proxy-bench" => proxy_bench(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

fn serve(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &["--threads", "--buf", "--delay-ms", "--blocking-threads"],
        &["--current-thread"],
    )?;
    let [kind, url] = args.positional(&[
        "tokio|tokio-blocking|tokio-udp|epoll|monoio|uring|lean[+…]|tokio-http|may-http|http-floor",
        "URL",
    ])?
    else {
        unreachable!("positional() checked the count")
    };
    let (udp, addr) = parse_endpoint(url)?;
    loopback(url, addr)?;
    if udp != (kind == "tokio-udp") {
        return Err(format!(
            "the {kind} server takes a {} address",
            if udp { "tcp://" } else { "udp://" }
        )
        .into());
    }
    let threads = args.value("--threads")?.unwrap_or(2);
    let current_thread = args.switch("--current-thread");
    if current_thread && args.value::<usize>("--threads")?.is_some() {
        return Err("--threads and --current-thread exclude each other".into());
    }
    let buf = args.value("--buf")?.unwrap_or(serve_tokio::DEFAULT_BUF);
    let delay = args.value::<u64>("--delay-ms")?;
    let blocking_threads = args.value::<usize>("--blocking-threads")?;
    if threads == 0 || buf == 0 || blocking_threads == Some(0) {
        return Err("--threads, --buf and --blocking-threads must be at least 1".into());
    }
    if kind != "tokio-blocking" && (delay.is_some() || blocking_threads.is_some()) {
        return Err("--delay-ms and --blocking-threads are for tokio-blocking".into());
    }
    let runtime = serve_tokio::Runtime {
        threads,
        current_thread,
        blocking_threads,
    };
    match kind.as_str() {
        "tokio" => serve_tokio::run(addr, runtime, buf, serve_tokio::Mode::Echo)?,
        "tokio-blocking" => serve_tokio::run(
            addr,
            runtime,
            buf,
            serve_tokio::Mode::Blocking(Duration::from_millis(delay.unwrap_or(1))),
        )?,
        "tokio-udp" => serve_tokio_udp::run(addr, runtime)?,
        "epoll" => {
            if args.value::<usize>("--threads")?.is_some()
                || args.value::<usize>("--buf")?.is_some()
                || current_thread
            {
                return Err(
                    "the epoll server is single-threaded with one shared buffer; \
                            --threads, --current-thread and --buf do not apply"
                        .into(),
                );
            }
            serve_epoll::run(addr)?;
        }
        "http-floor" => {
            if args.value::<usize>("--threads")?.is_some()
                || args.value::<usize>("--buf")?.is_some()
                || current_thread
            {
                return Err("the http floor is one thread with one shared buffer; \
                            --threads, --current-thread and --buf do not apply"
                    .into());
            }
            serve_http_floor::run(addr)?;
        }
        "monoio" | "uring" => {
            if args.value::<usize>("--threads")?.is_some() || current_thread {
                return Err(format!("the {kind} server is single-threaded").into());
            }
            if kind == "monoio" {
                serve_monoio::run(addr, buf)?;
            } else {
                serve_uring::run(addr, buf)?;
            }
        }
        lean if lean == "lean" || lean.starts_with("lean+") => {
            if args.value::<usize>("--threads")?.is_some() || current_thread {
                return Err("the lean server is single-threaded".into());
            }
            serve_uring_lean::run(addr, buf, lean)?;
        }
        "tokio-http" | "may-http" => {
            if args.value::<usize>("--buf")?.is_some() || current_thread {
                return Err(
                    "--buf and --current-thread apply to the tokio echo servers only".into(),
                );
            }
            if kind == "tokio-http" {
                serve_tokio_http::run(addr, threads)?;
            } else {
                serve_may_http::run(addr, threads)?;
            }
        }
        other => {
            return Err(format!(
                "unknown server {other:?}: expected tokio, tokio-blocking, tokio-udp, epoll, \
                 monoio, uring, tokio-http, may-http or http-floor"
            )
            .into())
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The servers bind loopback only.
fn loopback(url: &str, addr: SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: the peer servers bind loopback addresses only").into());
    }
    Ok(())
}

fn required<T>(value: Option<T>, name: &str) -> Result<T> {
    value.ok_or_else(|| format!("{name} is required\n{USAGE}").into())
}

fn load(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--conns",
            "--size",
            "--seconds",
            "--threads",
            "--warmup",
            "--pid",
            "--client",
            "--cpu",
        ],
        &[],
    )?;
    let [url] = args.positional(&["URL"])? else {
        unreachable!("positional() checked the count")
    };
    let (udp, addr) = parse_endpoint(url)?;
    let client = client_option(&args, udp)?;
    if let Some(cpu) = args.value::<usize>("--cpu")? {
        bench_servers::pin_to(Some(cpu))?;
    }
    let cfg = load::LoadConfig {
        addr,
        udp,
        conns: required(args.value("--conns")?, "--conns")?,
        size: required(args.value("--size")?, "--size")?,
        duration: seconds(
            required(args.value("--seconds")?, "--seconds")?,
            "--seconds",
        )?,
        warmup: seconds(args.value("--warmup")?.unwrap_or(0.5), "--warmup")?,
        threads: args.value("--threads")?.unwrap_or(1),
        server_pid: args.value("--pid")?,
        other_pids: Vec::new(),
        client,
    };
    let report = load::run(&cfg)?;
    println!(
        "{} {} × {} B, {:.1} s: {} round trips, {}",
        cfg.conns,
        if udp { "UDP sockets" } else { "conns" },
        cfg.size,
        cfg.duration.as_secs_f64(),
        report.messages,
        report.summary()
    );
    for e in &report.error_samples {
        println!("  error: {e}");
    }
    Ok(if report.errors == 0 && report.stalled == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--client mio|uring` (mio by default; TCP only).
fn client_option(args: &Args, udp: bool) -> Result<load::Client> {
    let client = match args.value::<String>("--client")? {
        Some(text) => load::Client::parse(&text)?,
        None => load::Client::default(),
    };
    if udp && client != load::Client::Mio {
        return Err("--client applies to TCP load only".into());
    }
    Ok(client)
}

fn http_load(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--conns",
            "--depth",
            "--seconds",
            "--warmup",
            "--path",
            "--pid",
        ],
        &[],
    )?;
    let [url] = args.positional(&["URL"])? else {
        unreachable!("positional() checked the count")
    };
    let cfg = http_load::HttpLoadConfig {
        addr: parse_url(url)?,
        path: args
            .value::<String>("--path")?
            .unwrap_or_else(|| "/plaintext".to_string()),
        conns: args.value("--conns")?.unwrap_or(256),
        depth: args.value("--depth")?.unwrap_or(16),
        duration: seconds(args.value("--seconds")?.unwrap_or(3.0), "--seconds")?,
        warmup: seconds(args.value("--warmup")?.unwrap_or(1.0), "--warmup")?,
        server_pid: args.value("--pid")?,
    };
    let report = http_load::run(&cfg)?;
    println!(
        "{} conns × {} pipelined, {:.1} s: {} responses, {}",
        cfg.conns,
        cfg.depth,
        report.seconds,
        report.requests,
        report.summary()
    );
    Ok(if report.stalled == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn idle(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(argv, &["--conns", "--pid"], &[])?;
    let [url] = args.positional(&["URL"])? else {
        unreachable!("positional() checked the count")
    };
    let report = idle::run(
        parse_url(url)?,
        args.value("--conns")?.unwrap_or(10_000),
        required(args.value("--pid")?, "--pid")?,
    )?;
    println!("{}", report.summary());
    Ok(ExitCode::SUCCESS)
}

fn bench(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--ringloop",
            "--echo-pool",
            "--servers",
            "--peers",
            "--scenarios",
            "--title",
            "--ringloop-loops",
            "--tokio-threads",
            "--delay-ms",
            "--workers",
            "--rounds",
            "--seconds",
            "--load-threads",
            "--idle-conns",
            "--client",
        ],
        &[
            "--quick",
            "--skip-ringloop",
            "--udp",
            "--idle-only",
            "--pin",
        ],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let udp = args.switch("--udp");
    let skip = args.switch("--skip-ringloop");
    let list = |name: &str, default: &str| -> Result<Vec<String>> {
        Ok(args
            .value::<String>(name)?
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    };
    let mut names = list(
        "--servers",
        if udp {
            "ringloop,tokio-udp"
        } else {
            "ringloop,tokio,epoll"
        },
    )?;
    let is_ringloop = |n: &str| n.starts_with("ringloop") || n == "echo-pool";
    if skip {
        if args.value::<PathBuf>("--ringloop")?.is_some() {
            return Err("--ringloop and --skip-ringloop exclude each other".into());
        }
        names.retain(|n| !is_ringloop(n));
    }
    let echo = args
        .value("--ringloop")?
        .unwrap_or_else(|| bench_servers::default_example("echo"));
    let echo_pool = args
        .value("--echo-pool")?
        .unwrap_or_else(|| echo.with_file_name("echo_pool"));
    let loops = args.value("--ringloop-loops")?.unwrap_or(2);
    let threads = args.value("--tokio-threads")?.unwrap_or(2);
    let delay_ms = args.value("--delay-ms")?.unwrap_or(1);
    let workers = args.value("--workers")?.unwrap_or(50);
    if loops == 0 || threads == 0 || workers == 0 {
        return Err("--ringloop-loops, --tokio-threads and --workers must be at least 1".into());
    }
    let harness = std::env::current_exe()?;
    let binary = |path: &PathBuf, example: &str| -> Result<PathBuf> {
        if path.is_file() {
            Ok(path.clone())
        } else {
            Err(format!(
                "ringloop's {example} server is not at {}.\n\
                 Build it with `cargo build --release --example {example} -p ringloop`, \
                 point --ringloop / --echo-pool at it, or pass --skip-ringloop to compare the peers only.",
                path.display()
            )
            .into())
        }
    };
    let mut servers = Vec::new();
    for name in &names {
        let ringloop = |reuseport: bool, et: Option<bool>| -> Result<Kind> {
            Ok(Kind::Ringloop {
                path: binary(&echo, "echo")?,
                loops,
                reuseport,
                et,
            })
        };
        let kind = match name.as_str() {
            // Neither `--et` nor `--lt`: the echo's default mode
            // (edge-triggered on epoll).
            "ringloop" => ringloop(false, None)?,
            "ringloop-reuseport" => ringloop(true, None)?,
            "ringloop-et" => ringloop(false, Some(true))?,
            "ringloop-reuseport-et" => ringloop(true, Some(true))?,
            "ringloop-lt" => ringloop(false, Some(false))?,
            "ringloop-reuseport-lt" => ringloop(true, Some(false))?,
            "echo-pool" => Kind::EchoPool {
                path: binary(&echo_pool, "echo_pool")?,
                loops,
                delay_ms,
                workers,
            },
            "tokio" | "tokio-udp" => Kind::Tokio {
                harness: harness.clone(),
                threads,
                blocking: None,
            },
            "tokio-blocking" => Kind::Tokio {
                harness: harness.clone(),
                threads,
                blocking: Some((delay_ms, workers)),
            },
            "epoll" => Kind::Epoll {
                harness: harness.clone(),
            },
            // Single-threaded io_uring peers: monoio, and ringloop's io_uring
            // groundwork driven directly (issue 14).
            "monoio" | "uring" => Kind::command(&harness, &["serve", name.as_str(), "{url}"]),
            // The cheapest io_uring echo, its techniques in the name
            // (`lean+fixed+regring`, see serve_uring_lean.rs).
            lean if lean == "lean" || lean.starts_with("lean+") => {
                Kind::command(&harness, &["serve", lean, "{url}"])
            }
            // ringloop's echo pinned to one driver (issue 14).
            "ringloop-epoll" | "ringloop-io-uring" => {
                let driver = name.trim_start_matches("ringloop-");
                let loops = loops.to_string();
                Kind::command(
                    binary(&echo, "echo")?,
                    &["{url}", "--loops", &loops, "--backend", driver],
                )
            }
            other => {
                return Err(format!(
                    "unknown server {other:?}: expected ringloop, ringloop-epoll, ringloop-io-uring, \
                     ringloop-reuseport, ringloop-et, ringloop-reuseport-et, ringloop-lt, ringloop-reuseport-lt, echo-pool, tokio, tokio-blocking, tokio-udp, epoll, \
                     monoio, uring or lean[+…]"
                )
                .into())
            }
        };
        let udp_capable = matches!(name.as_str(), "ringloop" | "tokio-udp");
        if udp && !udp_capable {
            return Err(format!(
                "{name} does not serve UDP; with --udp use ringloop and tokio-udp"
            )
            .into());
        }
        if !udp && name == "tokio-udp" {
            return Err("tokio-udp needs --udp".into());
        }
        servers.push(Server::new(name.clone(), kind, udp));
    }
    if servers.is_empty() {
        return Err("no servers to compare".into());
    }
    let scenarios = match args.value::<String>("--scenarios")? {
        None => bench::SCENARIOS.to_vec(),
        Some(text) => text
            .split(',')
            .map(bench::Scenario::parse)
            .collect::<Result<Vec<_>>>()?,
    };
    let idle_only = args.switch("--idle-only");
    let cfg = bench::BenchConfig {
        title: args.value("--title")?.unwrap_or_else(|| {
            if idle_only {
                "Idle-connection memory (loopback)"
            } else {
                "Echo benchmark (loopback)"
            }
            .to_string()
        }),
        servers,
        peers: list("--peers", if udp { "tokio-udp" } else { "tokio,epoll" })?,
        scenarios,
        ringloop_skipped: skip,
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 3 }),
        warmup: Duration::from_millis(500),
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 2.0 } else { 5.0 }),
            "--seconds",
        )?,
        load_threads: args.value("--load-threads")?.unwrap_or(1),
        idle_conns: args.value("--idle-conns")?.unwrap_or(10_000),
        idle_only,
        client: client_option(&args, udp)?,
        pin: args.switch("--pin"),
    };
    if idle_only && (cfg.idle_conns == 0 || udp) {
        return Err(
            "--idle-only with --idle-conns 0 or --udp leaves nothing to run \
             (the idle-memory test is TCP only)"
                .into(),
        );
    }
    if cfg.rounds == 0 || cfg.load_threads == 0 || cfg.duration.is_zero() {
        return Err("--rounds, --load-threads and --seconds must be above zero".into());
    }
    Ok(if bench::run(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn soak(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--server",
            "--seconds",
            "--loops",
            "--idle-timeout-ms",
            "--echo-conns",
        ],
        &[],
    )?;
    args.positional(&[])?;
    // By default the soak server built next to this binary.
    let server = match args.value::<PathBuf>("--server")? {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("soak-server"),
    };
    let cfg = soak::SoakConfig {
        server,
        duration: seconds(args.value("--seconds")?.unwrap_or(180.0), "--seconds")?,
        loops: args.value("--loops")?.unwrap_or(2),
        idle_timeout: Duration::from_millis(args.value("--idle-timeout-ms")?.unwrap_or(2000)),
        echo_conns: args.value("--echo-conns")?.unwrap_or(50),
    };
    if cfg.duration < Duration::from_secs(10) || cfg.loops == 0 || cfg.echo_conns == 0 {
        return Err("--seconds must be at least 10, --loops and --echo-conns at least 1".into());
    }
    if cfg.idle_timeout < Duration::from_millis(100) {
        return Err("--idle-timeout-ms must be at least 100".into());
    }
    Ok(if soak::run(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn proxy_bench(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--ringloop",
            "--haproxy",
            "--threads",
            "--rounds",
            "--seconds",
            "--load-threads",
        ],
        &["--quick", "--skip-haproxy", "--no-direct", "--calibrate"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let ringloop = ringloop_example(&args, "proxy")?;
    let haproxy = if args.switch("--skip-haproxy") {
        if args.value::<PathBuf>("--haproxy")?.is_some() {
            return Err("--haproxy and --skip-haproxy exclude each other".into());
        }
        None
    } else {
        let path = match args.value::<PathBuf>("--haproxy")? {
            Some(p) => p,
            None => tools::find_on_path("haproxy").ok_or(
                "haproxy is not installed (not in PATH): install it (`apt-get install -y haproxy`), \
                 point --haproxy at it, or pass --skip-haproxy to run ringloop alone",
            )?,
        };
        if !path.is_file() {
            return Err(format!("HAProxy is not at {}", path.display()).into());
        }
        Some(path)
    };
    if args.switch("--calibrate") && haproxy.is_none() {
        return Err("--calibrate compares HAProxy with itself: it needs HAProxy".into());
    }
    let threads = match args.value::<String>("--threads")? {
        None => vec![1, 2],
        Some(list) => list
            .split(',')
            .map(|n| match n.trim().parse::<usize>() {
                Ok(n @ 1..=64) => Ok(n),
                _ => Err(format!(
                    "--threads {list:?}: expected a list like 1,2 (each 1 to 64)"
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
    };
    let cfg = proxy_bench::ProxyBenchConfig {
        ringloop,
        haproxy,
        threads,
        direct: !args.switch("--no-direct"),
        calibrate: args.switch("--calibrate"),
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 3 }),
        warmup: Duration::from_millis(500),
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 2.0 } else { 5.0 }),
            "--seconds",
        )?,
        load_threads: args.value("--load-threads")?.unwrap_or(1),
    };
    if cfg.rounds == 0 || cfg.load_threads == 0 || cfg.duration.is_zero() {
        return Err("--rounds, --load-threads and --seconds must be above zero".into());
    }
    Ok(if proxy_bench::run(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The ringloop example binary to benchmark: `--ringloop PATH` or the
/// release build of `example` under the target directory.
fn ringloop_example(args: &Args, example: &str) -> Result<PathBuf> {
    let path = args
        .value("--ringloop")?
        .unwrap_or_else(|| bench_servers::default_example(example));
    if !path.is_file() {
        return Err(format!(
            "ringloop's {example} server is not at {}.\n\
             Build it with `cargo build --release --example {example} -p ringloop` \
             or point --ringloop at it.",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn bench_http(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--ringloop",
            "--loops",
            "--threads",
            "--rounds",
            "--seconds",
            "--warmup",
            "--conns",
            "--depth",
            "--client",
        ],
        &["--quick", "--skip-may", "--pin", "--floor"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let ringloop = ringloop_example(&args, "http")?;
    let loops: usize = args.value("--loops")?.unwrap_or(2);
    let threads: usize = args.value("--threads")?.unwrap_or(2);
    let harness = std::env::current_exe()?;
    let (loops, threads) = (loops.to_string(), threads.to_string());
    // ringloop's examples/http; tokio + httparse, a task per connection;
    // may_minihttp, a coroutine per connection.
    let mut servers = vec![
        Server::new(
            "ringloop",
            Kind::command(ringloop, &["{url}", "--loops", &loops]),
            false,
        ),
        Server::new(
            "tokio",
            Kind::command(
                &harness,
                &["serve", "tokio-http", "{url}", "--threads", &threads],
            ),
            false,
        ),
    ];
    if args.switch("--floor") {
        // The least a one-thread readiness server can do per request: what
        // no server can beat on this kernel path (serve_http_floor.rs).
        servers.push(Server::new(
            "floor",
            Kind::command(&harness, &["serve", "http-floor", "{url}"]),
            false,
        ));
    }
    if !args.switch("--skip-may") {
        servers.push(Server::new(
            "may",
            Kind::command(
                &harness,
                &["serve", "may-http", "{url}", "--threads", &threads],
            ),
            false,
        ));
    }
    let cfg = bench_servers::HttpConfig {
        peers: servers.iter().skip(1).map(|s| s.name.clone()).collect(),
        servers,
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 3 }),
        warmup: seconds(args.value("--warmup")?.unwrap_or(1.0), "--warmup")?,
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 2.0 } else { 5.0 }),
            "--seconds",
        )?,
        conns: args.value("--conns")?.unwrap_or(256),
        depth: args.value("--depth")?.unwrap_or(16),
        pin: args.switch("--pin"),
        client: match args.value::<String>("--client")?.as_deref() {
            None | Some("wrk") => bench_servers::HttpClient::Wrk,
            Some("harness") => bench_servers::HttpClient::Harness,
            Some(other) => {
                return Err(format!("--client {other:?}: expected wrk or harness").into())
            }
        },
    };
    if cfg.rounds == 0 || cfg.conns == 0 || cfg.depth == 0 || cfg.duration.is_zero() {
        return Err("--rounds, --conns, --depth and --seconds must be above zero".into());
    }
    Ok(if bench_servers::run_http(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench_kv(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(
        argv,
        &[
            "--ringloop",
            "--loops",
            "--rounds",
            "--requests",
            "--requests-p1",
            "--clients",
            "--keyspace",
        ],
        &["--quick"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let ringloop = ringloop_example(&args, "kv")?;
    if !tools::on_path("redis-server") {
        return Err("redis-server is not installed (Debian package `redis-server`)".into());
    }
    let loops: String = args.value("--loops")?.unwrap_or_else(|| "1,2".to_string());
    let loops: Vec<usize> = loops
        .split(',')
        .map(|n| n.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("--loops takes numbers separated by commas: {e}"))?;
    if loops.is_empty() || loops.contains(&0) {
        return Err("--loops needs at least one number, each at least 1".into());
    }
    let mut servers = Vec::new();
    for &n in &loops {
        let name = if loops.len() == 1 {
            "ringloop".to_string()
        } else {
            format!("ringloop-{n}")
        };
        let kind = Kind::command(&ringloop, &["{url}", "--loops", &n.to_string()]);
        servers.push(Server::new(name, kind, false));
    }
    // Debian's redis-server, no persistence.
    let dir = std::env::temp_dir().display().to_string();
    let redis = Kind::command(
        "redis-server",
        &[
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
        ],
    );
    servers.push(Server::new("redis", redis, false));
    let cfg = bench_servers::KvConfig {
        servers,
        peers: vec!["redis".to_string()],
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 3 }),
        requests_pipelined: args.value("--requests")?.unwrap_or(if quick {
            500_000
        } else {
            2_000_000
        }),
        requests_single: args.value("--requests-p1")?.unwrap_or(if quick {
            50_000
        } else {
            200_000
        }),
        clients: args.value("--clients")?.unwrap_or(50),
        keyspace: args.value("--keyspace")?,
    };
    if cfg.rounds == 0
        || cfg.requests_pipelined == 0
        || cfg.requests_single == 0
        || cfg.clients == 0
    {
        return Err("--rounds, --requests, --requests-p1 and --clients must be above zero".into());
    }
    Ok(if bench_servers::run_kv(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
