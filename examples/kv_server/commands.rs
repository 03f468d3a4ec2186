//! Command dispatch: checks arity and options the way Redis does, runs the
//! command against the [`Store`] and appends the RESP2 reply.

use std::ops::Range;

use super::resp::{self, Limits};
use super::store::{parse_i64, Condition, ExpireIf, IncrError, SetTtl, Store, Ttl};

/// A command's arguments: ranges into a buffer (the connection's input, or
/// the scratch buffer of an inline command).
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    base: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Argv<'a> {
    /// Arguments `ranges` of `base`.
    pub fn new(base: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Argv { base, ranges }
    }

    /// How many (the command name included).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name).
    pub fn get(&self, i: usize) -> &'a [u8] {
        self.ranges
            .get(i)
            .and_then(|r| self.base.get(r.clone()))
            .unwrap_or(&[])
    }

    fn from(&self, i: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (i..self.len()).map(move |j| self.get(j))
    }
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Carry on.
    Continue,
    /// Close once the reply is written (QUIT).
    Close,
}

/// The supported commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Command,
    Config,
    Dbsize,
    Decr,
    Decrby,
    Del,
    Echo,
    Exists,
    Expire,
    Flushall,
    Get,
    Incr,
    Incrby,
    Mget,
    Mset,
    Pexpire,
    Ping,
    Pttl,
    Quit,
    Select,
    Set,
    Ttl,
}

/// One supported command: name, Redis arity (negative: at least that many
/// arguments), flags, and the positions of its keys, as `COMMAND` reports.
struct Spec {
    name: &'static str,
    cmd: Cmd,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
}

const fn spec(
    name: &'static str,
    cmd: Cmd,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        cmd,
        arity,
        flags,
        keys,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Sorted by name (looked up by binary search).
static COMMANDS: &[Spec] = &[
    spec("command", Cmd::Command, -1, &["loading", "stale"], NO_KEYS),
    spec(
        "config",
        Cmd::Config,
        -2,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
    ),
    spec("dbsize", Cmd::Dbsize, 1, &["readonly", "fast"], NO_KEYS),
    spec("decr", Cmd::Decr, 2, &["write", "denyoom", "fast"], ONE_KEY),
    spec(
        "decrby",
        Cmd::Decrby,
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
    ),
    spec("del", Cmd::Del, -2, &["write"], ALL_KEYS),
    spec("echo", Cmd::Echo, 2, &["fast"], NO_KEYS),
    spec("exists", Cmd::Exists, -2, &["readonly", "fast"], ALL_KEYS),
    spec("expire", Cmd::Expire, -3, &["write", "fast"], ONE_KEY),
    spec("flushall", Cmd::Flushall, -1, &["write"], NO_KEYS),
    spec("flushdb", Cmd::Flushall, -1, &["write"], NO_KEYS),
    spec("get", Cmd::Get, 2, &["readonly", "fast"], ONE_KEY),
    spec("incr", Cmd::Incr, 2, &["write", "denyoom", "fast"], ONE_KEY),
    spec(
        "incrby",
        Cmd::Incrby,
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
    ),
    spec("mget", Cmd::Mget, -2, &["readonly", "fast"], ALL_KEYS),
    spec("mset", Cmd::Mset, -3, &["write", "denyoom"], (1, -1, 2)),
    spec("pexpire", Cmd::Pexpire, -3, &["write", "fast"], ONE_KEY),
    spec("ping", Cmd::Ping, -1, &["fast"], NO_KEYS),
    spec("pttl", Cmd::Pttl, 2, &["readonly", "fast"], ONE_KEY),
    spec(
        "quit",
        Cmd::Quit,
        -1,
        &["noscript", "loading", "stale", "fast"],
        NO_KEYS,
    ),
    spec(
        "select",
        Cmd::Select,
        2,
        &["loading", "stale", "fast"],
        NO_KEYS,
    ),
    spec("set", Cmd::Set, -3, &["write", "denyoom"], ONE_KEY),
    spec("ttl", Cmd::Ttl, 2, &["readonly", "fast"], ONE_KEY),
];

/// `CONFIG GET` answers: what `redis-benchmark` and `redis-cli` ask for.
fn config_params(limits: &Limits) -> [(&'static str, String); 6] {
    [
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("databases", "1".to_string()),
        ("maxmemory", "0".to_string()),
        ("proto-max-bulk-len", limits.max_bulk.to_string()),
        ("timeout", "0".to_string()),
    ]
}

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// Runs one command, appending its reply to `out`.
pub fn execute(store: &Store, limits: &Limits, argv: Argv<'_>, out: &mut Vec<u8>) -> Flow {
    let name = argv.get(0);
    let mut lower = [0u8; 16];
    let spec = (name.len() <= lower.len())
        .then(|| {
            let lower = &mut lower[..name.len()];
            lower.copy_from_slice(name);
            lower.make_ascii_lowercase();
            COMMANDS
                .binary_search_by(|c| c.name.as_bytes().cmp(lower))
                .ok()
        })
        .flatten()
        .map(|i| &COMMANDS[i]);
    let Some(spec) = spec else {
        unknown_command(argv, out);
        return Flow::Continue;
    };
    let argc = argv.len() as i64;
    if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
        resp::error(
            out,
            &format!("ERR wrong number of arguments for '{}' command", spec.name),
        );
        return Flow::Continue;
    }
    match spec.cmd {
        Cmd::Get => store.get(argv.get(1), |v| resp::bulk_or_nil(out, v)),
        Cmd::Set => set(store, argv, out),
        Cmd::Incr => incr(store, argv.get(1), Some(Some(1)), out),
        Cmd::Decr => incr(store, argv.get(1), Some(Some(-1)), out),
        Cmd::Incrby => incr(store, argv.get(1), parse_i64(argv.get(2)).map(Some), out),
        Cmd::Decrby => incr(
            store,
            argv.get(1),
            parse_i64(argv.get(2)).map(i64::checked_neg),
            out,
        ),
        Cmd::Ping => match argc {
            1 => resp::simple(out, "PONG"),
            2 => resp::bulk(out, argv.get(1)),
            _ => resp::error(out, "ERR wrong number of arguments for 'ping' command"),
        },
        Cmd::Echo => resp::bulk(out, argv.get(1)),
        Cmd::Del => {
            let n = argv.from(1).filter(|k| store.del(k)).count();
            resp::int(out, n as i64);
        }
        Cmd::Exists => {
            let n = argv.from(1).filter(|k| store.exists(k)).count();
            resp::int(out, n as i64);
        }
        Cmd::Mset => {
            if argc % 2 == 0 {
                resp::error(out, "ERR wrong number of arguments for 'mset' command");
            } else {
                let pairs: Vec<(&[u8], &[u8])> = (1..argv.len())
                    .step_by(2)
                    .map(|i| (argv.get(i), argv.get(i + 1)))
                    .collect();
                store.mset(&pairs);
                resp::simple(out, "OK");
            }
        }
        Cmd::Mget => {
            let keys: Vec<&[u8]> = argv.from(1).collect();
            resp::array(out, keys.len());
            store.mget(&keys, |v| resp::bulk_or_nil(out, v));
        }
        Cmd::Expire => expire(store, argv, 1000, out),
        Cmd::Pexpire => expire(store, argv, 1, out),
        Cmd::Ttl | Cmd::Pttl => match store.ttl(argv.get(1)) {
            Ttl::Missing => resp::int(out, -2),
            Ttl::Persistent => resp::int(out, -1),
            // Rounded to the nearest second, as Redis does.
            Ttl::Millis(ms) if spec.cmd == Cmd::Ttl => resp::int(out, ((ms + 500) / 1000) as i64),
            Ttl::Millis(ms) => resp::int(out, ms as i64),
        },
        Cmd::Dbsize => resp::int(out, store.len() as i64),
        Cmd::Flushall => {
            let mode_ok = argc == 1
                || (argc == 2
                    && (argv.get(1).eq_ignore_ascii_case(b"sync")
                        || argv.get(1).eq_ignore_ascii_case(b"async")));
            if mode_ok {
                store.clear();
                resp::simple(out, "OK");
            } else {
                resp::error(out, SYNTAX);
            }
        }
        Cmd::Select => match parse_i64(argv.get(1)) {
            Some(0) => resp::simple(out, "OK"),
            Some(_) => resp::error(out, "ERR DB index is out of range"),
            None => resp::error(out, NOT_INTEGER),
        },
        Cmd::Quit => {
            resp::simple(out, "OK");
            return Flow::Close;
        }
        Cmd::Command => command(argv, out),
        Cmd::Config => config(limits, argv, out),
    }
    Flow::Continue
}

/// Redis' reply to an unknown command, quoting (a bounded part of) it.
fn unknown_command(argv: Argv<'_>, out: &mut Vec<u8>) {
    let show = |b: &[u8], max: usize| -> String {
        String::from_utf8_lossy(&b[..b.len().min(max)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut args = String::new();
    for arg in argv.from(1) {
        if args.len() >= 128 {
            break;
        }
        args.push_str(&format!("'{}' ", show(arg, 128 - args.len())));
    }
    resp::error(
        out,
        &format!(
            "ERR unknown command '{}', with args beginning with: {args}",
            show(argv.get(0), 128)
        ),
    );
}

fn set(store: &Store, argv: Argv<'_>, out: &mut Vec<u8>) {
    let mut cond = Condition::Always;
    let mut ttl = None;
    let mut get = false;
    let mut i = 3;
    while i < argv.len() {
        let opt = argv.get(i);
        let is = |s: &str| opt.eq_ignore_ascii_case(s.as_bytes());
        if is("nx") && cond != Condition::IfPresent {
            cond = Condition::IfAbsent;
        } else if is("xx") && cond != Condition::IfAbsent {
            cond = Condition::IfPresent;
        } else if is("get") {
            get = true;
        } else if is("keepttl") && ttl.is_none() {
            ttl = Some(SetTtl::Keep);
        } else if (is("ex") || is("px")) && ttl.is_none() && i + 1 < argv.len() {
            let Some(n) = parse_i64(argv.get(i + 1)) else {
                return resp::error(out, NOT_INTEGER);
            };
            let scale = if is("ex") { 1000 } else { 1 };
            let at = (n > 0)
                .then(|| (n as u64).checked_mul(scale))
                .flatten()
                .and_then(|ms| store.deadline(ms));
            let Some(at) = at else {
                return resp::error(out, "ERR invalid expire time in 'set' command");
            };
            ttl = Some(SetTtl::At(at));
            i += 1;
        } else {
            return resp::error(out, SYNTAX);
        }
        i += 1;
    }
    let ttl = ttl.unwrap_or(SetTtl::Clear);
    let stored = store.set(argv.get(1), argv.get(2), cond, ttl, &mut |old| {
        if get {
            resp::bulk_or_nil(out, old);
        }
    });
    match (get, stored) {
        (true, _) => {}
        (false, true) => resp::simple(out, "OK"),
        (false, false) => resp::nil(out),
    }
}

/// INCR / DECR / INCRBY / DECRBY; `delta` is `None` when the argument was
/// not an integer (or DECRBY's could not be negated).
fn incr(store: &Store, key: &[u8], delta: Option<Option<i64>>, out: &mut Vec<u8>) {
    match delta {
        None => resp::error(out, NOT_INTEGER),
        Some(None) => resp::error(out, "ERR decrement would overflow"),
        Some(Some(delta)) => match store.incr_by(key, delta) {
            Ok(n) => resp::int(out, n),
            Err(IncrError::NotInteger) => resp::error(out, NOT_INTEGER),
            Err(IncrError::Overflow) => {
                resp::error(out, "ERR increment or decrement would overflow")
            }
        },
    }
}

fn expire(store: &Store, argv: Argv<'_>, scale: u64, out: &mut Vec<u8>) {
    let name = if scale == 1 { "pexpire" } else { "expire" };
    let Some(n) = parse_i64(argv.get(2)) else {
        return resp::error(out, NOT_INTEGER);
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in argv.from(3) {
        match opt.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                return resp::error(
                    out,
                    &format!("ERR Unsupported option {}", String::from_utf8_lossy(opt)),
                )
            }
        }
    }
    if nx && (xx || gt || lt) {
        return resp::error(
            out,
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        );
    }
    if gt && lt {
        return resp::error(
            out,
            "ERR GT and LT options at the same time are not compatible",
        );
    }
    let cond = match (nx, xx, gt, lt) {
        (true, ..) => ExpireIf::NoExpiry,
        (_, _, true, _) => ExpireIf::Later,
        (_, _, _, true) => ExpireIf::Sooner,
        (_, true, ..) => ExpireIf::HasExpiry,
        _ => ExpireIf::Always,
    };
    // A deadline that is not in the future deletes the key.
    let at = if n <= 0 {
        None
    } else {
        match (n as u64)
            .checked_mul(scale)
            .and_then(|ms| store.deadline(ms))
        {
            Some(at) => Some(at),
            None => {
                return resp::error(out, &format!("ERR invalid expire time in '{name}' command"))
            }
        }
    };
    resp::int(out, i64::from(store.expire(argv.get(1), at, cond)));
}

fn command_info(spec: &Spec, out: &mut Vec<u8>) {
    resp::array(out, 6);
    resp::bulk(out, spec.name.as_bytes());
    resp::int(out, spec.arity);
    resp::array(out, spec.flags.len());
    for flag in spec.flags {
        resp::simple(out, flag);
    }
    resp::int(out, spec.keys.0);
    resp::int(out, spec.keys.1);
    resp::int(out, spec.keys.2);
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name...`, `COMMAND DOCS [name...]`
/// (empty: clients then use their built-in help).
fn command(argv: Argv<'_>, out: &mut Vec<u8>) {
    if argv.len() == 1 {
        resp::array(out, COMMANDS.len());
        for spec in COMMANDS {
            command_info(spec, out);
        }
        return;
    }
    let sub = argv.get(1).to_ascii_lowercase();
    match sub.as_slice() {
        b"count" if argv.len() == 2 => resp::int(out, COMMANDS.len() as i64),
        b"docs" => resp::array(out, 0),
        b"info" => {
            resp::array(out, argv.len() - 2);
            for name in argv.from(2) {
                match COMMANDS
                    .iter()
                    .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
                {
                    Some(spec) => command_info(spec, out),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        _ => resp::error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(argv.get(1))
            ),
        ),
    }
}

/// `CONFIG GET pattern...`: the few parameters clients ask for.
fn config(limits: &Limits, argv: Argv<'_>, out: &mut Vec<u8>) {
    if !argv.get(1).eq_ignore_ascii_case(b"get") || argv.len() < 3 {
        return resp::error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(argv.get(1))
            ),
        );
    }
    let params = config_params(limits);
    let matched: Vec<&(&str, String)> = params
        .iter()
        .filter(|(name, _)| {
            argv.from(2)
                .any(|p| glob(&p.to_ascii_lowercase(), name.as_bytes()))
        })
        .collect();
    resp::array(out, matched.len() * 2);
    for (name, value) in matched {
        resp::bulk(out, name.as_bytes());
        resp::bulk(out, value.as_bytes());
    }
}

/// Glob matching with `*` and `?` (enough for CONFIG GET). Greedy with
/// backtracking to the last `*` only, so O(pattern × text) whatever the
/// pattern: a client cannot make it explode with many stars.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last star take one more character.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn table_is_sorted() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b"save"));
        assert!(glob(b"sa?e", b"save"));
        assert!(glob(b"*max*", b"proto-max-bulk-len"));
        assert!(!glob(b"save", b"saves"));
        assert!(!glob(b"s*x", b"save"));
        assert!(glob(b"*e", b"save"));
        let many = [b'*'; 10_000];
        assert!(glob(&many, b"proto-max-bulk-len"));
        let mut hostile = many.to_vec();
        hostile.push(b'x');
        assert!(!glob(&hostile, b"proto-max-bulk-len"));
    }
}
