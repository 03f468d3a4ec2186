//! `tls-bench callgrind`: instructions the server executes per echoed
//! message and per full handshake, ringloop's echo against tokio +
//! tokio-rustls, each under `valgrind --tool=callgrind`.
//!
//! Instructions do not depend on the machine's load, so these ratios hold
//! on a shared machine where CPU time does not. Each server runs twice per
//! scenario under the same bounded load with two different amounts of work
//! (messages per connection, or handshakes); the difference of the two
//! totals, divided by the difference in work, is the cost of one unit:
//! start-up, the connections' own handshakes and shutdown cancel out. The
//! profiles are kept (`--out DIR`) for `callgrind_annotate`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{
    echo, echo_command, free_port, handshakes, need, pki, spawn, Opts, Pki, Result, Until,
};

/// One measured scenario: `conns` connections, `size`-byte messages, or
/// handshakes when `conns` is 0; `lo` and `hi` units of work per run.
struct Work {
    label: &'static str,
    conns: usize,
    size: usize,
    lo: u64,
    hi: u64,
}

const WORK: [Work; 3] = [
    Work {
        label: "echo 50x512",
        conns: 50,
        size: 512,
        lo: 20,
        hi: 60,
    },
    Work {
        label: "echo 100x16KiB",
        conns: 100,
        size: 16 * 1024,
        lo: 5,
        hi: 15,
    },
    Work {
        label: "handshakes",
        conns: 0,
        size: 0,
        lo: 20,
        hi: 60,
    },
];

pub fn run(opts: &Opts) -> Result<()> {
    need(&opts.echo_bin, "cargo build --release --example echo")?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tls-bench-callgrind"));
    std::fs::create_dir_all(&out)?;
    let pki = pki()?;
    let names = ["ringloop", "tokio-tls"];
    println!(
        "TLS instructions (valgrind --tool=callgrind; server only; load average {}); profiles in {}\n",
        crate::loadavg(),
        out.display()
    );
    println!("| scenario | ringloop instructions/unit | tokio-tls instructions/unit | ratio ringloop / tokio |");
    println!("|---|---|---|---|");
    for work in WORK.iter().filter(|w| opts.runs(w.label)) {
        let mut per_unit = [0f64; 2];
        for (s, name) in names.iter().enumerate() {
            let tag = work.label.replace(' ', "-");
            let lo = measure(
                opts,
                &pki,
                name,
                work,
                work.lo,
                &out.join(format!("{name}-{tag}-lo.out")),
            )?;
            let hi = measure(
                opts,
                &pki,
                name,
                work,
                work.hi,
                &out.join(format!("{name}-{tag}-hi.out")),
            )?;
            let units = (work.hi - work.lo) * work.conns.max(1) as u64;
            per_unit[s] = hi.saturating_sub(lo) as f64 / units as f64;
            eprintln!(
                "{name} {}: {lo} and {hi} instructions -> {:.0} per unit",
                work.label, per_unit[s]
            );
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.3} |",
            work.label,
            per_unit[0],
            per_unit[1],
            per_unit[0] / per_unit[1].max(1.0)
        );
    }
    Ok(())
}

/// The server's total instructions for `units` of `work`.
fn measure(
    opts: &Opts,
    pki: &Pki,
    name: &str,
    work: &Work,
    units: u64,
    file: &Path,
) -> Result<u64> {
    let port = free_port()?;
    let inner = echo_command(name, opts, pki, port)?;
    let mut cmd = Command::new(&opts.valgrind);
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg("-q")
        .arg(inner.get_program())
        .args(inner.get_args());
    let server = spawn(name, cmd, port, Duration::from_secs(120))?;
    let done = if work.conns == 0 {
        handshakes(&pki.client, server.addr, Until::Messages(units))
    } else {
        echo(
            &pki.client,
            server.addr,
            work.conns,
            work.size,
            Until::Messages(units),
            &Duration::default,
        )
        .map(|(n, _)| n)
    };
    let stopped = server.interrupt(Duration::from_secs(120));
    let done = done?;
    stopped?;
    let want = units * work.conns.max(1) as u64;
    if done != want {
        return Err(format!("{name} {}: {done} units done, not {want}", work.label).into());
    }
    totals(file)
}

/// The `totals:` (or `summary:`) line of a callgrind profile.
fn totals(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: {e} (did the server exit cleanly?)", file.display()))?;
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: no totals line", file.display()).into())
}
