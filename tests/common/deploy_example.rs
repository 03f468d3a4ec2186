//! A server example (`target/<profile>/examples/NAME`) running as a child
//! process, for the deployment tests: HAProxy in front of it, socket
//! activation, upgrades (several listeners, stdout and stderr lines as they
//! come, a command to adjust). `common::example` is the simpler one-listener
//! runner; folding the two into one type is left to do.
//!
//! The child dies with the test thread that started it (`PR_SET_PDEATHSIG`)
//! and is killed if dropped while running; its stdout and stderr lines are
//! collected.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::PATIENCE;

pub use super::example::example_binary;

/// Output lines of a child, as they come.
type Lines = mpsc::Receiver<String>;
type Collected = (
    Child,
    Arc<Mutex<Vec<String>>>,
    Lines,
    Vec<std::thread::JoinHandle<()>>,
);

/// Spawns `cmd` (stdout and stderr piped) tied to this thread's life
/// (`PR_SET_PDEATHSIG`) and collects its output lines.
fn spawn_collecting(mut cmd: Command, name: &str) -> Collected {
    super::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let mut readers = Vec::new();
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let (tx, output) = (tx.clone(), output.clone());
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                output.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        }));
    }
    (child, output, lines, readers)
}

/// A running example.
pub struct Example {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line it printed (stdout and stderr), in arrival order.
    pub output: Arc<Mutex<Vec<String>>>,
    /// The addresses it printed (`NAME listening on URL ...`).
    pub addrs: Vec<String>,
    done: bool,
    /// The threads collecting its output (joined once it exits).
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Example {
    /// Starts example `name` with `args` and waits until it printed
    /// `listeners` "listening on" lines.
    pub fn start(name: &str, args: &[impl AsRef<OsStr>], listeners: usize) -> Example {
        Self::start_with(name, args, listeners, |_| {})
    }

    /// As [`start`](Self::start), with a chance to adjust the command
    /// (environment, inherited descriptors).
    pub fn start_with(
        name: &str,
        args: &[impl AsRef<OsStr>],
        listeners: usize,
        adjust: impl FnOnce(&mut Command),
    ) -> Example {
        let mut cmd = Command::new(example_binary(name));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let (child, output, lines, readers) = spawn_collecting(cmd, name);
        let mut example = Example {
            child,
            lines,
            output,
            addrs: Vec::new(),
            done: false,
            readers,
        };
        while example.addrs.len() < listeners {
            let line = example
                .next_line(PATIENCE)
                .unwrap_or_else(|| panic!("{name} printed no address: {:?}", example.output()));
            if let Some(rest) = line.split(" listening on ").nth(1) {
                example
                    .addrs
                    .push(rest.split_whitespace().next().unwrap().to_string());
            }
        }
        example
    }

    /// The next line printed, waiting at most `within`.
    pub fn next_line(&mut self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Waits for a printed line containing `text`.
    pub fn wait_for_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if line.contains(text) => return line,
                Some(_) => {}
                None => panic!("no line with {text:?}: {:?}", self.output()),
            }
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The socket address of listener `i`, whatever its scheme (`tls://`,
    /// `tcp://`, …).
    pub fn sock_addr(&self, i: usize) -> SocketAddr {
        let (_, addr) = self.addrs[i]
            .split_once("://")
            .unwrap_or_else(|| panic!("not a URL: {}", self.addrs[i]));
        addr.parse()
            .unwrap_or_else(|_| panic!("not an IP address: {}", self.addrs[i]))
    }

    /// The TCP address of listener `i`.
    pub fn tcp_addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
            .strip_prefix("tcp://")
            .unwrap_or_else(|| panic!("not a TCP address: {}", self.addrs[i]))
            .parse()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// The exit status, if it has exited (then all its output is in).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().unwrap();
        if status.is_some() {
            self.done = true;
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
        status
    }

    /// Waits (at most `within`) for it to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self
            .wait_exit(PATIENCE)
            .unwrap_or_else(|| panic!("it ignored SIGTERM: {:?}", self.output()));
        assert!(status.success(), "exit {status}: {:?}", self.output());
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago (for tools that need a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy running in the foreground with `config`; stopped on drop.
pub struct Haproxy {
    child: Child,
    pub output: Arc<Mutex<Vec<String>>>,
    _dir: crate::common::TempDir,
}

impl Haproxy {
    /// Starts `haproxy -db -f CONFIG` and waits until every port in
    /// `frontends` accepts connections.
    pub fn start(config: &str, frontends: &[u16]) -> Haproxy {
        let dir = crate::common::TempDir::new("haproxy");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (child, output, _, _) = spawn_collecting(cmd, "haproxy");
        let haproxy = Haproxy {
            child,
            output,
            _dir: dir,
        };
        for &port in frontends {
            crate::common::wait_until("haproxy listening", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        haproxy
    }

    /// Everything HAProxy printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
