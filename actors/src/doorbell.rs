//! The doorbell: the file descriptor a parked owner waits on and a producer
//! writes to wake it.
//!
//! Owns the fd(s) and the three operations on them: ring, drain, wait. It knows
//! nothing of messages or of the wake word; it must never be rung on a hot path
//! (the wake word decides when ringing is needed).
//!
//! Two implementations, both built and tested on Linux, chosen by
//! [`DoorbellKind`]:
//! * **eventfd** (`EFD_NONBLOCK | EFD_CLOEXEC`): one fd; a ring adds 1 to the
//!   counter. Registered edge-triggered in an epoll set it needs no draining,
//!   since every write makes a new edge.
//! * **pipe** (`O_NONBLOCK | O_CLOEXEC`), for systems without eventfd: a ring
//!   writes one byte; the reader must drain it, so register it level-triggered.
//!
//! Under `cfg(loom)` the doorbell is a model (a counter behind a loom mutex and
//! condition variable) so that the mailbox's park/notify protocol can be checked
//! with the rest of the code unchanged.

#[cfg(not(loom))]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;
use std::{fmt, io};

/// Which kind of fd a [`Doorbell`] uses.
///
/// ```
/// use ringloop_actors::{Doorbell, DoorbellKind};
/// let bell = Doorbell::new(DoorbellKind::Auto)?;
/// assert_ne!(bell.kind(), DoorbellKind::Auto); // resolved to eventfd or pipe
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DoorbellKind {
    /// eventfd where the kernel has it, a pipe otherwise.
    #[default]
    Auto,
    /// Always an eventfd (fails where eventfd is missing).
    EventFd,
    /// Always a pipe.
    Pipe,
}

/// The wake-up fd of one mailbox (see the module docs).
///
/// ```
/// use ringloop_actors::{Doorbell, DoorbellKind};
/// use std::time::Duration;
/// let bell = std::sync::Arc::new(Doorbell::new(DoorbellKind::Auto)?);
/// let b = bell.clone();
/// let ringer = std::thread::spawn(move || b.ring());
/// assert!(bell.wait(Some(Duration::from_secs(5)))?); // woken by the other thread
/// ringer.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Doorbell {
    imp: Imp,
}

#[cfg(not(loom))]
enum Imp {
    EventFd(nix::sys::eventfd::EventFd),
    Pipe { read: OwnedFd, write: OwnedFd },
}

#[cfg(loom)]
struct Imp {
    kind: DoorbellKind,
    rung: crate::sync::Mutex<u64>,
    cond: crate::sync::Condvar,
}

#[cfg(not(loom))]
fn to_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Doorbell {
    /// Opens a doorbell of the given kind.
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// let bell = Doorbell::new(DoorbellKind::Pipe)?;
    /// assert_eq!(bell.kind(), DoorbellKind::Pipe);
    /// bell.ring()?;
    /// assert!(bell.wait(Some(std::time::Duration::ZERO))?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn new(kind: DoorbellKind) -> io::Result<Self> {
        use nix::fcntl::OFlag;
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let eventfd = || EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK);
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK);
        let imp = match kind {
            DoorbellKind::EventFd => Imp::EventFd(eventfd().map_err(to_io)?),
            DoorbellKind::Pipe => {
                let (read, write) = pipe().map_err(to_io)?;
                Imp::Pipe { read, write }
            }
            DoorbellKind::Auto => match eventfd() {
                Ok(fd) => Imp::EventFd(fd),
                Err(_) => {
                    let (read, write) = pipe().map_err(to_io)?;
                    Imp::Pipe { read, write }
                }
            },
        };
        Ok(Self { imp })
    }

    /// Opens the loom model of a doorbell.
    #[cfg(loom)]
    pub fn new(kind: DoorbellKind) -> io::Result<Self> {
        let kind = match kind {
            DoorbellKind::Auto => DoorbellKind::EventFd,
            other => other,
        };
        Ok(Self {
            imp: Imp {
                kind,
                rung: crate::sync::Mutex::new(0),
                cond: crate::sync::Condvar::new(),
            },
        })
    }

    /// The kind actually in use (never [`DoorbellKind::Auto`]).
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// assert_eq!(Doorbell::new(DoorbellKind::Pipe)?.kind(), DoorbellKind::Pipe);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn kind(&self) -> DoorbellKind {
        #[cfg(not(loom))]
        match self.imp {
            Imp::EventFd(_) => DoorbellKind::EventFd,
            Imp::Pipe { .. } => DoorbellKind::Pipe,
        }
        #[cfg(loom)]
        self.imp.kind
    }

    /// `true` when the fd must be drained after it fires (a pipe), so it must
    /// be registered level-triggered; `false` for an eventfd, which can be
    /// registered edge-triggered and left undrained.
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// assert!(Doorbell::new(DoorbellKind::Pipe)?.needs_drain()); // register level-triggered
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn needs_drain(&self) -> bool {
        self.kind() == DoorbellKind::Pipe
    }

    /// Wakes whoever waits on the doorbell. A doorbell that is already rung
    /// stays rung (a full pipe or a saturated counter is not an error).
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// let bell = Doorbell::new(DoorbellKind::Auto)?;
    /// bell.ring()?;
    /// bell.ring()?; // already rung: stays rung, no error
    /// assert!(bell.drain()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn ring(&self) -> io::Result<()> {
        use nix::errno::Errno;
        loop {
            let result = match &self.imp {
                Imp::EventFd(fd) => fd.write(1).map(drop),
                Imp::Pipe { write, .. } => nix::unistd::write(write, &[1u8]).map(drop),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => match &self.imp {
                    // The counter is at its maximum: reset it and ring again so
                    // the edge is not lost.
                    Imp::EventFd(fd) => {
                        let _ = fd.read();
                        continue;
                    }
                    // The pipe is full, so it is certainly readable.
                    Imp::Pipe { .. } => return Ok(()),
                },
                Err(e) => return Err(to_io(e)),
            }
        }
    }

    /// Loom model of [`ring`](Self::ring).
    #[cfg(loom)]
    pub fn ring(&self) -> io::Result<()> {
        *self.imp.rung.lock().unwrap() += 1;
        self.imp.cond.notify_one();
        Ok(())
    }

    /// Consumes every pending ring. Returns `true` if there was one.
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// let bell = Doorbell::new(DoorbellKind::Pipe)?;
    /// assert!(!bell.drain()?); // nothing pending
    /// bell.ring()?;
    /// assert!(bell.drain()?);
    /// assert!(!bell.drain()?); // consumed
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn drain(&self) -> io::Result<bool> {
        use nix::errno::Errno;
        match &self.imp {
            Imp::EventFd(fd) => loop {
                match fd.read() {
                    Ok(_) => return Ok(true),
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => return Ok(false),
                    Err(e) => return Err(to_io(e)),
                }
            },
            Imp::Pipe { read, .. } => {
                let mut any = false;
                let mut buf = [0u8; 256];
                loop {
                    match nix::unistd::read(read, &mut buf) {
                        Ok(0) => return Ok(any),
                        Ok(n) if n < buf.len() => return Ok(true),
                        Ok(_) => any = true,
                        Err(Errno::EINTR) => continue,
                        Err(Errno::EAGAIN) => return Ok(any),
                        Err(e) => return Err(to_io(e)),
                    }
                }
            }
        }
    }

    /// Loom model of [`drain`](Self::drain).
    #[cfg(loom)]
    pub fn drain(&self) -> io::Result<bool> {
        let mut rung = self.imp.rung.lock().unwrap();
        let was = *rung > 0;
        *rung = 0;
        Ok(was)
    }

    /// Blocks until the doorbell is rung or `timeout` passes (`None`: no
    /// limit), then drains it. Returns `true` if it was rung. For owners that
    /// have no poller of their own; an event loop registers [`as_fd`]'s fd in
    /// its epoll set instead.
    ///
    /// [`as_fd`]: std::os::fd::AsFd::as_fd
    ///
    /// ```
    /// use ringloop_actors::{Doorbell, DoorbellKind};
    /// use std::time::Duration;
    /// let bell = Doorbell::new(DoorbellKind::Auto)?;
    /// assert!(!bell.wait(Some(Duration::from_millis(5)))?); // timed out
    /// bell.ring()?;
    /// assert!(bell.wait(None)?); // rung: returns at once, drained
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use nix::errno::Errno;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => {
                // Round up so a short timeout does not become a busy poll.
                let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => Ok(false),
            Ok(_) => self.drain().map(|_| true),
            Err(e) => Err(to_io(e)),
        }
    }

    /// Loom model of [`wait`](Self::wait); the timeout is ignored (loom has no
    /// clock), so a model that loses a wake-up deadlocks and loom reports it.
    #[cfg(loom)]
    pub fn wait(&self, _timeout: Option<Duration>) -> io::Result<bool> {
        let mut rung = self.imp.rung.lock().unwrap();
        while *rung == 0 {
            rung = self.imp.cond.wait(rung).unwrap();
        }
        *rung = 0;
        Ok(true)
    }
}

#[cfg(not(loom))]
impl AsFd for Doorbell {
    /// The fd to register for readability (the eventfd, or the pipe's read end).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.imp {
            Imp::EventFd(fd) => fd.as_fd(),
            Imp::Pipe { read, .. } => read.as_fd(),
        }
    }
}

/// Under loom the doorbell is a model with no fd of its own; code that
/// registers doorbells in a poller (ringloop's loops) still has to build for
/// its loom models, which never poll. It gets `/dev/null`, opened once.
#[cfg(loom)]
impl std::os::fd::AsFd for Doorbell {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        static STAND_IN: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
        STAND_IN
            .get_or_init(|| std::fs::File::open("/dev/null").expect("open /dev/null"))
            .as_fd()
    }
}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}
