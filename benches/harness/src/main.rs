//! `harness`: ringloop's end-to-end benchmarks on loopback. For echo it
//! serves the peer echo servers (tokio, a hand-written mio loop), generates
//! verified closed-loop load, measures idle-connection memory, and runs the
//! whole side-by-side comparison. For the HTTP and Redis-protocol examples
//! it serves the peer HTTP servers (tokio + httparse, may_minihttp) and runs
//! `wrk` and `redis-benchmark` against them, `redis-server` and ringloop.
//! See `README.md` next to this crate.

mod args;
mod bench;
mod bench_servers;
mod connect;
mod hist;
mod idle;
mod load;
mod pattern;
mod procfs;
mod serve_epoll;
mod serve_may_http;
mod serve_tokio;
mod serve_tokio_http;
mod server;
mod soak;
mod stream;
mod tools;

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
  harness serve tokio-http tcp://127.0.0.1:PORT [--threads 2]
  harness serve may-http tcp://127.0.0.1:PORT [--threads 2]
  harness load tcp://127.0.0.1:PORT --conns C --size S --seconds T
               [--threads 1] [--warmup 0.5] [--pid SERVER_PID]
  harness idle tcp://127.0.0.1:PORT --conns 10000 --pid SERVER_PID
  harness bench [--quick] [--ringloop PATH | --skip-ringloop]
                [--rounds N] [--seconds T] [--load-threads N] [--idle-conns N]
                [--idle-only]
  harness bench-http [--quick] [--ringloop PATH] [--loops 2] [--threads 2] [--skip-may]
                     [--rounds N] [--seconds T] [--warmup T] [--conns 256] [--depth 16]
  harness bench-kv [--quick] [--ringloop PATH] [--loops 1,2] [--rounds N]
                   [--requests N] [--requests-p1 N] [--clients 50] [--keyspace N]
  harness soak [--server PATH] [--seconds 180] [--loops 2]
               [--idle-timeout-ms 2000] [--echo-conns 50]
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
        "bench-http" => bench_http(rest),
        "bench-kv" => bench_kv(rest),
        "soak" => soak(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

fn serve(argv: &[String]) -> Result<ExitCode> {
    let args = Args::parse(argv, &["--threads", "--buf"], &[])?;
    let [kind, url] = args.positional(&["tokio|epoll|tokio-http|may-http", "URL"])? else {
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
        "tokio-http" | "may-http" => {
            if args.value::<usize>("--buf")?.is_some() {
                return Err("--buf applies to the tokio echo server only".into());
            }
            let threads = args.value("--threads")?.unwrap_or(2);
            if threads == 0 {
                return Err("--threads must be at least 1".into());
            }
            if kind == "tokio-http" {
                serve_tokio_http::run(addr, threads)?;
            } else {
                serve_may_http::run(addr, threads)?;
            }
        }
        other => {
            return Err(format!(
                "unknown server {other:?}: expected tokio, epoll, tokio-http or may-http"
            )
            .into())
        }
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
        &["--quick", "--skip-ringloop", "--idle-only"],
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
        idle_only: args.switch("--idle-only"),
    };
    if cfg.idle_only && cfg.idle_conns == 0 {
        return Err("--idle-only with --idle-conns 0 leaves nothing to run".into());
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
        ],
        &["--quick", "--skip-may"],
    )?;
    args.positional(&[])?;
    let quick = args.switch("--quick");
    let ringloop = ringloop_example(&args, "http")?;
    let loops: usize = args.value("--loops")?.unwrap_or(2);
    let threads: usize = args.value("--threads")?.unwrap_or(2);
    let harness = std::env::current_exe()?;
    let (loops_s, threads_s) = (loops.to_string(), threads.to_string());
    let mut servers = vec![
        server::Server::new(
            "ringloop",
            format!("ringloop examples/http ({loops} loops)"),
            ringloop,
            &["{url}", "--loops", &loops_s],
        ),
        server::Server::new(
            "tokio",
            format!("tokio + httparse ({threads} worker threads, a task per connection)"),
            harness.clone(),
            &["serve", "tokio-http", "{url}", "--threads", &threads_s],
        ),
    ];
    if !args.switch("--skip-may") {
        servers.push(server::Server::new(
            "may",
            format!("may_minihttp ({threads} worker threads, a coroutine per connection)"),
            harness,
            &["serve", "may-http", "{url}", "--threads", &threads_s],
        ));
    }
    let cfg = bench_servers::HttpConfig {
        peers: servers.iter().skip(1).map(|s| s.name).collect(),
        servers,
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 2 }),
        warmup: seconds(args.value("--warmup")?.unwrap_or(1.0), "--warmup")?,
        duration: seconds(
            args.value("--seconds")?
                .unwrap_or(if quick { 2.0 } else { 5.0 }),
            "--seconds",
        )?,
        conns: args.value("--conns")?.unwrap_or(256),
        depth: args.value("--depth")?.unwrap_or(16),
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
        // Names live as long as the process; a few bytes.
        let name: &'static str = if loops.len() == 1 {
            "ringloop"
        } else {
            Box::leak(format!("ringloop-{n}").into_boxed_str())
        };
        let n_s = n.to_string();
        servers.push(server::Server::new(
            name,
            format!(
                "ringloop examples/kv ({n} loop{})",
                if n == 1 { "" } else { "s" }
            ),
            ringloop.clone(),
            &["{url}", "--loops", &n_s],
        ));
    }
    let dir = std::env::temp_dir().display().to_string();
    servers.push(server::Server::new(
        "redis",
        "redis-server (Debian's, no persistence)",
        PathBuf::from("redis-server"),
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
    ));
    let cfg = bench_servers::KvConfig {
        servers,
        peers: vec!["redis"],
        rounds: args.value("--rounds")?.unwrap_or(if quick { 1 } else { 2 }),
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
