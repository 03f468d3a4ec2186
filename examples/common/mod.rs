//! Command-line handling shared by the server examples: addresses as
//! positional URLs, `--loops N`, example-specific `--flag value` options, and
//! the options every server takes (see [`DEPLOY_USAGE`]): the I/O driver
//! (`--backend auto|epoll|io-uring`; `--driver` in an example whose own
//! `--backend` names something else, the proxy's upstream) and the
//! deployment options.

#![allow(dead_code)] // each example uses a different subset

use std::collections::HashMap;
use std::process::exit;
use std::sync::OnceLock;

/// The deployment options every server example takes.
pub const DEPLOY_USAGE: &str =
    "[--backend auto|epoll|io-uring] [--max-conns N] [--max-conns-per-source N] [--accept-rate PER_SECOND] [--proxy-protocol] [--systemd] [--upgrade PATH] [--upgrade-deadline-ms MS]";
const DEPLOY_VALUED: &[&str] = &[
    "driver",
    "max-conns",
    "max-conns-per-source",
    "accept-rate",
    "upgrade",
    "upgrade-deadline-ms",
];
const DEPLOY_SWITCHES: &[&str] = &["proxy-protocol", "systemd"];

/// Exits with a message if any of `addrs` is a `udp://` address: for the
/// examples whose handler serves streams only.
pub fn refuse_datagrams(addrs: &[String]) {
    if let Some(udp) = addrs.iter().find(|a| a.starts_with("udp://")) {
        eprintln!(
            "error: {udp}: this example serves streams (tcp://, unix://, tls://); \
             its handler has no on_datagram (the echo example answers datagrams)"
        );
        exit(2);
    }
}

/// The deployment options given, for [`deploy`].
static DEPLOY: OnceLock<HashMap<String, String>> = OnceLock::new();

/// Parsed arguments.
pub struct Args {
    /// Listen addresses in URL form.
    pub addrs: Vec<String>,
    /// `--loops N`, if given.
    pub loops: Option<usize>,
    flags: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args`, accepting `--loops` and the given extra flags
    /// (each takes a value unless listed in `switches`). Prints usage and exits
    /// on a bad argument.
    pub fn parse(usage: &str, valued: &[&str], switches: &[&str]) -> Args {
        let mut args = Args {
            addrs: Vec::new(),
            loops: None,
            flags: HashMap::new(),
        };
        // The driver is `--backend`, unless the example's own `--backend`
        // means something else: then it is `--driver` (always accepted).
        let backend_is_driver = !valued.contains(&"backend");
        let usage = if backend_is_driver {
            format!("{usage} {DEPLOY_USAGE}")
        } else {
            format!(
                "{usage} {}",
                DEPLOY_USAGE.replace("--backend auto", "--driver auto")
            )
        };
        let fail = |msg: String| -> ! {
            eprintln!("error: {msg}\nusage: {usage}");
            exit(2)
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                println!("usage: {usage}");
                exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                args.addrs.push(arg);
                continue;
            };
            let (mut name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if name == "backend" && backend_is_driver {
                name = "driver".into();
            }
            if switches.contains(&name.as_str()) || DEPLOY_SWITCHES.contains(&name.as_str()) {
                args.flags.insert(name, "true".into());
                continue;
            }
            if name != "loops"
                && !valued.contains(&name.as_str())
                && !DEPLOY_VALUED.contains(&name.as_str())
            {
                fail(format!("unknown option --{name}"));
            }
            let value = inline
                .or_else(|| it.next())
                .unwrap_or_else(|| fail(format!("--{name} needs a value")));
            if name == "loops" {
                args.loops =
                    Some(value.parse().unwrap_or_else(|_| {
                        fail(format!("--loops takes a number, not {value:?}"))
                    }));
            } else {
                args.flags.insert(name, value);
            }
        }
        let deploy = args
            .flags
            .iter()
            .filter(|(k, _)| {
                DEPLOY_VALUED.contains(&k.as_str()) || DEPLOY_SWITCHES.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = DEPLOY.set(deploy);
        args
    }

    /// The stream addresses (`tcp://`, `unix://`, `tls://`, `fd://`), or
    /// `default` if none was given (none with `--systemd`: the sockets come
    /// from systemd). A `udp://` address is refused with a message: this
    /// example's handler has no `on_datagram`, so datagrams would be dropped.
    pub fn addrs_or(&self, default: &str) -> Vec<String> {
        let addrs = self.addrs_with_datagrams_or(default);
        refuse_datagrams(&addrs);
        addrs
    }

    /// [`addrs_or`](Self::addrs_or) for an example that also serves
    /// `udp://` (its handler implements `on_datagram`).
    pub fn addrs_with_datagrams_or(&self, default: &str) -> Vec<String> {
        if self.addrs.is_empty() && !self.switch("systemd") {
            vec![default.to_string()]
        } else {
            self.addrs.clone()
        }
    }

    /// A numeric flag, or `default`.
    pub fn number(&self, name: &str, default: u64) -> u64 {
        match self.flags.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("error: --{name} takes a number, not {v:?}");
                exit(2)
            }),
        }
    }

    /// A string flag.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
}

/// Applies the driver and deployment options given on the command line: the
/// backend, connection limits and the PROXY protocol on every stream
/// listener.
pub fn deploy<H: ringloop::EventHandler>(
    mut builder: ringloop::EngineBuilder<H>,
) -> ringloop::EngineBuilder<H> {
    let Some(flags) = DEPLOY.get() else {
        return builder;
    };
    let number = |name: &str| {
        flags.get(name).map(|v| {
            v.parse::<u32>().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                eprintln!("error: --{name} takes a positive number, not {v:?}");
                exit(2)
            })
        })
    };
    if let Some(name) = flags.get("driver") {
        let backend = name.parse::<ringloop::Backend>().unwrap_or_else(|e| {
            eprintln!("error: --backend/--driver: {e}");
            exit(2)
        });
        builder = builder.backend(backend);
    }
    if let Some(n) = number("max-conns") {
        builder = builder.max_conns(n as usize);
    }
    if let Some(n) = number("max-conns-per-source") {
        builder = builder.max_conns_per_source(n as usize);
    }
    if let Some(n) = number("accept-rate") {
        builder = builder.accept_rate(ringloop::AcceptRate::new(n, n));
    }
    if let Some(path) = flags.get("upgrade") {
        // Take over from the process serving PATH (it drains and exits),
        // else bind; then serve PATH for the next upgrade.
        builder = builder.upgrade_socket(path);
    }
    if let Some(ms) = number("upgrade-deadline-ms") {
        builder = builder.upgrade_deadline(std::time::Duration::from_millis(u64::from(ms)));
    }
    if flags.contains_key("systemd") {
        builder = builder.listen_systemd();
    }
    builder.proxy_protocol(flags.contains_key("proxy-protocol"))
}

/// Builds, prints where it listens, stops on Ctrl-C, runs; exits non-zero on error.
pub fn serve<H: ringloop::EventHandler>(name: &str, builder: ringloop::EngineBuilder<H>) {
    let server = match deploy(builder).build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(1)
        }
    };
    let engine = server.handle();
    if let Err(e) = ringloop::stop_on_signals(&engine) {
        eprintln!("{name}: {e}");
        exit(1)
    }
    for addr in engine.local_addrs() {
        println!(
            "{name} listening on {addr} with {} loops on {}",
            engine.loop_count(),
            engine.backend()
        );
    }
    if let Err(e) = server.run() {
        eprintln!("{name}: {e}");
        exit(1)
    }
    println!("{name} stopped");
}

/// The TLS flags every server example takes: `--tls-cert PATH --tls-key PATH`
/// (a PEM chain and its key: serve `tls://` addresses, offering `alpn`) and
/// `--backend-ca PATH` (PEM CA certificates that `tls://` backends must be
/// signed by), applied to `builder`. Exits with a message on a bad file.
pub fn with_tls<H: ringloop::EventHandler>(
    args: &Args,
    alpn: &[&[u8]],
    mut builder: ringloop::EngineBuilder<H>,
) -> ringloop::EngineBuilder<H> {
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}");
        exit(2)
    };
    match (args.text("tls-cert"), args.text("tls-key")) {
        (Some(cert), Some(key)) => {
            let config = ringloop::tls::ServerTls::from_pem_files(cert, key)
                .and_then(|tls| tls.alpn(alpn).build())
                .unwrap_or_else(|e| fail(format!("--tls-cert/--tls-key: {e}")));
            builder = builder.tls_server(config);
        }
        (None, None) => {}
        _ => fail("--tls-cert and --tls-key go together".into()),
    }
    if let Some(ca) = args.text("backend-ca") {
        let config = std::fs::read(ca)
            .map_err(|e| ringloop::Error::io("read --backend-ca", e))
            .and_then(|pem| ringloop::tls::client_config(&pem))
            .unwrap_or_else(|e| fail(format!("--backend-ca {ca}: {e}")));
        builder = builder.tls_client(config);
    }
    builder
}
