//! TLS benchmark: ringloop's echo example serving `tls://` against a tokio +
//! tokio-rustls echo server, same rustls version, same ring provider, same
//! server config (built by `ringloop::tls::ServerTls` from the same PEM),
//! one loop / one `current_thread` runtime each, alternated per round.
//!
//! ```text
//! cargo build --release --example echo          # in the repository root
//! cargo run --release --bin tls-bench -- [--rounds 3] [--seconds 3] [--echo-bin PATH] [--reuseport]
//! ```
//! `--reuseport` runs ringloop's echo with `--reuseport`: its loop accepts
//! inline, with no acceptor thread handing connections over.
//!
//! Scenarios, each reporting the **server's** CPU (user + system, from
//! `/proc/PID/stat`) per unit of work:
//! * `echo CxB`: C connections (blocking rustls clients, spread over 2
//!   threads, each with every message in flight at once) echo B-byte
//!   messages for `--seconds`; CPU per message;
//! * `handshakes`: 2 client threads each connect, complete a full handshake
//!   (no resumption: the client disables it), echo one byte and close, for
//!   `--seconds`; CPU per handshake;
//! * `idle`: 1,000 connections after their handshake and one echo; the
//!   server's RSS growth per connection.
//!
//! Subcommand `serve-tokio PORT CERT KEY` is the tokio peer.

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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-tokio") {
        return serve_tokio(&args[1], &args[2], &args[3]);
    }
    let value = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let rounds: usize = value("--rounds", "3").parse()?;
    let seconds: u64 = value("--seconds", "3").parse()?;
    let echo_bin = PathBuf::from(value(
        "--echo-bin",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/examples/echo"
        ),
    ));
    let reuseport = args.iter().any(|a| a == "--reuseport");
    bench(rounds, Duration::from_secs(seconds), &echo_bin, reuseport)
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
    })
}

// ----- the driver -----

struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
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

struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

fn start(name: &'static str, echo_bin: &Path, pki: &Pki, reuseport: bool) -> Result<Server> {
    let port = free_port()?;
    let cert = pki.dir.join("cert.pem");
    let key = pki.dir.join("key.pem");
    let mut cmd = match name {
        "ringloop" => {
            let mut c = Command::new(echo_bin);
            c.arg(format!("tls://127.0.0.1:{port}"))
                .args(["--loops", "1", "--tls-cert"])
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key);
            if reuseport {
                c.arg("--reuseport");
            }
            c
        }
        _ => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("serve-tokio")
                .arg(port.to_string())
                .arg(&cert)
                .arg(&key);
            c
        }
    };
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{name} did not start").into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { name, child, addr })
}

impl Server {
    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
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
    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
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
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `conns` connections over 2 threads echo `size`-byte messages for `time`;
/// returns messages echoed.
fn echo(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    conns: usize,
    size: usize,
    time: Duration,
) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut streams: Vec<Vec<Tls>> = vec![Vec::new(), Vec::new()];
    for i in 0..conns {
        streams[i % 2].push(connect(config, addr)?);
    }
    for mut group in streams {
        let (done, stop) = (done.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let msg = vec![0x5a; size];
            let mut back = vec![0u8; size];
            while !stop.load(Ordering::Relaxed) {
                for s in group.iter_mut() {
                    s.write_all(&msg).expect("write");
                    s.flush().expect("flush");
                }
                for s in group.iter_mut() {
                    s.read_exact(&mut back).expect("read");
                }
                done.fetch_add(group.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    // Measured window only: the connections were made before.
    let start = done.load(Ordering::Relaxed);
    thread::sleep(time);
    let end = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "echo client panicked")?;
    }
    Ok(end - start)
}

/// 2 threads of full handshakes for `time`; returns handshakes done.
fn handshakes(config: &Arc<ClientConfig>, addr: SocketAddr, time: Duration) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + time;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (config, done) = (config.clone(), done.clone());
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let mut s = connect(&config, addr).expect("handshake");
                    s.write_all(b"x").unwrap();
                    s.flush().unwrap();
                    let mut b = [0u8];
                    s.read_exact(&mut b).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "handshake client panicked")?;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn bench(rounds: usize, time: Duration, echo_bin: &Path, reuseport: bool) -> Result<()> {
    if !echo_bin.is_file() {
        return Err(format!(
            "{} missing: cargo build --release --example echo",
            echo_bin.display()
        )
        .into());
    }
    let pki = pki()?;
    let names = ["ringloop", "tokio-tls"];
    let scenarios: [(&str, usize, usize); 2] =
        [("echo 50x512", 50, 512), ("echo 100x16KiB", 100, 16 * 1024)];
    // per server: (scenario -> (units, cpu))
    let mut totals = vec![vec![(0u64, Duration::ZERO); scenarios.len() + 1]; 2];
    let mut idle_kib = vec![Vec::new(); 2];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for &s in &order {
            let server = start(names[s], echo_bin, &pki, reuseport)?;
            for (i, &(label, conns, size)) in scenarios.iter().enumerate() {
                let before = server.cpu();
                let n = echo(&pki.client, server.addr, conns, size, time)?;
                let cpu = server.cpu() - before;
                eprintln!(
                    "round {round} {:9} {label}: {n} msgs, {cpu:?} CPU",
                    server.name
                );
                totals[s][i].0 += n;
                totals[s][i].1 += cpu;
            }
            let before = server.cpu();
            let n = handshakes(&pki.client, server.addr, time)?;
            let cpu = server.cpu() - before;
            eprintln!(
                "round {round} {:9} handshakes: {n}, {cpu:?} CPU",
                server.name
            );
            let h = scenarios.len();
            totals[s][h].0 += n;
            totals[s][h].1 += cpu;
            // Idle connections: RSS growth per connection.
            let rss0 = server.rss_kib();
            let mut idle = Vec::new();
            for _ in 0..1000 {
                let mut c = connect(&pki.client, server.addr)?;
                c.write_all(b"x")?;
                c.flush()?;
                let mut b = [0u8];
                c.read_exact(&mut b)?;
                idle.push(c);
            }
            thread::sleep(Duration::from_millis(200));
            let per = (server.rss_kib().saturating_sub(rss0)) as f64 / 1000.0;
            idle_kib[s].push(per);
            drop(idle);
            server.stop();
        }
    }
    let uptime = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "TLS benchmark: {rounds} rounds x {}s, alternated{}; load average {}",
        time.as_secs(),
        if reuseport {
            ", ringloop --reuseport"
        } else {
            ""
        },
        uptime.trim()
    );
    println!();
    println!("| scenario | ringloop units | tokio-tls units | ringloop CPU/unit | tokio-tls CPU/unit | ratio (ringloop / tokio) |");
    println!("|---|---|---|---|---|---|");
    let labels: Vec<&str> = scenarios
        .iter()
        .map(|s| s.0)
        .chain(["handshakes"])
        .collect();
    for (i, label) in labels.iter().enumerate() {
        let per = |s: usize| {
            let (n, cpu) = totals[s][i];
            cpu.as_secs_f64() * 1e6 / n.max(1) as f64
        };
        println!(
            "| {label} | {} | {} | {:.2} µs | {:.2} µs | {:.2} |",
            totals[0][i].0,
            totals[1][i].0,
            per(0),
            per(1),
            per(0) / per(1)
        );
    }
    let avg = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "| idle connection RSS | | | {:.1} KiB | {:.1} KiB | {:.2} |",
        avg(&idle_kib[0]),
        avg(&idle_kib[1]),
        avg(&idle_kib[0]) / avg(&idle_kib[1])
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
    Ok(())
}
