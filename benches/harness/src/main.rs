//! `harness`: ringloop's end-to-end benchmarks on loopback. It serves the
//! peer echo servers (tokio, a hand-written mio loop), generates verified
//! closed-loop load, measures idle-connection memory, and runs the whole
//! side-by-side comparisons: echo servers (`bench`), and ringloop's proxy
//! against HAProxy (`proxy-bench`). See `README.md` next to this crate.

mod args;
mod bench;
mod connect;
mod hist;
mod idle;
mod load;
mod pattern;
mod procfs;
mod proxy_bench;
mod serve_epoll;
mod serve_tokio;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use args::{parse_url, seconds, Args};

/// Errors of this tool: a message for the user.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage:
  harness serve tokio tcp://127.0.0.1:PORT [--threads 2] [--buf 16384]
  harness serve epoll tcp://127.0.0.1:PORT
  harness load tcp://127.0.0.1:PORT --conns C --size S --seconds T
               [--threads 1] [--warmup 0.5] [--pid SERVER_PID]
  harness idle tcp://127.0.0.1:PORT --conns 10000 --pid SERVER_PID
  harness bench [--quick] [--ringloop PATH | --skip-ringloop]
                [--rounds N] [--seconds T] [--load-threads N] [--idle-conns N]
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
    match command.as_str() {
        "serve" => serve(rest),
        "load" => load(rest),
        "idle" => idle(rest),
        "bench" => bench(rest),
        "proxy-bench" => proxy_bench(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

fn serve(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(argv, &["--threads", "--buf"], &[])?;
    let [kind, url] = args.positional(&["tokio|epoll", "URL"])? else {
        unreachable!("positional() checked the count")
    };
    let addr = loopback(url)?;
    match kind.as_str() {
        "tokio" => {
            let threads = args.value("--threads")?.unwrap_or(2);
            let buf = args.value("--buf")?.unwrap_or(serve_tokio::DEFAULT_BUF);
            if threads == 0 || buf == 0 {
                return Err("--threads and --buf must be at least 1".into());
            }
            serve_tokio::run(addr, threads, buf)?;
        }
        "epoll" => {
            if args.value::<usize>("--threads")?.is_some()
                || args.value::<usize>("--buf")?.is_some()
            {
                return Err(
                    "the epoll server is single-threaded with one shared buffer; \
                            --threads and --buf do not apply"
                        .into(),
                );
            }
            serve_epoll::run(addr)?;
        }
        other => return Err(format!("unknown server {other:?}: expected tokio or epoll").into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The servers bind loopback only.
fn loopback(url: &str) -> Result<SocketAddr> {
    let addr = parse_url(url)?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: the peer servers bind loopback addresses only").into());
    }
    Ok(addr)
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
    let cfg = load::LoadConfig {
        addr: parse_url(url)?,
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
    };
    let report = load::run(&cfg)?;
    println!(
        "{} conns × {} B, {:.1} s: {} round trips, {}",
        cfg.conns,
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
            "--rounds",
            "--seconds",
            "--load-threads",
            "--idle-conns",
        ],
        &["--quick", "--skip-ringloop"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let ringloop = if args.switch("--skip-ringloop") {
        if args.value::<PathBuf>("--ringloop")?.is_some() {
            return Err("--ringloop and --skip-ringloop exclude each other".into());
        }
        None
    } else {
        let path = args.value("--ringloop")?.unwrap_or_else(default_ringloop);
        if !path.is_file() {
            return Err(format!(
                "ringloop's echo server is not at {}.\n\
                 Build it with `cargo build --release --example echo -p ringloop` (examples/echo.rs), \
                 point --ringloop at it, or pass --skip-ringloop to compare tokio and epoll only.",
                path.display()
            )
            .into());
        }
        Some(path)
    };
    let cfg = bench::BenchConfig {
        ringloop,
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
    let ringloop = args
        .value("--ringloop")?
        .unwrap_or_else(|| release_example("proxy"));
    if !ringloop.is_file() {
        return Err(format!(
            "ringloop's proxy is not at {}.\n\
             Build it with `cargo build --release --example proxy -p ringloop` or point --ringloop at it.",
            ringloop.display()
        )
        .into());
    }
    let haproxy = if args.switch("--skip-haproxy") {
        if args.value::<PathBuf>("--haproxy")?.is_some() {
            return Err("--haproxy and --skip-haproxy exclude each other".into());
        }
        None
    } else {
        let path = match args.value::<PathBuf>("--haproxy")? {
            Some(p) => p,
            None => find_in_path("haproxy").ok_or(
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
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 2 }),
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

/// The first `name` in `$PATH` that is a file.
fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `target/release/examples/echo` under the workspace root, or under
/// `$CARGO_TARGET_DIR` when that is set (relative to the workspace root).
fn default_ringloop() -> PathBuf {
    release_example("echo")
}

/// `target/release/examples/NAME` under the workspace root, or under
/// `$CARGO_TARGET_DIR` when that is set (relative to the workspace root).
fn release_example(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // benches/harness -> the workspace root.
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("release/examples").join(name)
}
