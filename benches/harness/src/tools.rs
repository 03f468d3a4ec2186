//! The external load generators (`wrk`, `redis-benchmark`): running them
//! with a deadline and reading their reports. Plus a minimal RESP client to
//! check what a benchmark left in a key-value server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// Whether `program` can be found on `PATH`.
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

/// The first `program` on `PATH` that is a file.
pub fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `cmd` to completion, killing it past `timeout`; returns its stdout.
/// A non-zero exit or a timeout is an error carrying its stderr.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<String> {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {line}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    match status {
        None => Err(format!("{line} still ran after {timeout:?} and was killed").into()),
        Some(s) if !s.success() => Err(format!("{line} failed ({s}): {}", err.trim()).into()),
        Some(_) => Ok(out),
    }
}

/// What `wrk --latency` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    /// Responses completed.
    pub requests: u64,
    /// Length of the run in seconds, as wrk measured it.
    pub seconds: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Responses with a status other than 2xx or 3xx.
    pub non_2xx: u64,
}

/// `1.23ms`, `850.00us`, `2.01s`, `3.02m` as microseconds.
fn duration_us(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => return None,
    })
}

/// Parses the output of `wrk --latency`.
pub fn parse_wrk(out: &str) -> Result<WrkReport> {
    let bad = || format!("unexpected wrk output:\n{out}");
    let mut report = WrkReport {
        requests: 0,
        seconds: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        socket_errors: 0,
        non_2xx: 0,
    };
    let mut seen_total = false;
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => report.p50_us = duration_us(d).ok_or_else(bad)?,
            ["99%", d] => report.p99_us = duration_us(d).ok_or_else(bad)?,
            [n, "requests", "in", secs, ..] => {
                report.requests = n.parse().map_err(|_| bad())?;
                let secs = secs.trim_end_matches(',');
                report.seconds = duration_us(secs).ok_or_else(bad)? / 1e6;
                seen_total = true;
            }
            ["Socket", "errors:", rest @ ..] => {
                report.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                report.non_2xx = n.parse().map_err(|_| bad())?;
            }
            _ => {}
        }
    }
    if !seen_total || report.seconds <= 0.0 {
        return Err(bad().into());
    }
    Ok(report)
}

/// One test of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBenchReport {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// Finds test `name` (`SET`, `GET`, `INCR`) in `redis-benchmark --csv`
/// output (redis-benchmark 7: test, rps, avg, min, p50, p95, p99, max).
pub fn parse_redis_csv(out: &str, name: &str) -> Result<RedisBenchReport> {
    let bad = || format!("no {name} line in redis-benchmark output:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("\"{name}\"")))
        .ok_or_else(bad)?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    match fields.as_slice() {
        [rps, _avg, _min, p50, _p95, p99, _max] => Ok(RedisBenchReport {
            rps: *rps,
            p50_ms: *p50,
            p99_ms: *p99,
        }),
        _ => Err(bad().into()),
    }
}

/// `GET key` over RESP: the value, or `None` for nil.
pub fn resp_get(addr: SocketAddr, key: &str) -> Result<Option<Vec<u8>>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let len: i64 = line
        .strip_prefix('$')
        .and_then(|l| l.trim_end().parse().ok())
        .ok_or_else(|| format!("GET {key}: unexpected reply {line:?}"))?;
    if len < 0 {
        return Ok(None);
    }
    let mut value = vec![0; len as usize + 2];
    reader.read_exact(&mut value)?;
    value.truncate(len as usize);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "\
Running 3s test @ http://127.0.0.1:18080/plaintext
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.50ms   14.45ms 125.90ms   95.30%
    Req/Sec    62.36k    14.94k   75.70k    91.30%
  Latency Distribution
     50%  850.00us
     75%    2.34ms
     90%    3.45ms
     99%   45.67ms
  144304 requests in 3.02s, 18.30MB read
  Socket errors: connect 0, read 2, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  47846.47
Transfer/sec:      6.07MB
";

    #[test]
    fn wrk_report() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(r.requests, 144_304);
        assert!((r.seconds - 3.02).abs() < 1e-9);
        assert!((r.p50_us - 850.0).abs() < 1e-9);
        assert!((r.p99_us - 45_670.0).abs() < 1e-6);
        assert_eq!((r.socket_errors, r.non_2xx), (14, 5));
        assert!(parse_wrk("nonsense").is_err());
    }

    #[test]
    fn redis_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"1234.50\",\"0.100\",\"0.020\",\"0.090\",\"0.200\",\"0.300\",\"1.000\"\n";
        let r = parse_redis_csv(out, "SET").unwrap();
        assert_eq!(
            r,
            RedisBenchReport {
                rps: 1234.5,
                p50_ms: 0.09,
                p99_ms: 0.3
            }
        );
        assert!(parse_redis_csv(out, "GET").is_err());
    }
}
