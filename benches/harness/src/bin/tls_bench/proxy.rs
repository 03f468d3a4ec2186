//! `tls-bench proxy`: TLS termination, ringloop's proxy example
//! (`--listen tls://… --backend tcp://… --loops 1`) against HAProxy (`mode
//! tcp`, `bind … ssl crt`, `nbthread 1`), each in front of a fresh
//! `harness serve epoll` echo backend, under the same blocking rustls
//! clients (full handshakes, then echo), alternated per round. Reports
//! msgs/s and the proxy's CPU per message (user + system from `/proc`),
//! with the median and range of the per-round ratios.

use std::process::Command;
use std::time::Duration;

use crate::{echo, free_port, need, pki, ratio_cell, spawn, Opts, Result, Until};

const SCENARIOS: [(&str, usize, usize); 2] =
    [("echo 50x512", 50, 512), ("echo 100x16KiB", 100, 16 * 1024)];

const NAMES: [&str; 2] = ["ringloop", "HAProxy"];

pub fn run(opts: &Opts) -> Result<()> {
    need(&opts.proxy_bin, "cargo build --release --example proxy")?;
    let harness = std::env::current_exe()?.with_file_name("harness");
    need(
        &harness,
        "cargo build --release --manifest-path benches/harness/Cargo.toml",
    )?;
    let haproxy = opts.haproxy.clone().unwrap_or_else(|| "haproxy".into());
    if Command::new(&haproxy).arg("-v").output().is_err() {
        return Err(format!(
            "{} cannot run: install HAProxy (Debian: apt-get install haproxy) or give --haproxy PATH",
            haproxy.display()
        )
        .into());
    }
    let pki = pki()?;
    // HAProxy's `crt` takes the chain and the key in one file.
    let combined = pki.dir.join("haproxy.pem");
    std::fs::write(
        &combined,
        [std::fs::read(pki.cert())?, std::fs::read(pki.key())?].concat(),
    )?;
    // rate[contender][scenario] and cpu[contender][scenario], one per round.
    let mut rate = vec![vec![Vec::new(); SCENARIOS.len()]; 2];
    let mut cpu = vec![vec![Vec::new(); SCENARIOS.len()]; 2];
    let load_before = crate::loadavg();
    for round in 0..opts.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for c in order {
            for (i, &(label, conns, size)) in SCENARIOS.iter().enumerate() {
                // A fresh backend and proxy for every run.
                let bport = free_port()?;
                let mut cmd = Command::new(&harness);
                cmd.args(["serve", "epoll", &format!("tcp://127.0.0.1:{bport}")]);
                let backend = spawn("backend", cmd, bport, Duration::from_secs(10))?;
                let port = free_port()?;
                let proxy = match c {
                    0 => {
                        let mut cmd = Command::new(&opts.proxy_bin);
                        cmd.args(["--listen", &format!("tls://127.0.0.1:{port}")])
                            .args(["--backend", &format!("tcp://127.0.0.1:{bport}")])
                            .args(["--loops", "1", "--tls-cert"])
                            .arg(pki.cert())
                            .arg("--tls-key")
                            .arg(pki.key());
                        if let Some(driver) = &opts.backend {
                            cmd.args(["--driver", driver]);
                        }
                        spawn(NAMES[c], cmd, port, Duration::from_secs(10))
                    }
                    _ => {
                        let config = pki.dir.join(format!("haproxy-{port}.cfg"));
                        std::fs::write(&config, haproxy_config(port, bport, &combined))?;
                        let mut cmd = Command::new(&haproxy);
                        cmd.arg("-db").arg("-f").arg(&config);
                        spawn(NAMES[c], cmd, port, Duration::from_secs(10))
                    }
                };
                let proxy = match proxy {
                    Ok(p) => p,
                    Err(e) => {
                        backend.stop();
                        return Err(e);
                    }
                };
                let probe = || proxy.cpu();
                let measured = echo(
                    &pki.client,
                    proxy.addr,
                    conns,
                    size,
                    Until::Elapsed(opts.time),
                    &probe,
                );
                proxy.stop();
                backend.stop();
                let (n, used) = measured?;
                let secs = opts.time.as_secs_f64();
                eprintln!(
                    "round {round} {:8} {label}: {:.0} msgs/s, {:.2} µs CPU/msg",
                    NAMES[c],
                    n as f64 / secs,
                    used.as_secs_f64() * 1e6 / n.max(1) as f64
                );
                rate[c][i].push(n as f64 / secs);
                cpu[c][i].push(used.as_secs_f64() * 1e6 / n.max(1) as f64);
            }
        }
    }
    println!(
        "TLS-terminating proxy: {} rounds x {}s, alternated; 1 loop / nbthread 1; \
         backend `harness serve epoll`{}; load average {} before, {} after\n",
        opts.rounds,
        opts.time.as_secs(),
        opts.backend
            .as_ref()
            .map_or(String::new(), |b| format!("; proxy --driver {b}")),
        load_before,
        crate::loadavg()
    );
    println!("| scenario | ringloop msgs/s | HAProxy msgs/s | msgs/s ratio: median (range) | ringloop CPU/msg | HAProxy CPU/msg | CPU/msg ratio: median (range) |");
    println!("|---|---|---|---|---|---|---|");
    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect()
    };
    for (i, (label, _, _)) in SCENARIOS.iter().enumerate() {
        let med = |v: &[f64]| crate::median_range(v).0;
        println!(
            "| {label} | {:.0} | {:.0} | {} | {:.2} µs | {:.2} µs | {} |",
            med(&rate[0][i]),
            med(&rate[1][i]),
            ratio_cell(&ratios(&rate[0][i], &rate[1][i])),
            med(&cpu[0][i]),
            med(&cpu[1][i]),
            ratio_cell(&ratios(&cpu[0][i], &cpu[1][i]))
        );
    }
    Ok(())
}

/// HAProxy in front of `backend`: `mode tcp`, TLS terminated with `crt`,
/// one thread, generous timeouts, no logging, defaults otherwise.
fn haproxy_config(port: u16, backend: u16, crt: &std::path::Path) -> String {
    format!(
        "global\n\
         \x20   nbthread 1\n\
         \x20   maxconn 4000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend bench\n\
         \x20   bind 127.0.0.1:{port} ssl crt {}\n\
         \x20   default_backend echo\n\
         backend echo\n\
         \x20   server echo1 127.0.0.1:{backend}\n",
        crt.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_terminates_tls_in_front_of_the_backend() {
        let text = haproxy_config(8443, 9000, std::path::Path::new("/tmp/x.pem"));
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "nbthread 1",
            "mode tcp",
            "bind 127.0.0.1:8443 ssl crt /tmp/x.pem",
            "server echo1 127.0.0.1:9000",
        ] {
            assert!(lines.contains(&want), "{want:?} missing in:\n{text}");
        }
    }
}
