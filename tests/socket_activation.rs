//! Socket activation: listening sockets inherited from the parent process,
//! named as `fd://N` or passed by systemd (`LISTEN_FDS`/`LISTEN_PID`, driven
//! here by the real `systemd-socket-activate`), in both accept modes; and
//! the bad cases (not open, not a listener, named twice, sockets meant for
//! another process), each a clear error at build.

mod common;
use common::deploy_example as example;

use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixListener;
use std::process::Command;

use common::*;
use example::{free_port, Example};
use ringloop::{Error, SockAddr};

#[test]
fn fd_addresses_adopt_inherited_listeners() {
    for reuseport in [false, true] {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let dir = TempDir::new("fd-unix");
        let path = dir.join("s.sock");
        let unix = UnixListener::bind(&path).unwrap();
        let server = Running::start(
            Hooks::<()>::new()
                .on_traffic(echo_now)
                .builder()
                .listen(format!("fd://{}", tcp.into_raw_fd()))
                .listen(format!("fd://{}", unix.into_raw_fd()))
                .loops(2)
                .reuse_port(reuseport),
        );
        let addrs = server.engine.local_addrs();
        assert_eq!(addrs[0].sock_addr(), &SockAddr::Inet(tcp_addr));
        assert_eq!(addrs[1].to_string(), format!("unix://{}", path.display()));
        for i in 0..4u64 {
            echo_round_trip(&mut tcp_client(tcp_addr), &payload(i, 1000));
        }
        echo_round_trip(&mut unix_client(&path), b"over unix");
        server.stop();
        // The socket file is not ours to remove: the parent made it.
        assert!(path.exists());
    }
}

#[test]
fn bad_fd_addresses_are_clear_errors() {
    let build = |addr: String| {
        Hooks::<()>::new()
            .builder()
            .listen(addr)
            .build()
            .map(drop)
            .unwrap_err()
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let not_listening = std::net::TcpStream::connect(
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    )
    .unwrap();
    let cases = [
        ("fd://nope".to_string(), "descriptor number"),
        ("fd://-1".to_string(), "descriptor number"),
        ("fd://999999".to_string(), "not open"),
        (format!("fd://{}", udp.into_raw_fd()), "not a stream socket"),
        (
            format!("fd://{}", not_listening.into_raw_fd()),
            "not listening",
        ),
    ];
    for (addr, want) in cases {
        let err = build(addr.clone());
        assert!(matches!(err, Error::InvalidAddress { .. }), "{addr}: {err}");
        assert!(err.to_string().contains(want), "{addr}: {err}");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let raw = l.as_raw_fd();
    let err = Hooks::<()>::new()
        .builder()
        .listen(format!("fd://{raw}"))
        .listen(format!("fd://{raw}"))
        .build()
        .map(drop)
        .unwrap_err();
    assert!(err.to_string().contains("named twice"), "{err}");
    // The first mention took it (and closed it with the failed build).
    std::mem::forget(l);
}

#[test]
fn echo_started_by_systemd_socket_activate() {
    if !have_tool("systemd-socket-activate", "systemd") {
        return;
    }
    let port = free_port();
    let echo = example::example_binary("echo");
    let mut activated = Example::start_with("echo", &[] as &[&str], 0, |cmd: &mut Command| {
        *cmd = Command::new("systemd-socket-activate");
        cmd.args(["-l", &format!("127.0.0.1:{port}")])
            .arg(&echo)
            .args(["--systemd", "--loops", "2"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    });
    // systemd-socket-activate listens, and starts echo (in its own place,
    // same pid) at the first connection, passing it the socket.
    wait_until("the socket to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let line = activated.wait_for_line("echo listening on");
    assert!(line.contains(&format!("tcp://127.0.0.1:{port}")), "{line}");
    for i in 0..4u64 {
        echo_round_trip(
            &mut tcp_client(([127, 0, 0, 1], port).into()),
            &payload(i, 5000),
        );
    }
    activated.stop();
}

#[test]
fn sockets_meant_for_another_process_are_refused() {
    let mut echo = Example::start_with("echo", &["--systemd"], 0, |cmd| {
        cmd.env("LISTEN_FDS", "1").env("LISTEN_PID", "1");
    });
    let status = echo.wait_exit(PATIENCE).expect("exits");
    assert!(!status.success());
    let out = echo.output().join("\n");
    assert!(out.contains("are for process 1, not this one"), "{out}");
    let mut echo = Example::start_with("echo", &["--systemd"], 0, |cmd| {
        cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    });
    assert!(!echo.wait_exit(PATIENCE).expect("exits").success());
    let out = echo.output().join("\n");
    assert!(
        out.contains("LISTEN_PID and LISTEN_FDS are not set"),
        "{out}"
    );
}
