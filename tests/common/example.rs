//! An example server (`target/<profile>/examples/NAME`) as a child process:
//! started with its arguments, its address read from its "listening on"
//! line, its stderr collected, signalled and waited for with bounded waits,
//! its RSS read from `/proc`. Killed if dropped while running.
//!
//! `cargo test` builds the examples; with a `--test` filter, build the ones a
//! test uses first (`cargo build --examples`). A binary older than the
//! sources is refused, so a test never runs yesterday's server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::PATIENCE;

/// The built example `name`, checked to be newer than its sources.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --examples` first",
        bin.display()
    );
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Its sources: the crates, the examples' shared module, its own file
    // and its own module directory (`examples/NAME_server/`) — not the
    // other examples, which cargo does not relink it for.
    let examples = root.join("examples");
    let mut dirs = vec![
        root.join("src"),
        root.join("actors/src"),
        examples.join("common"),
    ];
    let own_dir = examples.join(format!("{name}_server"));
    if own_dir.is_dir() {
        dirs.push(own_dir);
    }
    let mut sources = vec![examples.join(format!("{name}.rs"))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let changed = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
        assert!(
            changed <= built,
            "{} is older than {}: run `cargo build --examples`",
            bin.display(),
            path.display()
        );
    }
    bin
}

/// A running example server.
pub struct Example {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

impl Example {
    /// Starts example `name` with `args` and waits for its address.
    pub fn start(name: &str, args: &[&str]) -> Example {
        Self::try_start(name, args).unwrap_or_else(|(status, stderr)| {
            panic!("{name} exited before listening ({status:?}): {stderr:?}")
        })
    }

    /// Starts example `name`; `Err` with its exit status and stderr if it
    /// exits instead of printing where it listens.
    pub fn try_start(
        name: &str,
        args: &[&str],
    ) -> Result<Example, (Option<ExitStatus>, Vec<String>)> {
        let mut cmd = Command::new(example_binary(name));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Should the test thread die first, the server dies with it.
        super::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start the example");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_done = {
            let lines = stderr.clone();
            let err = child.stderr.take().unwrap();
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("tcp://"))
                    else {
                        continue;
                    };
                    return Ok(Example {
                        child,
                        addr: addr.parse().expect("the example's address"),
                        stderr,
                        exited: None,
                    });
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten().or_else(|| {
                        let _ = child.kill();
                        child.wait().ok()
                    });
                    let _ = err_done.join();
                    let lines = stderr.lock().unwrap().clone();
                    return Err((status, lines));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Its resident set size in bytes.
    pub fn rss(&self) -> u64 {
        super::rss_of(self.pid())
    }

    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits at most `limit` for it to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits (bounded) for it to exit.
    pub fn stop(mut self) -> ExitStatus {
        assert!(self.exited().is_none(), "exited early: {:?}", self.stderr());
        self.signal(Signal::SIGTERM);
        self.wait_exit(PATIENCE)
            .unwrap_or_else(|| panic!("ignored SIGTERM: {:?}", self.stderr()))
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
