//! Servers run as child processes: start on a fresh loopback port, wait
//! until they accept, stop by pid (SIGTERM, then SIGKILL after a timeout).

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

/// One of the compared servers: a program and its arguments.
pub struct Server {
    /// Short name used in tables.
    pub name: &'static str,
    description: String,
    program: PathBuf,
    /// Arguments; `{url}` becomes `tcp://127.0.0.1:PORT`, `{port}` the port.
    args: Vec<String>,
}

impl Server {
    /// `program args...`, with `{url}` and `{port}` filled in at start.
    pub fn new(
        name: &'static str,
        description: impl Into<String>,
        program: PathBuf,
        args: &[&str],
    ) -> Server {
        Server {
            name,
            description: description.into(),
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// ringloop's echo example at `path`, run with `--loops 2`.
    pub fn ringloop(path: PathBuf) -> Server {
        let description = format!("ringloop `{} --loops 2`", path.display());
        Server::new("ringloop", description, path, &["{url}", "--loops", "2"])
    }

    /// The tokio peer, served by the harness binary `harness`.
    pub fn tokio(harness: PathBuf) -> Server {
        Server::new(
            "tokio",
            "tokio (2 worker threads, a task per connection)",
            harness,
            &["serve", "tokio", "{url}", "--threads", "2"],
        )
    }

    /// The single-threaded mio loop, served by the harness binary `harness`.
    pub fn epoll(harness: PathBuf) -> Server {
        Server::new(
            "epoll",
            "epoll (hand-written single-threaded mio loop)",
            harness,
            &["serve", "epoll", "{url}"],
        )
    }

    /// What runs, for the report header.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The command line for the report, the port shown as `PORT`.
    pub fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            let arg = arg
                .replace("{url}", "tcp://127.0.0.1:PORT")
                .replace("{port}", "PORT");
            line.push(' ');
            if arg.is_empty() || arg.contains(' ') {
                line.push_str(&format!("'{arg}'"));
            } else {
                line.push_str(&arg);
            }
        }
        line
    }

    fn args(&self, addr: SocketAddr) -> Vec<String> {
        self.args
            .iter()
            .map(|a| {
                a.replace("{url}", &format!("tcp://{addr}"))
                    .replace("{port}", &addr.port().to_string())
            })
            .collect()
    }

    fn command(&self, addr: SocketAddr) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(self.args(addr));
        cmd
    }

    /// Starts the server on a free loopback port and waits until it accepts.
    pub fn start(&self) -> Result<Running> {
        let addr = free_port()?;
        let mut cmd = self.command(addr);
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
        };
        running.wait_ready()?;
        Ok(running)
    }
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

    /// Sends SIGTERM, waits up to `STOP_TIMEOUT`, then kills.
    /// On error, dropping `self` still kills and reaps the child.
    pub fn stop(mut self) -> Result<Stopped> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            return Ok(Stopped::Early(status));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Not reaped yet (only this value waits on it), so the pid is still ours.
        kill(pid, Signal::SIGTERM)?;
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
    }
}
