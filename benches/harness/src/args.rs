//! A small command-line parser: positional arguments plus `--name value`,
//! `--name=value` and `--switch`, with unknown options rejected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::Result;

/// Parsed arguments of one subcommand.
pub struct Args {
    positional: Vec<String>,
    values: HashMap<&'static str, String>,
    switches: Vec<&'static str>,
}

impl Args {
    /// Parses `argv`; `valued` lists options that take a value, `switches` those that do not.
    pub fn parse(
        argv: &[String],
        valued: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Args> {
        let mut args = Args {
            positional: Vec::new(),
            values: HashMap::new(),
            switches: Vec::new(),
        };
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            if !arg.starts_with("--") {
                args.positional.push(arg.clone());
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            if let Some(&known) = valued.iter().find(|&&v| v == name) {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .ok_or_else(|| format!("{name} needs a value"))?
                        .clone(),
                };
                if args.values.insert(known, value).is_some() {
                    return Err(format!("{name} given twice").into());
                }
            } else if let Some(&known) = switches.iter().find(|&&s| s == name) {
                if inline.is_some() {
                    return Err(format!("{name} takes no value").into());
                }
                args.switches.push(known);
            } else {
                return Err(format!("unknown option {name}").into());
            }
        }
        Ok(args)
    }

    /// The `--name` value parsed as `T`, if given.
    pub fn value<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| format!("{name} {v:?}: {e}").into()),
        }
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    /// The positional arguments, checked to be exactly `names.len()` long.
    pub fn positional(&self, names: &[&str]) -> Result<&[String]> {
        if self.positional.len() != names.len() {
            return Err(format!(
                "expected {} positional argument(s) ({}), got {:?}",
                names.len(),
                names.join(" "),
                self.positional
            )
            .into());
        }
        Ok(&self.positional)
    }
}

/// Parses `tcp://HOST:PORT` (or a bare `HOST:PORT`) into a socket address.
pub fn parse_url(url: &str) -> Result<SocketAddr> {
    match parse_endpoint(url)? {
        (false, addr) => Ok(addr),
        (true, _) => Err(format!("{url:?}: only tcp:// addresses are supported here").into()),
    }
}

/// Parses `tcp://IP:PORT`, `udp://IP:PORT` or a bare `IP:PORT` (TCP);
/// returns whether it is UDP, and the address.
pub fn parse_endpoint(url: &str) -> Result<(bool, SocketAddr)> {
    let (udp, rest) = if let Some(rest) = url.strip_prefix("udp://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("tcp://").unwrap_or(url))
    };
    if rest.contains("://") {
        return Err(format!("{url:?}: only tcp:// and udp:// addresses are supported").into());
    }
    let addr = rest
        .parse()
        .map_err(|e| format!("{url:?}: expected tcp://IP:PORT or udp://IP:PORT ({e})"))?;
    Ok((udp, addr))
}

/// Seconds as a float, rejecting negative and non-finite values.
pub fn seconds(value: f64, name: &str) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value).map_err(|e| format!("{name} {value}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_switches_and_positionals() {
        let a = Args::parse(
            &argv("tcp://127.0.0.1:1 --conns 5 --size=7 --quick"),
            &["--conns", "--size"],
            &["--quick"],
        )
        .unwrap();
        assert_eq!(a.value::<usize>("--conns").unwrap(), Some(5));
        assert_eq!(a.value::<usize>("--size").unwrap(), Some(7));
        assert_eq!(a.value::<usize>("--seconds").unwrap(), None);
        assert!(a.switch("--quick"));
        assert_eq!(a.positional(&["ADDR"]).unwrap(), ["tcp://127.0.0.1:1"]);
    }

    #[test]
    fn rejects_unknown_missing_and_repeated() {
        assert!(Args::parse(&argv("--nope"), &[], &[]).is_err());
        assert!(Args::parse(&argv("--conns"), &["--conns"], &[]).is_err());
        assert!(Args::parse(&argv("--conns 1 --conns 2"), &["--conns"], &[]).is_err());
        assert!(Args::parse(&argv("--quick=1"), &[], &["--quick"]).is_err());
        let a = Args::parse(&argv("--conns x"), &["--conns"], &[]).unwrap();
        assert!(a.value::<usize>("--conns").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("tcp://127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            parse_url("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert!(parse_url("udp://127.0.0.1:9000").is_err());
        assert!(parse_url("tcp://localhost").is_err());
        assert_eq!(
            parse_endpoint("udp://127.0.0.1:9000").unwrap(),
            (true, "127.0.0.1:9000".parse().unwrap())
        );
        assert!(!parse_endpoint("tcp://127.0.0.1:9000").unwrap().0);
        assert!(parse_endpoint("unix:///tmp/x").is_err());
    }
}
