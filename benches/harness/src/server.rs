//! Echo servers and proxies run as child processes: start on a fresh
//! loopback port, wait until they accept, stop by pid (SIGTERM, or SIGUSR1
//! for HAProxy's clean soft stop; SIGKILL after a timeout).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Result;

/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a server's output passed through to the harness's stderr.
const OUTPUT_LINES: usize = 20;

/// One of the compared servers.
pub struct Server {
    /// Short name used in tables.
    pub name: &'static str,
    kind: Kind,
}

enum Kind {
    /// ringloop's `examples/echo` binary.
    Ringloop(PathBuf),
    /// `harness serve tokio`, two worker threads.
    Tokio(PathBuf),
    /// `harness serve epoll`.
    Epoll(PathBuf),
    /// ringloop's `examples/proxy` binary, `--loops N`, in front of `backend`.
    RingloopProxy {
        path: PathBuf,
        loops: usize,
        backend: SocketAddr,
    },
    /// HAProxy, `mode tcp`, `nbthread N`, in front of `backend`.
    Haproxy {
        path: PathBuf,
        threads: usize,
        backend: SocketAddr,
    },
}

impl Server {
    /// ringloop's echo example at `path`, run with `--loops 2`.
    pub fn ringloop(path: PathBuf) -> Server {
        Server {
            name: "ringloop",
            kind: Kind::Ringloop(path),
        }
    }

    /// The tokio peer, served by the harness binary `harness`.
    pub fn tokio(harness: PathBuf) -> Server {
        Server {
            name: "tokio",
            kind: Kind::Tokio(harness),
        }
    }

    /// The single-threaded mio loop, served by the harness binary `harness`.
    pub fn epoll(harness: PathBuf) -> Server {
        Server {
            name: "epoll",
            kind: Kind::Epoll(harness),
        }
    }

    /// ringloop's proxy example at `path` with `loops` loops, relaying to
    /// `backend`.
    pub fn ringloop_proxy(
        name: &'static str,
        path: PathBuf,
        loops: usize,
        backend: SocketAddr,
    ) -> Server {
        Server {
            name,
            kind: Kind::RingloopProxy {
                path,
                loops,
                backend,
            },
        }
    }

    /// HAProxy at `path` with `threads` threads, relaying to `backend`.
    pub fn haproxy(
        name: &'static str,
        path: PathBuf,
        threads: usize,
        backend: SocketAddr,
    ) -> Server {
        Server {
            name,
            kind: Kind::Haproxy {
                path,
                threads,
                backend,
            },
        }
    }

    /// What runs, for the report header.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::RingloopProxy { path, loops, .. } => {
                format!("ringloop `{} --loops {loops}`", path.display())
            }
            Kind::Haproxy { path, threads, .. } => {
                format!(
                    "HAProxy `{}` (mode tcp, nbthread {threads})",
                    path.display()
                )
            }
            Kind::Ringloop(path) => format!("ringloop `{} --loops 2`", path.display()),
            Kind::Tokio(_) => "tokio (2 worker threads, a task per connection)".to_string(),
            Kind::Epoll(_) => "epoll (hand-written single-threaded mio loop)".to_string(),
        }
    }

    /// The command that serves on `url` (`tcp://ADDR`), and the file it
    /// needs removed afterwards, if any.
    fn command(&self, url: &str) -> Result<(Command, Option<PathBuf>)> {
        let mut cmd;
        let mut config = None;
        match &self.kind {
            Kind::RingloopProxy {
                path,
                loops,
                backend,
            } => {
                cmd = Command::new(path);
                cmd.args(["--listen", url, "--backend", &format!("tcp://{backend}")])
                    .args(["--loops", &loops.to_string()]);
            }
            Kind::Haproxy {
                path,
                threads,
                backend,
            } => {
                let listen = url.strip_prefix("tcp://").unwrap_or(url);
                let file = haproxy_config(listen, *threads, *backend)?;
                cmd = Command::new(path);
                // -db: stay in the foreground, one process, no master.
                cmd.arg("-db").arg("-f").arg(&file);
                config = Some(file);
            }
            Kind::Ringloop(path) => {
                cmd = Command::new(path);
                cmd.args([url, "--loops", "2"]);
            }
            Kind::Tokio(harness) => {
                cmd = Command::new(harness);
                cmd.args(["serve", "tokio", url, "--threads", "2"]);
            }
            Kind::Epoll(harness) => {
                cmd = Command::new(harness);
                cmd.args(["serve", "epoll", url]);
            }
        }
        Ok((cmd, config))
    }

    /// SIGUSR1 is HAProxy's soft stop (stop listening, exit 0 once the
    /// connections are gone; SIGTERM makes it die by the signal). The others
    /// exit 0 on SIGTERM.
    fn stop_signal(&self) -> Signal {
        match self.kind {
            Kind::Haproxy { .. } => Signal::SIGUSR1,
            _ => Signal::SIGTERM,
        }
    }

    /// Starts the server on a free loopback port and waits until it accepts.
    pub fn start(&self) -> Result<Running> {
        let addr = free_port()?;
        let url = format!("tcp://{addr}");
        let (mut cmd, config) = self.command(&url)?;
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
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(file) = &config {
                    let _ = std::fs::remove_file(file);
                }
                return Err(
                    format!("cannot start {} ({:?}): {e}", self.name, cmd.get_program()).into(),
                );
            }
        };
        let output = [
            child.stdout.take().map(|o| forward(self.name, o)),
            child.stderr.take().map(|e| forward(self.name, e)),
        ];
        let mut running = Running {
            name: self.name,
            addr,
            child,
            output,
            stopped: false,
            stop_signal: self.stop_signal(),
            config,
        };
        running.wait_ready()?;
        Ok(running)
    }
}

/// Writes an HAProxy configuration: `mode tcp`, `nbthread threads`, one
/// frontend on `listen`, one server at `backend`. Generous timeouts, no
/// logging, nothing else changed from HAProxy's defaults.
fn haproxy_config(listen: &str, threads: usize, backend: SocketAddr) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "ringloop-harness-haproxy-{}-{}.cfg",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let text = format!(
        "global\n\
         \x20   nbthread {threads}\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend bench\n\
         \x20   bind {listen}\n\
         \x20   default_backend echo\n\
         backend echo\n\
         \x20   server echo1 {backend}\n"
    );
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file)
}

/// A port nobody listens on right now (the kernel's pick for port 0).
fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Passes the first lines of a server's output to stderr, prefixed with its name.
fn forward(name: &'static str, from: impl Read + Send + 'static) -> JoinHandle<()> {
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
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    output: [Option<JoinHandle<()>>; 2],
    stopped: bool,
    stop_signal: Signal,
    /// A configuration file written for it, removed once it is gone.
    config: Option<PathBuf>,
}

/// How a server ended.
pub enum Stopped {
    /// It had already exited before it was asked to stop.
    Early(ExitStatus),
    /// It exited by itself after SIGTERM.
    Exited(ExitStatus),
    /// It was still running `STOP_TIMEOUT` after SIGTERM and was killed.
    Killed,
}

impl Running {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
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

    /// Sends its stop signal (SIGTERM; SIGUSR1 for HAProxy), waits up to
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

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(file) = self.config.take() {
            let _ = std::fs::remove_file(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_configuration() {
        let backend: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let file = haproxy_config("127.0.0.1:9000", 2, backend).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "nbthread 2",
            "mode tcp",
            "bind 127.0.0.1:9000",
            "server echo1 127.0.0.1:9001",
        ] {
            assert!(lines.contains(&want), "{want:?} missing in:\n{text}");
        }
        // Sections start at column 0, settings are indented.
        assert!(text.lines().any(|l| l == "global"));
        assert!(text.lines().any(|l| l == "    nbthread 2"));
    }
}
