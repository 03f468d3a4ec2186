//! Servers (and proxies) run as child processes: start on a fresh loopback
//! port, wait until they accept, stop by pid (SIGTERM, or the server's own
//! stop signal such as HAProxy's SIGUSR1; SIGKILL after a timeout).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Result;

/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after its stop signal before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a server's output passed through to the harness's stderr.
const OUTPUT_LINES: usize = 20;

/// One of the compared servers.
pub struct Server {
    /// Short name used in tables.
    pub name: String,
    kind: Kind,
    /// It serves UDP (`udp://` address) instead of TCP.
    pub udp: bool,
    /// The signal that asks it to exit cleanly (SIGTERM unless set).
    stop_signal: Signal,
    /// A configuration file written before each start (see
    /// [`Server::with_config_file`]).
    config: Option<String>,
}

/// What runs, and how.
pub enum Kind {
    /// ringloop's `examples/echo` binary.
    Ringloop {
        /// The binary.
        path: PathBuf,
        /// `--loops`.
        loops: usize,
        /// `--reuseport`.
        reuseport: bool,
        /// `--et` (`Some(true)`) or `--lt` (`Some(false)`); `None`: the
        /// echo's default (edge-triggered on epoll).
        et: Option<bool>,
    },
    /// ringloop's `examples/echo_pool` binary.
    EchoPool {
        /// The binary.
        path: PathBuf,
        /// `--loops`.
        loops: usize,
        /// `--delay-ms`.
        delay_ms: u64,
        /// `--workers`.
        workers: usize,
    },
    /// `harness serve tokio|tokio-udp|tokio-blocking`.
    Tokio {
        /// The harness binary.
        harness: PathBuf,
        /// Worker threads; 1 means a `current_thread` runtime.
        threads: usize,
        /// For `tokio-blocking`: the delay and the blocking pool's size.
        blocking: Option<(u64, usize)>,
    },
    /// `harness serve epoll`.
    Epoll {
        /// The harness binary.
        harness: PathBuf,
    },
    /// Any other program (the HTTP and Redis-protocol servers of
    /// `bench-http` and `bench-kv`, the proxies of `proxy-bench`).
    Command {
        /// The binary.
        program: PathBuf,
        /// Its arguments; `{url}` becomes `tcp://127.0.0.1:PORT` (or
        /// `udp://…`), `{port}` the port, `{config}` the path of the file
        /// written from [`Server::with_config_file`].
        args: Vec<String>,
    },
}

impl Kind {
    /// `program args...`, with `{url}` and `{port}` filled in at start.
    pub fn command(program: impl Into<PathBuf>, args: &[&str]) -> Kind {
        Kind::Command {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

impl Server {
    /// A server called `name` (its table label) running `kind`, over UDP if `udp`.
    pub fn new(name: impl Into<String>, kind: Kind, udp: bool) -> Server {
        Server {
            name: name.into(),
            kind,
            udp,
            stop_signal: Signal::SIGTERM,
            config: None,
        }
    }

    /// Stopped with `signal` instead of SIGTERM (HAProxy: SIGUSR1, its soft
    /// stop, exits 0 once its connections are gone; SIGTERM kills it by the
    /// signal).
    pub fn with_stop_signal(mut self, signal: Signal) -> Server {
        self.stop_signal = signal;
        self
    }

    /// Before each start, `template` is written to a fresh temporary file
    /// with `{url}` and `{port}` filled in as in the arguments, where
    /// `{config}` stands for its path. The file is removed once the server
    /// is gone. For programs configured by file only (HAProxy).
    pub fn with_config_file(mut self, template: impl Into<String>) -> Server {
        self.config = Some(template.into());
        self
    }

    /// What runs, for the report header.
    pub fn describe(&self) -> String {
        let tokio_rt = |threads: usize| {
            if threads == 1 {
                "current_thread runtime".to_string()
            } else {
                format!("{threads} worker threads")
            }
        };
        let what = match &self.kind {
            Kind::Ringloop {
                loops,
                reuseport,
                et,
                ..
            } => format!(
                "`echo --loops {loops}{}{}`",
                if *reuseport { " --reuseport" } else { "" },
                match et {
                    Some(true) => " --et",
                    Some(false) => " --lt",
                    None => "",
                }
            ),
            Kind::EchoPool {
                loops,
                delay_ms,
                workers,
                ..
            } => format!("`echo_pool --loops {loops} --delay-ms {delay_ms} --workers {workers}`"),
            Kind::Tokio {
                threads,
                blocking: None,
                ..
            } if self.udp => format!(
                "tokio UDP ({}, one socket per worker thread with SO_REUSEPORT)",
                tokio_rt(*threads)
            ),
            Kind::Tokio {
                threads,
                blocking: None,
                ..
            } => format!("tokio ({}, a task per connection)", tokio_rt(*threads)),
            Kind::Tokio {
                threads,
                blocking: Some((delay, pool)),
                ..
            } => format!(
                "tokio ({}, a task per connection, `spawn_blocking` sleeping {delay} ms, \
                 at most {pool} blocking threads)",
                tokio_rt(*threads)
            ),
            Kind::Epoll { .. } => "hand-written single-threaded mio loop".to_string(),
            Kind::Command { .. } => format!("`{}`", self.command_line()),
        };
        format!("**{}**: {what}", self.name)
    }

    /// The program and its arguments, with `{url}` and `{port}` placeholders.
    fn program_args(&self) -> (&Path, Vec<String>) {
        let mut args: Vec<String> = Vec::new();
        let mut push = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
        let program = match &self.kind {
            Kind::Ringloop {
                path,
                loops,
                reuseport,
                et,
            } => {
                push(&["{url}", "--loops", &loops.to_string()]);
                if *reuseport {
                    push(&["--reuseport"]);
                }
                match et {
                    Some(true) => push(&["--et"]),
                    Some(false) => push(&["--lt"]),
                    None => {}
                }
                path
            }
            Kind::EchoPool {
                path,
                loops,
                delay_ms,
                workers,
            } => {
                push(&["{url}", "--loops", &loops.to_string()]);
                push(&["--delay-ms", &delay_ms.to_string()]);
                push(&["--workers", &workers.to_string()]);
                path
            }
            Kind::Tokio {
                harness,
                threads,
                blocking,
            } => {
                let kind = match (self.udp, blocking) {
                    (true, _) => "tokio-udp",
                    (false, None) => "tokio",
                    (false, Some(_)) => "tokio-blocking",
                };
                push(&["serve", kind, "{url}"]);
                if *threads == 1 {
                    push(&["--current-thread"]);
                } else {
                    push(&["--threads", &threads.to_string()]);
                }
                if let Some((delay, pool)) = blocking {
                    push(&["--delay-ms", &delay.to_string()]);
                    push(&["--blocking-threads", &pool.to_string()]);
                }
                harness
            }
            Kind::Epoll { harness } => {
                push(&["serve", "epoll", "{url}"]);
                harness
            }
            Kind::Command { program, args: a } => {
                args.clone_from(a);
                program
            }
        };
        (program, args)
    }

    /// `text` with `{url}` and `{port}` replaced for a server at `addr`
    /// (`IP:PORT`) listening on `port`.
    fn fill_one(&self, text: &str, addr: &str, port: &str) -> String {
        let url = format!("{}://{addr}", if self.udp { "udp" } else { "tcp" });
        text.replace("{url}", &url).replace("{port}", port)
    }

    /// `args` filled as by [`Server::fill_one`], `{config}` replaced by `config`.
    fn fill(&self, args: Vec<String>, addr: &str, port: &str, config: &str) -> Vec<String> {
        args.into_iter()
            .map(|a| self.fill_one(&a, addr, port).replace("{config}", config))
            .collect()
    }

    /// The command line for the report, the port shown as `PORT` and a
    /// configuration file as `CONFIG`.
    pub fn command_line(&self) -> String {
        let (program, args) = self.program_args();
        let mut line = program.display().to_string();
        for arg in self.fill(args, "127.0.0.1:PORT", "PORT", "CONFIG") {
            line.push(' ');
            if arg.is_empty() || arg.contains(' ') {
                line.push_str(&format!("'{arg}'"));
            } else {
                line.push_str(&arg);
            }
        }
        line
    }

    /// The command for a server at `addr`, its configuration file (if any)
    /// at `config`.
    fn command(&self, addr: SocketAddr, config: Option<&Path>) -> Command {
        let (program, args) = self.program_args();
        let config = config.map(|p| p.display().to_string()).unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(self.fill(args, &addr.to_string(), &addr.port().to_string(), &config));
        cmd
    }

    /// Writes the configuration file for a server at `addr`, if it has one.
    fn write_config(&self, addr: SocketAddr) -> Result<Option<ConfigFile>> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let Some(template) = &self.config else {
            return Ok(None);
        };
        let path = std::env::temp_dir().join(format!(
            "ringloop-harness-{}-{}.cfg",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let text = self.fill_one(template, &addr.to_string(), &addr.port().to_string());
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(ConfigFile(path)))
    }

    /// Starts the server on a free loopback port and waits until it serves.
    pub fn start(&self) -> Result<Running> {
        let addr = free_port(self.udp)?;
        let config = self.write_config(addr)?;
        let mut cmd = self.command(addr, config.as_ref().map(|c| c.0.as_path()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the prctl(2) system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // Should the harness die, its servers die with it.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} ({:?}): {e}", self.name, cmd.get_program()))?;
        let name: Arc<str> = self.name.as_str().into();
        let output = [
            child.stdout.take().map(|o| forward(name.clone(), o)),
            child.stderr.take().map(|e| forward(name.clone(), e)),
        ];
        let mut running = Running {
            name: self.name.clone(),
            addr,
            udp: self.udp,
            child,
            output,
            stopped: false,
            stop_signal: self.stop_signal,
            _config: config,
        };
        running.wait_ready()?;
        Ok(running)
    }
}

/// A configuration file written for a server, removed on drop.
struct ConfigFile(PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A port nobody listens on right now (the kernel's pick for port 0).
fn free_port(udp: bool) -> Result<SocketAddr> {
    if udp {
        Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
    } else {
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
    }
}

/// Passes the first lines of a server's output to stderr, prefixed with its name.
fn forward(name: Arc<str>, from: impl Read + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut extra = 0usize;
        for (i, line) in BufReader::new(from).lines().enumerate() {
            let Ok(line) = line else { break };
            if i < OUTPUT_LINES {
                eprintln!("    [{name}] {line}");
            } else {
                extra += 1;
            }
        }
        if extra > 0 {
            eprintln!("    [{name}] ... {extra} more line(s) not shown");
        }
    })
}

/// A started server; killed if dropped without [`Running::stop`].
pub struct Running {
    /// Server name.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    udp: bool,
    child: Child,
    output: [Option<JoinHandle<()>>; 2],
    stopped: bool,
    stop_signal: Signal,
    /// Removed once the child is gone (fields drop after `Drop::drop`).
    _config: Option<ConfigFile>,
}

/// How a server ended.
pub enum Stopped {
    /// It had already exited before it was asked to stop.
    Early(ExitStatus),
    /// It exited by itself after its stop signal.
    Exited(ExitStatus),
    /// It was still running `STOP_TIMEOUT` after its stop signal and was killed.
    Killed,
}

impl Running {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The signal [`Running::stop`] sends (SIGTERM unless the server set another).
    pub fn stop_signal(&self) -> Signal {
        self.stop_signal
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "{} exited ({status}) before accepting connections on {}",
                    self.name, self.addr
                )
                .into());
            }
            if self.udp {
                if udp_echoes(self.addr)? {
                    return Ok(());
                }
            } else if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not accept connections on {} within {START_TIMEOUT:?}",
                    self.name, self.addr
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends its stop signal (SIGTERM unless set otherwise), waits up to
    /// `STOP_TIMEOUT`, then kills.
    /// On error, dropping `self` still kills and reaps the child.
    pub fn stop(mut self) -> Result<Stopped> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            return Ok(Stopped::Early(status));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Not reaped yet (only this value waits on it), so the pid is still ours.
        kill(pid, self.stop_signal)?;
        let outcome = loop {
            if let Some(status) = self.child.try_wait()? {
                break Stopped::Exited(status);
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                break Stopped::Killed;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.stopped = true;
        for handle in self.output.iter_mut().filter_map(Option::take) {
            let _ = handle.join();
        }
        Ok(outcome)
    }
}

/// Whether a UDP server at `addr` echoes a probe datagram within 100 ms.
fn udp_echoes(addr: SocketAddr) -> Result<bool> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    socket.send(b"!")?;
    let mut buf = [0u8; 16];
    match socket.recv(&mut buf) {
        Ok(1) if buf[0] == b'!' => Ok(true),
        Ok(n) => Err(format!("{addr}: the probe datagram came back as {:?}", &buf[..n]).into()),
        // Nothing yet, or "connection refused" while the port is not bound.
        Err(_) => Ok(false),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let tokio = Kind::Tokio {
            harness: PathBuf::from("harness"),
            threads: 1,
            blocking: None,
        };
        assert_eq!(
            Server::new("tokio-udp", tokio, true).command_line(),
            "harness serve tokio-udp udp://127.0.0.1:PORT --current-thread"
        );
        let pool = Kind::Tokio {
            harness: PathBuf::from("harness"),
            threads: 2,
            blocking: Some((1, 50)),
        };
        assert_eq!(
            Server::new("tokio-blocking", pool, false).command_line(),
            "harness serve tokio-blocking tcp://127.0.0.1:PORT --threads 2 --delay-ms 1 \
             --blocking-threads 50"
        );
        let echo = Kind::Ringloop {
            path: PathBuf::from("echo"),
            loops: 2,
            reuseport: true,
            et: None,
        };
        assert_eq!(
            Server::new("ringloop-reuseport", echo, false).command_line(),
            "echo tcp://127.0.0.1:PORT --loops 2 --reuseport"
        );
        let redis = Server::new(
            "redis",
            Kind::command("redis-server", &["--port", "{port}", "--save", ""]),
            false,
        );
        assert_eq!(redis.command_line(), "redis-server --port PORT --save ''");
        assert_eq!(
            redis.describe(),
            "**redis**: `redis-server --port PORT --save ''`"
        );
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let cmd = redis.command(addr, None);
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["--port", "4242", "--save", ""]);
        let http = Server::new(
            "tokio",
            Kind::command("harness", &["serve", "tokio-http", "{url}"]),
            false,
        );
        let cmd = http.command(addr, None);
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["serve", "tokio-http", "tcp://127.0.0.1:4242"]);
    }

    #[test]
    fn configuration_files() {
        let haproxy = Server::new(
            "haproxy",
            Kind::command("haproxy", &["-db", "-f", "{config}"]),
            false,
        )
        .with_config_file("frontend f\n    bind 127.0.0.1:{port}\n")
        .with_stop_signal(Signal::SIGUSR1);
        assert_eq!(haproxy.command_line(), "haproxy -db -f CONFIG");
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let config = haproxy.write_config(addr).unwrap().expect("a file");
        let path = config.0.clone();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "frontend f\n    bind 127.0.0.1:4242\n"
        );
        let cmd = haproxy.command(addr, Some(&path));
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-db", "-f", path.to_str().unwrap()]);
        drop(config);
        assert!(!path.exists(), "the file is removed with its handle");
        let plain = Server::new("epoll", Kind::command("x", &["{url}"]), false);
        assert!(plain.write_config(addr).unwrap().is_none());
    }
}
