//! TLS benchmark: ringloop's echo example serving `tls://` against a tokio +
//! tokio-rustls echo server, same rustls version, same ring provider, same
//! server config (built by `ringloop::tls::ServerTls` from the same PEM),
//! one loop / one `current_thread` runtime each, alternated per round; and
//! ringloop's TLS-terminating proxy against HAProxy (`bind … ssl crt`).
//!
//! ```text
//! cargo build --release --example echo --example proxy     # in the repository root
//! cargo build --release --manifest-path benches/harness/Cargo.toml
//! target/release/tls-bench [--rounds 3] [--seconds 3] [--idle 2000] [--reuseport] [--et] [--acceptor-thread] [--backend epoll|io-uring] [--echo-bin PATH]
//! target/release/tls-bench proxy [--rounds 3] [--seconds 3] [--backend epoll|io-uring] [--proxy-bin PATH] [--haproxy PATH]
//! target/release/tls-bench callgrind [--echo-bin PATH] [--out DIR]
//! ```
//! (`benches/tls.sh` does all of it.) Default mode, each scenario reporting
//! the **server's** CPU (user + system, from `/proc/PID/stat`) per unit of
//! work, per round and as the median and range of the per-round ratios:
//! * `echo CxB`: C connections (blocking rustls clients, spread over 2
//!   threads, each with every message in flight at once) echo B-byte
//!   messages for `--seconds`; CPU per message;
//! * `handshakes`: 2 client threads each connect, complete a full handshake
//!   (no resumption: the client disables it), echo one byte and close, for
//!   `--seconds`; CPU per handshake;
//! * `idle`: `--idle` connections after their handshake and one echo; the
//!   server's RSS growth per connection;
//! * context switches of the server's threads per handshake (from
//!   `/proc/PID/task/*/status`): a thread hand-off per connection shows
//!   there even when the load drowns it in the CPU-time ratio.
//!
//! ringloop's one loop accepts inline (its default with one loop);
//! `--acceptor-thread` runs it with an acceptor thread handing connections
//! over instead; `--reuseport` with `--reuseport` (the loop accepts inline on
//! a SO_REUSEPORT listener); `--et` with `--et` (edge-triggered epoll, as
//! tokio's); `--backend io-uring` runs ringloop's echo (and proxy) on its
//! io_uring driver (default: the examples' own, epoll unless
//! `RINGLOOP_BACKEND` says otherwise).
//!
//! `proxy`: see [`proxy`]. `callgrind`: see [`callgrind`] (instructions,
//! which the machine's load does not change).
//!
//! Subcommand `serve-tokio PORT CERT KEY` is the tokio peer.

#[path = "tls_bench/callgrind.rs"]
mod callgrind;
#[path = "tls_bench/proxy.rs"]
mod proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
tls-bench: ringloop's TLS against tokio + tokio-rustls and HAProxy (server CPU from /proc)

  tls-bench [--rounds 3] [--seconds 3] [--idle 2000] [--reuseport] [--et] [--acceptor-thread] [--backend epoll|io-uring] [--only 512|16KiB] [--echo-bin PATH] [--tokio-bin PATH]
      echo 50x512 B and 100x16 KiB, full handshakes, idle RSS: ringloop's echo
      example (--loops 1, on the given driver) against tokio + tokio-rustls (current_thread);
      --only: just that echo scenario; --tokio-bin: run the tokio peer from that copy of
      tls-bench (its own pages: by default it shares the clients' code and ring's tables)
  tls-bench proxy [--rounds 3] [--seconds 3] [--backend epoll|io-uring] [--proxy-bin PATH] [--haproxy PATH]
      TLS-terminating proxy: examples/proxy (--listen tls:// --loops 1) against
      HAProxy (bind ... ssl crt, nbthread 1), both in front of `harness serve epoll`
  tls-bench callgrind [--backend epoll|io-uring] [--only LABEL] [--echo-bin PATH] [--out DIR] [--valgrind PATH]
      instructions per message and per handshake under valgrind --tool=callgrind,
      ringloop against tokio-rustls (two bounded loads each, differenced); --only:
      the scenarios whose label contains LABEL (`512`, `16KiB`, `handshakes`)
  tls-bench serve-tokio PORT CERT KEY
      the tokio + tokio-rustls echo peer

Binaries default to target/release/examples/{echo,proxy} of this repository;
build them with `cargo build --release --example echo --example proxy`.
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve-tokio") if args.len() == 4 => return serve_tokio(&args[1], &args[2], &args[3]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return Ok(());
        }
        _ => {}
    }
    let (mode, rest) = match args.first().map(String::as_str) {
        Some(m @ ("proxy" | "callgrind")) => (m, &args[1..]),
        _ => ("bench", &args[..]),
    };
    let opts = Opts::parse(rest)?;
    match mode {
        "proxy" => proxy::run(&opts),
        "callgrind" => callgrind::run(&opts),
        _ => bench(&opts),
    }
}

/// Command-line settings shared by the modes.
pub struct Opts {
    rounds: usize,
    time: Duration,
    idle: usize,
    reuseport: bool,
    edge_triggered: bool,
    acceptor_thread: bool,
    /// ringloop's driver (`--backend` of the echo example, `--driver` of
    /// the proxy's); `None`: the example's default.
    backend: Option<String>,
    /// Runs only the scenarios whose label contains this (`512`, `16KiB`,
    /// `handshakes`, `idle`): e.g. for counting one scenario's system calls
    /// over a server's whole life.
    only: Option<String>,
    echo_bin: PathBuf,
    proxy_bin: PathBuf,
    /// The executable the tokio peer runs from (`serve-tokio`); `None`:
    /// this one.
    tokio_bin: Option<PathBuf>,
    haproxy: Option<PathBuf>,
    valgrind: PathBuf,
    out: Option<PathBuf>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        const VALUED: [&str; 12] = [
            "--backend",
            "--only",
            "--rounds",
            "--seconds",
            "--idle",
            "--echo-bin",
            "--proxy-bin",
            "--tokio-bin",
            "--haproxy",
            "--valgrind",
            "--out",
            "--threads",
        ];
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                a if VALUED.contains(&a) => i += 2,
                "--reuseport" | "--et" | "--acceptor-thread" => i += 1,
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        let value = |name: &str| -> Option<String> {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let example = |name: &str| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/release/examples"
            ))
            .join(name)
        };
        Ok(Opts {
            rounds: value("--rounds").map_or(Ok(3), |v| v.parse())?,
            time: Duration::from_secs(value("--seconds").map_or(Ok(3), |v| v.parse())?),
            idle: value("--idle").map_or(Ok(2000), |v| v.parse())?,
            reuseport: args.iter().any(|a| a == "--reuseport"),
            edge_triggered: args.iter().any(|a| a == "--et"),
            acceptor_thread: args.iter().any(|a| a == "--acceptor-thread"),
            backend: value("--backend"),
            only: value("--only"),
            echo_bin: value("--echo-bin").map_or_else(|| example("echo"), PathBuf::from),
            proxy_bin: value("--proxy-bin").map_or_else(|| example("proxy"), PathBuf::from),
            tokio_bin: value("--tokio-bin").map(PathBuf::from),
            haproxy: value("--haproxy").map(PathBuf::from),
            valgrind: value("--valgrind").map_or_else(|| PathBuf::from("valgrind"), PathBuf::from),
            out: value("--out").map(PathBuf::from),
        })
    }
}

impl Opts {
    /// Whether the scenario `label` runs (see `--only`).
    fn runs(&self, label: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| label.contains(o.as_str()))
    }
}

/// `path` must exist; says how to build it otherwise.
fn need(path: &Path, build: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!("{} missing: {build}", path.display()).into())
    }
}

// ----- the tokio + tokio-rustls peer -----

fn serve_tokio(port: &str, cert: &str, key: &str) -> Result<()> {
    let config = ringloop::tls::ServerTls::from_pem_files(cert, key)?.build()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        println!("tokio-tls listening on {port}");
        let serve = async move {
            loop {
                let (sock, _) = listener.accept().await?;
                let _ = sock.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        // Ctrl-C ends it normally (so callgrind writes its profile).
        tokio::select! {
            result = serve => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

// ----- the driver -----

/// A self-signed certificate for `localhost` in a temporary directory, and
/// a client config that trusts it and never resumes (full handshakes).
pub struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Pki {
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki() -> Result<Pki> {
    let dir = std::env::temp_dir().join(format!("tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    std::fs::write(dir.join("cert.pem"), cert.cert.pem())?;
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem())?;
    let mut client = ringloop::tls::client_config(cert.cert.pem().as_bytes())?;
    client.resumption = Resumption::disabled();
    Ok(Pki {
        dir,
        client: Arc::new(client),
    })
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process this benchmark started (stopped by its pid).
pub struct Server {
    name: String,
    child: Child,
    addr: SocketAddr,
}

/// Starts `cmd` and waits (up to `patience`) until `port` accepts.
fn spawn(name: &str, mut cmd: Command, port: u16, patience: Duration) -> Result<Server> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + patience;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not start").into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Server {
        name: name.to_string(),
        child,
        addr,
    })
}

/// The command line of the echo server `name` ("ringloop" or "tokio-tls").
fn echo_command(name: &str, opts: &Opts, pki: &Pki, port: u16) -> Result<Command> {
    Ok(match name {
        "ringloop" => {
            let mut c = Command::new(&opts.echo_bin);
            c.arg(format!("tls://127.0.0.1:{port}"))
                .args(["--loops", "1", "--tls-cert"])
                .arg(pki.cert())
                .arg("--tls-key")
                .arg(pki.key());
            if opts.reuseport {
                c.arg("--reuseport");
            }
            if opts.edge_triggered {
                c.arg("--et");
            }
            if opts.acceptor_thread {
                c.arg("--acceptor-thread");
            }
            if let Some(backend) = &opts.backend {
                c.args(["--backend", backend]);
            }
            c
        }
        _ => {
            let exe = match &opts.tokio_bin {
                Some(path) => path.clone(),
                None => std::env::current_exe()?,
            };
            let mut c = Command::new(exe);
            c.arg("serve-tokio")
                .arg(port.to_string())
                .arg(pki.cert())
                .arg(pki.key());
            c
        }
    })
}

impl Server {
    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
    }
    /// Context switches (voluntary and not) of all the server's threads so
    /// far: what a thread hand-off per connection costs shows here whatever
    /// the load (a CPU-time ratio drowns it on a loaded machine).
    fn switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter_map(|l| {
                        l.strip_prefix("voluntary_ctxt_switches:")
                            .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }
    fn stop(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
    /// Ctrl-C, then waits up to `patience` for a clean exit (killed after).
    fn interrupt(mut self, patience: Duration) -> Result<()> {
        self.signal(nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + patience;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.stop();
                return Err("the server did not stop on Ctrl-C".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<Tls> {
    let conn = ClientConnection::new(config.clone(), ServerName::try_from("localhost")?)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// How long a load runs.
#[derive(Clone, Copy)]
pub enum Until {
    /// A measured window (the connections are made before it starts).
    Elapsed(Duration),
    /// This many messages per connection.
    Messages(u64),
}

/// `conns` connections over 2 threads echo `size`-byte messages; returns
/// the messages echoed in the measured window and the server CPU (`cpu`)
/// used meanwhile. The connections (and their handshakes) are made first.
fn echo(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    conns: usize,
    size: usize,
    until: Until,
    cpu: &dyn Fn() -> Duration,
) -> Result<(u64, Duration)> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut streams: Vec<Vec<Tls>> = vec![Vec::new(), Vec::new()];
    for i in 0..conns {
        streams[i % 2].push(connect(config, addr)?);
    }
    let rounds = match until {
        Until::Messages(n) => n,
        Until::Elapsed(_) => u64::MAX,
    };
    let cpu0 = cpu();
    for mut group in streams {
        let (done, stop) = (done.clone(), stop.clone());
        threads.push(thread::spawn(move || -> std::io::Result<()> {
            let msg = vec![0x5a; size];
            let mut back = vec![0u8; size];
            for _ in 0..rounds {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for s in group.iter_mut() {
                    s.write_all(&msg)?;
                    s.flush()?;
                }
                for s in group.iter_mut() {
                    s.read_exact(&mut back)?;
                }
                done.fetch_add(group.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let window = match until {
        Until::Elapsed(time) => {
            let (start, cpu_start) = (done.load(Ordering::Relaxed), cpu());
            thread::sleep(time);
            let (end, cpu_end) = (done.load(Ordering::Relaxed), cpu());
            stop.store(true, Ordering::Relaxed);
            Some((end - start, cpu_end.saturating_sub(cpu_start)))
        }
        Until::Messages(_) => None,
    };
    for t in threads {
        t.join().map_err(|_| "echo client panicked")??;
    }
    Ok(window.unwrap_or_else(|| (done.load(Ordering::Relaxed), cpu().saturating_sub(cpu0))))
}

/// One full handshake, one byte echoed, closed.
fn handshake_once(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<()> {
    let mut s = connect(config, addr)?;
    s.write_all(b"x")?;
    s.flush()?;
    let mut b = [0u8];
    s.read_exact(&mut b)?;
    Ok(())
}

/// 2 threads of full handshakes; returns handshakes done.
fn handshakes(config: &Arc<ClientConfig>, addr: SocketAddr, until: Until) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = match until {
        Until::Elapsed(time) => Some(Instant::now() + time),
        Until::Messages(_) => None,
    };
    let each = match until {
        Until::Messages(n) => n.div_ceil(2),
        Until::Elapsed(_) => u64::MAX,
    };
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (config, done) = (config.clone(), done.clone());
            thread::spawn(move || -> Result<()> {
                for _ in 0..each {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    handshake_once(&config, addr)?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "handshake client panicked")??;
    }
    Ok(done.load(Ordering::Relaxed))
}

/// Median, least and greatest of `v` (not empty).
pub fn median_range(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

/// "1.02 (0.97–1.10)": the median of per-round ratios and their range.
pub fn ratio_cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let (median, lo, hi) = median_range(v);
    format!("{median:.2} ({lo:.2}–{hi:.2})")
}

/// The load average, for the report.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn bench(opts: &Opts) -> Result<()> {
    need(&opts.echo_bin, "cargo build --release --example echo")?;
    let pki = pki()?;
    let names = ["ringloop", "tokio-tls"];
    let scenarios: [(&str, usize, usize); 2] =
        [("echo 50x512", 50, 512), ("echo 100x16KiB", 100, 16 * 1024)];
    // per_unit[server][scenario]: µs of server CPU per unit, one per round.
    let mut per_unit = vec![vec![Vec::new(); scenarios.len() + 1]; 2];
    let mut units = vec![vec![0u64; scenarios.len() + 1]; 2];
    let mut idle_kib = vec![Vec::new(); 2];
    // switches_per_handshake[server]: one figure per round.
    let mut switches_per_handshake = vec![Vec::new(); 2];
    let load_before = loadavg();
    for round in 0..opts.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for &s in &order {
            let port = free_port()?;
            let cmd = echo_command(names[s], opts, &pki, port)?;
            let server = spawn(names[s], cmd, port, Duration::from_secs(10))?;
            let mut record = |i: usize, n: u64, cpu: Duration| {
                units[s][i] += n;
                per_unit[s][i].push(cpu.as_secs_f64() * 1e6 / n.max(1) as f64);
            };
            for (i, &(label, conns, size)) in scenarios.iter().enumerate() {
                if !opts.runs(label) {
                    continue;
                }
                let probe = || server.cpu();
                let (n, cpu) = echo(
                    &pki.client,
                    server.addr,
                    conns,
                    size,
                    Until::Elapsed(opts.time),
                    &probe,
                )?;
                eprintln!(
                    "round {round} {:9} {label}: {n} msgs, {cpu:?} CPU",
                    server.name
                );
                record(i, n, cpu);
            }
            if !opts.runs("handshakes") && !opts.runs("idle") {
                server.stop();
                continue;
            }
            let (before, switched) = (server.cpu(), server.switches());
            let n = handshakes(&pki.client, server.addr, Until::Elapsed(opts.time))?;
            let cpu = server.cpu() - before;
            let switches = server.switches().saturating_sub(switched) as f64 / n.max(1) as f64;
            switches_per_handshake[s].push(switches);
            eprintln!(
                "round {round} {:9} handshakes: {n}, {cpu:?} CPU, {switches:.2} context switches each",
                server.name
            );
            record(scenarios.len(), n, cpu);
            // Idle connections: RSS growth per connection.
            let rss0 = server.rss_kib();
            let mut idle = Vec::new();
            for _ in 0..opts.idle {
                let mut c = connect(&pki.client, server.addr)?;
                c.write_all(b"x")?;
                c.flush()?;
                let mut b = [0u8];
                c.read_exact(&mut b)?;
                idle.push(c);
            }
            thread::sleep(Duration::from_millis(200));
            let per = (server.rss_kib().saturating_sub(rss0)) as f64 / opts.idle.max(1) as f64;
            eprintln!(
                "round {round} {:9} idle: {per:.1} KiB per connection",
                server.name
            );
            idle_kib[s].push(per);
            drop(idle);
            server.stop();
        }
    }
    println!(
        "TLS benchmark: {} rounds x {}s, alternated{}{}{}; load average {} before, {} after\n",
        opts.rounds,
        opts.time.as_secs(),
        match (opts.reuseport, opts.edge_triggered) {
            (true, true) => ", ringloop --reuseport --et",
            (true, false) => ", ringloop --reuseport",
            (false, true) => ", ringloop --et",
            (false, false) => "",
        },
        if opts.acceptor_thread {
            ", ringloop --acceptor-thread"
        } else {
            ""
        },
        opts.backend
            .as_ref()
            .map_or(String::new(), |b| format!(", ringloop --backend {b}")),
        load_before,
        loadavg()
    );
    println!("| scenario | ringloop units | tokio-tls units | ringloop CPU/unit (median) | tokio-tls CPU/unit (median) | ratio ringloop / tokio: median (range) over rounds |");
    println!("|---|---|---|---|---|---|");
    let labels: Vec<&str> = scenarios
        .iter()
        .map(|s| s.0)
        .chain(["handshakes"])
        .collect();
    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect()
    };
    for (i, label) in labels.iter().enumerate() {
        println!(
            "| {label} | {} | {} | {:.2} µs | {:.2} µs | {} |",
            units[0][i],
            units[1][i],
            median_range(&per_unit[0][i]).0,
            median_range(&per_unit[1][i]).0,
            ratio_cell(&ratios(&per_unit[0][i], &per_unit[1][i]))
        );
    }
    println!(
        "| idle connection RSS ({} connections) | | | {:.1} KiB | {:.1} KiB | {} |",
        opts.idle,
        median_range(&idle_kib[0]).0,
        median_range(&idle_kib[1]).0,
        ratio_cell(&ratios(&idle_kib[0], &idle_kib[1]))
    );
    println!(
        "| context switches per handshake (server threads) | | | {:.2} | {:.2} | {} |",
        median_range(&switches_per_handshake[0]).0,
        median_range(&switches_per_handshake[1]).0,
        ratio_cell(&ratios(
            &switches_per_handshake[0],
            &switches_per_handshake[1]
        ))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        assert_eq!(median_range(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_range(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(ratio_cell(&[1.0, 0.9, 1.2]), "1.00 (0.90–1.20)");
        assert_eq!(ratio_cell(&[]), "n/a");
    }

    #[test]
    fn options() {
        let args: Vec<String> = ["--rounds", "5", "--et", "--idle", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let opts = Opts::parse(&args).unwrap();
        assert_eq!((opts.rounds, opts.idle), (5, 10));
        assert!(opts.edge_triggered && !opts.reuseport);
        assert_eq!(opts.time, Duration::from_secs(3));
        assert!(Opts::parse(&["--bogus".to_string()]).is_err());
    }
}
