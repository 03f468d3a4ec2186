//! The cheapest io_uring echo we could write, directly on the `io-uring`
//! crate (issue 14's floor: how far below the mio loop can an io_uring
//! echo go at all on this machine?). One thread, one ring, no event loop,
//! no slot table: multishot accept, a receive into the provided buffer
//! ring, each received buffer sent straight back from where it landed (one
//! send in flight per connection, the rest queued in order), the buffer
//! returned to the ring when its send completes; every turn one
//! `io_uring_enter` that submits and waits.
//!
//! `--variant` picks the techniques, `+`-separated (so a variant is one
//! name in `harness bench --servers`): `lean` alone is deferred task
//! running, single issuer, task-run flag (ringloop's ring setup), plain
//! descriptors, multishot receive, 1,024 buffers of `--buf` bytes.
//! - `fixed`: a sparse registered file table; the accept installs each
//!   connection straight into it (direct descriptors), every operation names
//!   the table entry; TCP_NODELAY through the ring's socket command;
//! - `regring`: the ring's own descriptor registered (`io_uring_enter`
//!   skips its file lookup);
//! - `coop` (cooperative task running + task-run flag, single issuer),
//!   `plain` (no setup flag), `sqpoll` (a kernel thread polls the
//!   submission queue; it runs on the other core and belongs to this
//!   process's thread group, so /proc/PID/stat counts it): instead of
//!   deferred task running;
//! - `nosqarray`: `IORING_SETUP_NO_SQARRAY`;
//! - `single`: a one-shot receive (buffer select) re-armed at each
//!   completion instead of a multishot one;
//! - `bundle`: multishot receive bundles (`IORING_RECVSEND_BUNDLE`, one
//!   completion may hold several consecutive buffers; each is sent back in
//!   order);
//! - `bufs=N`, `size=S`: buffer count (power of two) and size. A receive
//!   ended for want of buffers (`ENOBUFS`) is re-armed at the end of a turn
//!   that gave buffers back, one connection per buffer in the ring.
//!
//! A harness tool, not a server: a connection closed after a failed send
//! does not cancel its receive first (the benchmark's loads end cleanly).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::libc;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};

use crate::Result;

/// Which ring setup the echo asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Defer,
    Coop,
    Plain,
    Sqpoll,
}

/// How connections receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvMode {
    Multishot,
    Single,
    Bundle,
}

/// The techniques of one run (see the module doc).
#[derive(Clone, Debug)]
pub struct Variant {
    setup: Setup,
    recv: RecvMode,
    fixed: bool,
    regring: bool,
    nosqarray: bool,
    bufs: u16,
    buf_size: u32,
}

impl Variant {
    /// Parses `lean+fixed+regring+bufs=4096` (the leading `lean` optional).
    pub fn parse(text: &str, buf: usize) -> Result<Variant> {
        let mut v = Variant {
            setup: Setup::Defer,
            recv: RecvMode::Multishot,
            fixed: false,
            regring: false,
            nosqarray: false,
            bufs: 1024,
            buf_size: u32::try_from(buf).map_err(|_| "--buf too large")?,
        };
        for part in text.split('+').filter(|p| !p.is_empty() && *p != "lean") {
            match part.split_once('=') {
                Some(("bufs", n)) => v.bufs = n.parse().map_err(|e| format!("bufs={n}: {e}"))?,
                Some(("size", n)) => {
                    v.buf_size = n.parse().map_err(|e| format!("size={n}: {e}"))?
                }
                _ => match part {
                    "fixed" => v.fixed = true,
                    "regring" => v.regring = true,
                    "nosqarray" => v.nosqarray = true,
                    "coop" => v.setup = Setup::Coop,
                    "plain" => v.setup = Setup::Plain,
                    "sqpoll" => v.setup = Setup::Sqpoll,
                    "defer" => v.setup = Setup::Defer,
                    "single" => v.recv = RecvMode::Single,
                    "bundle" => v.recv = RecvMode::Bundle,
                    other => return Err(format!("unknown lean variant part {other:?}").into()),
                },
            }
        }
        if !v.bufs.is_power_of_two() || v.bufs > 32768 || v.buf_size == 0 {
            return Err("bufs must be a power of two up to 32768 and size above 0".into());
        }
        Ok(v)
    }
}

/// What a completion belongs to: the kind in the top byte, the connection
/// (its descriptor, or its registered file table entry) below.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;
const STOP: u64 = 4 << 56;
const CLOSE: u64 = 5 << 56;
const SOCKOPT: u64 = 6 << 56;
const KIND: u64 = 0xff << 56;

/// Entries of the registered file table (`fixed`).
const FIXED_FILES: u32 = 4096;
/// The buffer group of the provided buffer ring.
const GROUP: u16 = 0;
/// TCP_NODELAY's value, for the ring's socket command (`fixed`).
static ONE: libc::c_int = 1;

/// A send queued or in flight: buffer `bid`, bytes `start..end` of it.
#[derive(Clone, Copy, Debug)]
struct Out {
    bid: u16,
    start: u32,
    end: u32,
}

/// One connection.
#[derive(Default)]
struct Conn {
    open: bool,
    /// The send in flight (at most one, so a socket's bytes stay in order).
    sending: Option<Out>,
    queued: VecDeque<Out>,
    /// The peer closed (or a receive failed): close once the queue drains.
    finishing: bool,
}

/// The provided buffer ring and its buffers.
struct Buffers {
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    mem: Vec<u8>,
    size: u32,
    mask: u16,
    /// Our tail (published to the kernel by `publish`).
    tail: u16,
    /// Which buffer sits at each ring position (for bundles).
    at: Vec<u16>,
    /// Ring position of the next buffer the kernel takes (for bundles).
    head: u16,
    /// Buffers in the ring (given minus taken), as far as completions say.
    free: u32,
}

impl Buffers {
    fn register(uring: &IoUring, count: u16, size: u32) -> io::Result<Buffers> {
        let ring_bytes = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, no address hint; checked below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut b = Buffers {
            ring: ring.cast(),
            ring_bytes,
            mem: vec![0; usize::from(count) * size as usize],
            size,
            mask: count - 1,
            tail: 0,
            at: vec![0; usize::from(count)],
            head: 0,
            free: 0,
        };
        // SAFETY: the mapping lives until `Buffers` drops, after the ring
        // (the caller drops the ring first: see `run`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, count, GROUP, 0)?
        };
        for bid in 0..count {
            b.give(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Puts buffer `bid` at our tail (the kernel sees it at `publish`).
    fn give(&mut self, bid: u16) {
        let pos = self.tail & self.mask;
        // SAFETY: `pos` is below the ring's entry count; the kernel reads
        // entries only between its head and the published tail, and this one
        // is past the published tail.
        let entry = unsafe { &mut *self.ring.add(usize::from(pos)) };
        entry.set_addr(self.mem[bid as usize * self.size as usize..].as_ptr() as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.at[usize::from(pos)] = bid;
        self.tail = self.tail.wrapping_add(1);
        self.free += 1;
    }

    /// Publishes the tail: the buffers given so far become the kernel's.
    fn publish(&self) {
        // SAFETY: the tail field of entry 0, shared with the kernel; a
        // release store orders the entries' writes before it (the kernel
        // reads the tail with an acquire load).
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn bytes(&self, out: Out) -> *const u8 {
        self.mem[out.bid as usize * self.size as usize + out.start as usize..].as_ptr()
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `register`, no longer registered (the
        // ring is gone).
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}

/// The ring and everything the loop keeps.
struct Echo {
    v: Variant,
    uring: IoUring,
    conns: Vec<Conn>,
    /// The ring's index among this thread's registered rings (`regring`).
    registered: Option<u32>,
    /// Connections whose receive ended for want of buffers: re-armed when
    /// buffers come back, at most one per buffer in the ring.
    starved: VecDeque<u32>,
    completions: u64,
    enters: u64,
}

/// Serves until SIGINT or SIGTERM; prints what it counted.
pub fn run(addr: SocketAddr, buf: usize, variant: &str) -> Result<()> {
    let v = Variant::parse(variant, buf)?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    let bell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    let bell_fd = bell.as_raw_fd();
    std::thread::spawn(move || {
        let _ = mask.wait();
        let _ = bell.write(1);
    });

    let mut builder = IoUring::<squeue::Entry, cqueue::Entry>::builder();
    builder.setup_cqsize(4096);
    match v.setup {
        Setup::Defer => {
            builder
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        }
        Setup::Coop => {
            builder
                .setup_single_issuer()
                .setup_coop_taskrun()
                .setup_taskrun_flag();
        }
        Setup::Plain => {}
        Setup::Sqpoll => {
            builder.setup_sqpoll(2000);
        }
    }
    if v.nosqarray {
        builder.setup_no_sqarray();
    }
    let uring = builder.build(1024)?;
    let registered = if v.regring {
        Some(register_ring_fd(&uring)?)
    } else {
        None
    };
    if v.fixed {
        uring.submitter().register_files_sparse(FIXED_FILES)?;
    }
    let mut bufs = Buffers::register(&uring, v.bufs, v.buf_size)?;
    let listener = TcpListener::bind(addr)?;
    println!(
        "uring-lean echo listening on tcp://{} (1 thread, io-uring crate directly, variant {variant}: {v:?})",
        listener.local_addr()?
    );
    let mut echo = Echo {
        v,
        uring,
        conns: Vec::new(),
        registered,
        starved: VecDeque::new(),
        completions: 0,
        enters: 0,
    };
    let lfd = listener.as_raw_fd();
    echo.push(
        opcode::AcceptMulti::new(types::Fd(lfd))
            .allocate_file_index(echo.v.fixed)
            .build()
            .user_data(ACCEPT),
    )?;
    echo.push(
        opcode::PollAdd::new(types::Fd(bell_fd), libc::POLLIN as u32)
            .build()
            .user_data(STOP),
    )?;
    let result = echo.serve(&mut bufs);
    eprintln!(
        "uring-lean echo: stopping ({} io_uring_enter, {} completions)",
        echo.enters, echo.completions
    );
    // The ring goes before the buffers it may write into.
    drop(echo);
    drop(bufs);
    drop(listener);
    result
}

impl Echo {
    /// Queues `entry`, submitting first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points at (provided buffers,
        // `ONE`) outlives the ring (see `run`).
        while unsafe { self.uring.submission().push(&entry) }.is_err() {
            self.uring.submit()?;
        }
        Ok(())
    }

    fn target(&self, conn: u32) -> Target {
        if self.v.fixed {
            Target::Fixed(conn)
        } else {
            Target::Fd(conn as RawFd)
        }
    }

    fn arm_recv(&mut self, conn: u32) -> io::Result<()> {
        let t = self.target(conn);
        let entry = match (self.v.recv, t) {
            (RecvMode::Multishot, Target::Fixed(i)) => {
                opcode::RecvMulti::new(types::Fixed(i), GROUP).build()
            }
            (RecvMode::Multishot, Target::Fd(fd)) => {
                opcode::RecvMulti::new(types::Fd(fd), GROUP).build()
            }
            (RecvMode::Bundle, Target::Fixed(i)) => {
                opcode::RecvMultiBundle::new(types::Fixed(i), GROUP).build()
            }
            (RecvMode::Bundle, Target::Fd(fd)) => {
                opcode::RecvMultiBundle::new(types::Fd(fd), GROUP).build()
            }
            (RecvMode::Single, Target::Fixed(i)) => {
                opcode::Recv::new(types::Fixed(i), std::ptr::null_mut(), 0)
                    .buf_group(GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
            (RecvMode::Single, Target::Fd(fd)) => {
                opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
                    .buf_group(GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
        };
        self.push(entry.user_data(RECV | u64::from(conn)))
    }

    fn send(&mut self, conn: u32, out: Out, bufs: &Buffers) -> io::Result<()> {
        let ptr = bufs.bytes(out);
        let len = out.end - out.start;
        let entry = match self.target(conn) {
            Target::Fixed(i) => opcode::Send::new(types::Fixed(i), ptr, len).build(),
            Target::Fd(fd) => opcode::Send::new(types::Fd(fd), ptr, len).build(),
        };
        self.conns[conn as usize].sending = Some(out);
        self.push(entry.user_data(SEND | u64::from(conn)))
    }

    fn close(&mut self, conn: u32) -> io::Result<()> {
        let c = &mut self.conns[conn as usize];
        if !c.open {
            return Ok(());
        }
        c.open = false;
        let entry = match self.target(conn) {
            Target::Fixed(i) => opcode::Close::new(types::Fixed(i)).build(),
            Target::Fd(fd) => opcode::Close::new(types::Fd(fd)).build(),
        };
        self.push(entry.user_data(CLOSE | u64::from(conn)))
    }

    /// Queues bytes of buffer `bid` for connection `conn`.
    fn echo(&mut self, conn: u32, out: Out, bufs: &mut Buffers) -> io::Result<()> {
        let c = &mut self.conns[conn as usize];
        if !c.open {
            bufs.give(out.bid);
            return Ok(());
        }
        if c.sending.is_some() {
            c.queued.push_back(out);
            Ok(())
        } else {
            self.send(conn, out, bufs)
        }
    }

    /// Send `done` of connection `conn` has completed: the next, or the
    /// close the connection waits for.
    fn sent(&mut self, conn: u32, bufs: &mut Buffers) -> io::Result<()> {
        let c = &mut self.conns[conn as usize];
        c.sending = None;
        if let Some(next) = c.queued.pop_front() {
            return self.send(conn, next, bufs);
        }
        if c.finishing {
            self.close(conn)?;
        }
        Ok(())
    }

    fn serve(&mut self, bufs: &mut Buffers) -> Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
        loop {
            self.enters += 1;
            match self.enter() {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e.into()),
            }
            cqes.clear();
            cqes.extend(
                self.uring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            self.completions += cqes.len() as u64;
            for &(ud, res, flags) in &cqes {
                let conn = (ud & !KIND) as u32;
                match ud & KIND {
                    ACCEPT => {
                        if res >= 0 {
                            self.accepted(res as u32)?;
                        } else {
                            eprintln!("uring-lean: accept: {}", io::Error::from_raw_os_error(-res));
                        }
                        if !cqueue::more(flags) {
                            return Err("uring-lean: multishot accept ended".into());
                        }
                    }
                    RECV => self.received(conn, res, flags, bufs)?,
                    SEND => {
                        let Some(out) = self.conns[conn as usize].sending else {
                            continue;
                        };
                        if res < 0 {
                            bufs.give(out.bid);
                            self.conns[conn as usize].sending = None;
                            self.drain_queue(conn, bufs);
                            self.close(conn)?;
                        } else if (res as u32) < out.end - out.start {
                            let rest = Out {
                                start: out.start + res as u32,
                                ..out
                            };
                            self.send(conn, rest, bufs)?;
                        } else {
                            bufs.give(out.bid);
                            self.sent(conn, bufs)?;
                        }
                    }
                    STOP => return Ok(()),
                    CLOSE | SOCKOPT => {}
                    _ => eprintln!("uring-lean: unknown completion {ud:#x}"),
                }
            }
            bufs.publish();
            let mut free = bufs.free;
            while free > 0 {
                let Some(conn) = self.starved.pop_front() else {
                    break;
                };
                if self.conns[conn as usize].open {
                    self.arm_recv(conn)?;
                    free -= 1;
                }
            }
        }
    }

    /// Submits what is queued and waits for a completion: through the
    /// crate, or (`regring`) by the registered ring index.
    fn enter(&mut self) -> io::Result<usize> {
        let Some(index) = self.registered else {
            return self.uring.submit_and_wait(1);
        };
        let to_submit = self.uring.submission().len() as u32;
        // SAFETY: io_uring_enter with no argument pointer; the index names
        // this ring, registered by this thread (`register_ring_fd`).
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                index,
                to_submit,
                1u32,
                ENTER_GETEVENTS | ENTER_REGISTERED_RING,
                std::ptr::null::<libc::c_void>(),
                0usize,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    fn drain_queue(&mut self, conn: u32, bufs: &mut Buffers) {
        for out in self.conns[conn as usize].queued.drain(..) {
            bufs.give(out.bid);
        }
    }

    fn accepted(&mut self, conn: u32) -> io::Result<()> {
        if self.conns.len() <= conn as usize {
            self.conns.resize_with(conn as usize + 1, Conn::default);
        }
        self.conns[conn as usize] = Conn {
            open: true,
            ..Conn::default()
        };
        if self.v.fixed {
            let entry = opcode::SetSockOpt::new(
                types::Fixed(conn),
                libc::IPPROTO_TCP as u32,
                libc::TCP_NODELAY as u32,
                std::ptr::addr_of!(ONE).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(SOCKOPT | u64::from(conn));
            self.push(entry)?;
        } else {
            // SAFETY: the accept's descriptor, borrowed for the call only
            // (`ManuallyDrop` keeps it open).
            let fd = std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(conn as RawFd) });
            nix::sys::socket::setsockopt(&*fd, nix::sys::socket::sockopt::TcpNoDelay, &true)?;
        }
        self.arm_recv(conn)
    }

    fn received(&mut self, conn: u32, res: i32, flags: u32, bufs: &mut Buffers) -> io::Result<()> {
        let more = cqueue::more(flags);
        if res > 0 {
            let Some(bid) = cqueue::buffer_select(flags) else {
                return Err(io::Error::other("a receive without a buffer"));
            };
            let len = res as u32;
            let taken = if self.v.recv == RecvMode::Bundle {
                len.div_ceil(bufs.size)
            } else {
                1
            };
            bufs.free = bufs.free.saturating_sub(taken);
            if self.v.recv == RecvMode::Bundle {
                // The bundle's buffers are consecutive ring positions from
                // the kernel's head.
                let n = len.div_ceil(bufs.size) as u16;
                if bufs.at[usize::from(bufs.head & bufs.mask)] != bid {
                    return Err(io::Error::other("bundle: ring position lost"));
                }
                for k in 0..n {
                    let b = bufs.at[usize::from(bufs.head.wrapping_add(k) & bufs.mask)];
                    let end = if k + 1 == n {
                        len - u32::from(k) * bufs.size
                    } else {
                        bufs.size
                    };
                    self.echo(
                        conn,
                        Out {
                            bid: b,
                            start: 0,
                            end,
                        },
                        bufs,
                    )?;
                }
                bufs.head = bufs.head.wrapping_add(n);
            } else {
                self.echo(
                    conn,
                    Out {
                        bid,
                        start: 0,
                        end: len,
                    },
                    bufs,
                )?;
            }
            if !more && self.conns[conn as usize].open {
                // One-shot receives, and a multishot the kernel ended
                // (out of buffers): arm again.
                return self.arm_recv(conn);
            }
            return Ok(());
        }
        if res == -libc::ENOBUFS {
            // Out of buffers: re-armed when some come back (end of a turn).
            if !more {
                self.starved.push_back(conn);
            }
            return Ok(());
        }
        // End of stream or a failure: close once what is queued is sent.
        if let Some(bid) = cqueue::buffer_select(flags) {
            bufs.free = bufs.free.saturating_sub(1);
            bufs.give(bid);
        }
        if more {
            return Ok(());
        }
        let c = &mut self.conns[conn as usize];
        if c.sending.is_none() {
            self.close(conn)
        } else {
            c.finishing = true;
            Ok(())
        }
    }
}

const ENTER_GETEVENTS: u32 = 1;
const ENTER_REGISTERED_RING: u32 = 1 << 4;
const REGISTER_RING_FDS: u32 = 20;

/// `struct io_uring_rsrc_update`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Registers the ring's descriptor with this thread
/// (`IORING_REGISTER_RING_FDS`); its index for `io_uring_enter`.
fn register_ring_fd(uring: &IoUring) -> io::Result<u32> {
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: uring.as_raw_fd() as u64,
    };
    // SAFETY: one `io_uring_rsrc_update` the kernel reads and writes back
    // (the index it chose) during the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            uring.as_raw_fd(),
            REGISTER_RING_FDS,
            std::ptr::addr_of_mut!(up),
            1u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(up.offset)
}

/// A connection as operations name it.
#[derive(Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}
