//! `harness`: ringloop's end-to-end echo benchmark on loopback. It serves the
//! peer echo servers (tokio, a hand-written mio loop), generates verified
//! closed-loop load, measures idle-connection memory, and runs the whole
//! side-by-side comparison. See `README.md` next to this crate.

mod args;
mod async_write;
mod bench;
mod connect;
mod hist;
mod idle;
mod load;
mod pattern;
mod procfs;
mod serve_epoll;
mod serve_tokio;
mod serve_tokio_udp;
mod server;
mod udp_load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
  harness load tcp://127.0.0.1:PORT|udp://127.0.0.1:PORT --conns C --size S --seconds T
               [--threads 1] [--warmup 0.5] [--pid SERVER_PID]
  harness idle tcp://127.0.0.1:PORT --conns 10000 --pid SERVER_PID
  harness bench [--quick] [--servers ringloop,tokio,epoll] [--peers tokio,epoll]
                [--scenarios 50x512,1000x512,100x16384] [--udp] [--title TEXT]
                [--ringloop PATH] [--echo-pool PATH] [--skip-ringloop]
                [--ringloop-loops 2] [--tokio-threads 2] [--delay-ms 1] [--workers 50]
                [--rounds N] [--seconds T] [--load-threads N] [--idle-conns N]
  harness async-write [--quick] [--title TEXT] [--loops 1] [--workers 2] [--conns 64] [--size 64]
                [--rates 20000,0] [--rounds 2] [--seconds 3] [--designs ringloop,naive]
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
    match command.as_str() {
        "serve" => serve(rest),
        "load" => load(rest),
        "idle" => idle(rest),
        "bench" => bench(rest),
        "async-write" => async_write::main(rest),
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
    let [kind, url] = args.positional(&["tokio|tokio-blocking|tokio-udp|epoll", "URL"])? else {
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
        other => {
            return Err(format!(
                "unknown server {other:?}: expected tokio, tokio-blocking, tokio-udp or epoll"
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
        ],
        &[],
    )?;
    let [url] = args.positional(&["URL"])? else {
        unreachable!("positional() checked the count")
    };
    let (udp, addr) = parse_endpoint(url)?;
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
        ],
        &["--quick", "--skip-ringloop", "--udp"],
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
    let echo = args.value("--ringloop")?.unwrap_or_else(default_ringloop);
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
        let ringloop = |reuseport: bool, et: bool| -> Result<Kind> {
            Ok(Kind::Ringloop {
                path: binary(&echo, "echo")?,
                loops,
                reuseport,
                et,
            })
        };
        let kind = match name.as_str() {
            "ringloop" => ringloop(false, false)?,
            "ringloop-reuseport" => ringloop(true, false)?,
            "ringloop-et" => ringloop(false, true)?,
            "ringloop-reuseport-et" => ringloop(true, true)?,
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
            other => {
                return Err(format!(
                    "unknown server {other:?}: expected ringloop, ringloop-reuseport, ringloop-et, \
                     ringloop-reuseport-et, echo-pool, tokio, tokio-blocking, tokio-udp or epoll"
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
    let cfg = bench::BenchConfig {
        title: args
            .value("--title")?
            .unwrap_or_else(|| "Echo benchmark (loopback)".to_string()),
        servers,
        peers: list("--peers", if udp { "tokio-udp" } else { "tokio,epoll" })?,
        scenarios,
        ringloop_skipped: skip,
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 2 }),
        warmup: Duration::from_millis(500),
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 2.0 } else { 5.0 }),
            "--seconds",
        )?,
        load_threads: args.value("--load-threads")?.unwrap_or(1),
        idle_conns: args.value("--idle-conns")?.unwrap_or(10_000),
    };
    if cfg.rounds == 0 || cfg.load_threads == 0 || cfg.duration.is_zero() {
        return Err("--rounds, --load-threads and --seconds must be above zero".into());
    }
    Ok(if bench::run(&cfg)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `target/release/examples/echo` under the workspace root, or under
/// `$CARGO_TARGET_DIR` when that is set (relative to the workspace root).
fn default_ringloop() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // benches/harness -> the workspace root.
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("release/examples/echo")
}
