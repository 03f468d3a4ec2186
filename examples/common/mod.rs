//! Command-line handling shared by the server examples: addresses as
//! positional URLs, `--loops N`, and example-specific `--flag value` options.

#![allow(dead_code)] // each example uses a different subset

use std::collections::HashMap;
use std::process::exit;

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
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if switches.contains(&name.as_str()) {
                args.flags.insert(name, "true".into());
                continue;
            }
            if name != "loops" && !valued.contains(&name.as_str()) {
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
        args
    }

    /// The addresses, or `default` if none was given.
    pub fn addrs_or(&self, default: &str) -> Vec<String> {
        if self.addrs.is_empty() {
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

/// Builds, prints where it listens, stops on Ctrl-C, runs; exits non-zero on error.
pub fn serve<H: ringloop::EventHandler>(name: &str, builder: ringloop::EngineBuilder<H>) {
    let server = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(1)
        }
    };
    let engine = server.engine();
    if let Err(e) = ringloop::stop_on_signals(&engine) {
        eprintln!("{name}: {e}");
        exit(1)
    }
    for addr in engine.local_addrs() {
        println!(
            "{name} listening on {addr} with {} loops",
            engine.loop_count()
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
