//! What the harness reads about processes: CPU time and resident memory from
//! `/proc`, and the open-files limit.

use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use nix::unistd::{sysconf, SysconfVar};

use crate::Result;

fn clock_ticks_per_second() -> Result<u64> {
    static TICKS: OnceLock<u64> = OnceLock::new();
    if let Some(&t) = TICKS.get() {
        return Ok(t);
    }
    let t = sysconf(SysconfVar::CLK_TCK)?
        .filter(|&t| t > 0)
        .ok_or("sysconf(_SC_CLK_TCK) gave no value")? as u64;
    Ok(*TICKS.get_or_init(|| t))
}

/// User plus system CPU time of every thread of `pid`, living or exited,
/// from `/proc/PID/stat` (fields 14 and 15; resolution one clock tick).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

/// User and system CPU time of every thread of `pid`, separately (fields
/// 14 and 15 of `/proc/PID/stat`): where a server's time goes.
pub fn user_system_time(pid: u32) -> Result<(Duration, Duration)> {
    stat_user_system(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `stat` file of a process or a thread.
fn stat_cpu_time(path: &str) -> Result<Duration> {
    let (user, system) = stat_user_system(path)?;
    Ok(user + system)
}

/// utime and stime from a `stat` file of a process or a thread.
fn stat_user_system(path: &str) -> Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("{path}: no ')' in {stat:?}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let tick = |n: usize| -> Result<u64> {
        let f = fields
            .get(n - 3)
            .ok_or_else(|| format!("{path}: field {n} missing"))?;
        f.parse()
            .map_err(|e| format!("{path}: field {n} {f:?}: {e}").into())
    };
    let per_second = clock_ticks_per_second()?;
    let time = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / per_second);
    Ok((time(tick(14)?), time(tick(15)?)))
}

/// User plus system CPU time of the threads of process `pid` whose name
/// (`/proc/PID/task/TID/comm`, at most 15 bytes) starts with `prefix`.
/// Threads that have exited are not counted.
pub fn thread_cpu_time(pid: u32, prefix: &str) -> Result<Duration> {
    let dir = format!("/proc/{pid}/task");
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let tid = entry?.file_name();
        let Some(tid) = tid.to_str() else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/{tid}/comm")) else {
            continue; // exited meanwhile
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        match stat_cpu_time(&format!("{dir}/{tid}/stat")) {
            Ok(t) => total += t,
            Err(_) if !std::path::Path::new(&format!("{dir}/{tid}")).exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Voluntary and involuntary context switches of the threads of process
/// `pid` whose name starts with `prefix` (from `/proc/PID/task/TID/status`).
pub fn thread_context_switches(pid: u32, prefix: &str) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/task");
    let (mut voluntary, mut involuntary) = (0, 0);
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let tid = entry?.file_name();
        let Some(tid) = tid.to_str() else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/{tid}/comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("{dir}/{tid}/status")) else {
            continue;
        };
        for line in status.lines() {
            let field = |name: &str| {
                line.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(n) = field("voluntary_ctxt_switches:") {
                voluntary += n;
            } else if let Some(n) = field("nonvoluntary_ctxt_switches:") {
                involuntary += n;
            }
        }
    }
    Ok((voluntary, involuntary))
}

/// Time spent running and time spent runnable but waiting for a CPU (on a
/// run queue), in nanoseconds, summed over the threads of process `pid`
/// whose name starts with `prefix` (`/proc/PID/task/TID/schedstat`).
pub fn thread_schedstat(pid: u32, prefix: &str) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/task");
    let (mut run, mut wait) = (0, 0);
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let tid = entry?.file_name();
        let Some(tid) = tid.to_str() else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/{tid}/comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("{dir}/{tid}/schedstat")) else {
            continue;
        };
        let mut fields = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        run += fields.next().unwrap_or(0);
        wait += fields.next().unwrap_or(0);
    }
    Ok((run, wait))
}

/// Resident set size of `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub fn vm_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or_else(|| format!("{path}: no VmRSS line"))?;
    let kib: u64 = line
        .trim()
        .strip_suffix("kB")
        .map(str::trim)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{path}: cannot parse VmRSS {line:?}"))?;
    Ok(kib * 1024)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (children inherit it) and
/// returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = if hard == RLIM_INFINITY {
        // The kernel refuses more than fs.nr_open.
        std::fs::read_to_string("/proc/sys/fs/nr_open")?
            .trim()
            .parse()?
    } else {
        hard
    };
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(soft.max(target))
}

/// The current soft `RLIMIT_NOFILE`.
pub fn nofile_limit() -> Result<u64> {
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(vm_rss(me).unwrap() > 0);
        let start = cpu_time(me).unwrap();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time(me).unwrap() >= start);
        let (user, system) = user_system_time(me).unwrap();
        assert!(user + system <= cpu_time(me).unwrap());
        // Spinning is user time: it shows once a tick of it is counted
        // (bounded, the machine may be busy).
        let spin = std::time::Instant::now();
        while user_system_time(me).unwrap().0 <= user && spin.elapsed() < Duration::from_secs(10) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(
            user_system_time(me).unwrap().0 > user,
            "spinning shows as user time"
        );
        assert!(cpu_time(u32::MAX).is_err());
        assert!(user_system_time(u32::MAX).is_err());
    }
}
