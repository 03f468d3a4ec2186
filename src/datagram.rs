//! Datagrams of `udp://` listeners: [`Datagram`], one received datagram as
//! [`EventHandler::on_datagram`](crate::EventHandler::on_datagram) sees it,
//! and [`DatagramHandle`], a loop's UDP socket seen from any thread.
//!
//! Owns the user's side of unconnected UDP: reading a datagram, replying,
//! sending to any peer, and the cross-thread sends (each one message to the
//! socket's loop). It must never keep anything about a peer beyond one
//! callback: UDP has no connection, so there is no state, no open or close,
//! and nothing to wake. (A dialled `udp://` address is a *connected* socket
//! and a [`Conn`](crate::Conn) like any other.)

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::addr::SockAddr;
use crate::conn::send_datagram;
use crate::error::{Error, Result};
use crate::event_loop::entry::LoopRef;
use crate::handle::{Pending, TryWriteError};
use crate::runtime::message::{Completion, LoopMessage};
use crate::runtime::EngineShared;

/// One datagram received on a `udp://` listener, inside
/// [`EventHandler::on_datagram`](crate::EventHandler::on_datagram) on the
/// loop that received it: its payload (borrowed from the loop's buffer, no
/// copy), its sender, and the socket to answer on.
///
/// ```
/// use ringloop::{Action, Datagram, Engine, EventHandler};
///
/// /// Echoes every datagram to its sender.
/// struct UdpEcho;
/// impl EventHandler for UdpEcho {
///     type State = ();
///     fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
///         let payload = dgram.payload();
///         let _ = dgram.reply(payload);
///         Action::None
///     }
/// }
///
/// let server = Engine::builder(|_| UdpEcho).listen("udp://127.0.0.1:0").loops(1).build()?;
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"ping", engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// let mut buf = [0; 16];
/// let (n, _) = client.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A stream connection has no `send_to`, and a datagram no stream
/// operations: using the wrong kind does not compile.
///
/// ```compile_fail
/// fn stream(conn: &mut ringloop::Conn<'_, ()>, to: &ringloop::SockAddr) {
///     let _ = conn.send_to(b"x", to);
/// }
/// ```
pub struct Datagram<'a> {
    payload: &'a [u8],
    fd: BorrowedFd<'a>,
    peer: SockAddr,
    /// Index of the loop's UDP socket (for handles).
    socket: u32,
    listener: u16,
    lp: &'a LoopRef<'a>,
}

impl<'a> Datagram<'a> {
    pub(crate) fn new(
        payload: &'a [u8],
        fd: BorrowedFd<'a>,
        peer: SockAddr,
        socket: u32,
        listener: u16,
        lp: &'a LoopRef<'a>,
    ) -> Self {
        Self {
            payload,
            fd,
            peer,
            socket,
            listener,
            lp,
        }
    }

    /// The datagram's bytes, valid for the whole callback (so they can be
    /// sent straight back).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Who sent it (where [`reply`](Self::reply) goes).
    pub fn peer_addr(&self) -> &SockAddr {
        &self.peer
    }

    /// Sends `data` as one datagram to the sender of this one. A full socket
    /// buffer drops it, as UDP may (the error says so); nothing is queued.
    pub fn reply(&mut self, data: &[u8]) -> Result<usize> {
        send_datagram(self.fd, data, &self.peer)
    }

    /// Sends several buffers as one datagram to the sender of this one.
    pub fn replyv(&mut self, bufs: &[&[u8]]) -> Result<usize> {
        send_datagram(self.fd, &bufs.concat(), &self.peer)
    }

    /// Sends `data` as one datagram to any address, from this listener's
    /// socket.
    ///
    /// ```
    /// use ringloop::{Action, Datagram, EventHandler, SockAddr};
    ///
    /// /// Copies every datagram to a fixed monitoring address as well.
    /// struct Mirror {
    ///     monitor: SockAddr,
    /// }
    ///
    /// impl EventHandler for Mirror {
    ///     type State = ();
    ///     fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
    ///         let payload = dgram.payload();
    ///         let _ = dgram.reply(payload);
    ///         let _ = dgram.send_to(payload, &self.monitor);
    ///         Action::None
    ///     }
    /// }
    ///
    /// let _mirror = Mirror { monitor: SockAddr::Inet("127.0.0.1:9999".parse().unwrap()) };
    /// ```
    pub fn send_to(&mut self, data: &[u8], to: &SockAddr) -> Result<usize> {
        send_datagram(self.fd, data, to)
    }

    /// A handle to this listener's socket on this loop, for sending from
    /// other threads (a worker's reply: keep [`peer_addr`](Self::peer_addr)
    /// with it).
    pub fn handle(&self) -> DatagramHandle {
        DatagramHandle {
            loop_index: self.lp.loop_index,
            socket: self.socket,
            engine: self.lp.engine.clone(),
        }
    }

    /// A handle to the engine (worker pool, stop, counts).
    pub fn engine(&self) -> crate::EngineHandle {
        crate::EngineHandle {
            shared: self.lp.engine.clone(),
        }
    }

    /// Index of the loop that received the datagram.
    pub fn loop_index(&self) -> usize {
        self.lp.loop_index as usize
    }

    /// Index (in the order given to the builder) of the listener that
    /// received the datagram.
    pub fn listener_index(&self) -> usize {
        usize::from(self.listener)
    }

    /// The listener socket's own address.
    pub fn local_addr(&self) -> Result<SockAddr> {
        crate::sys::socket::local_addr(self.fd).map_err(|e| Error::io("getsockname", e))
    }

    /// The loop's UDP socket for this listener (shared by every peer), for
    /// its options through [`socket2`]: buffer sizes, `IP_TOS`…
    pub fn socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.fd)
    }
}

impl fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("loop", &self.lp.loop_index)
            .field("listener", &self.listener)
            .field("peer", &self.peer)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// A `Send + Sync + Clone` handle to one `udp://` listener's socket on one
/// loop, usable from any thread: each send is one message to that loop,
/// which sends the datagram from the socket the peer knows. Get one with
/// [`Datagram::handle`]. Sends from one thread go out in the order made
/// (the ordering rules of [`ConnHandle`](crate::ConnHandle) apply).
///
/// There is nothing to wake, pause or close: UDP has no connection.
///
/// ```
/// use ringloop::{Action, Datagram, DatagramHandle, Engine, EventHandler, SockAddr};
/// use std::sync::mpsc;
///
/// /// Hands each datagram's handle and sender to the test thread.
/// struct Give(mpsc::Sender<(DatagramHandle, SockAddr)>);
/// impl EventHandler for Give {
///     type State = ();
///     fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
///         let _ = self.0.send((dgram.handle(), dgram.peer_addr().clone()));
///         Action::None
///     }
/// }
///
/// let (tx, rx) = mpsc::channel();
/// let server = Engine::builder(move |_| Give(tx.clone())).listen("udp://127.0.0.1:0").loops(1).build()?;
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"hello", engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// let (handle, peer) = rx.recv()?;
/// // From another thread, through the loop that owns the socket.
/// std::thread::spawn(move || handle.send_to(b"pushed".to_vec(), peer).wait()).join().unwrap()?;
/// let mut buf = [0; 16];
/// let (n, _) = client.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"pushed");
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A datagram handle is not a connection handle: it cannot be woken or
/// closed.
///
/// ```compile_fail
/// fn wake(handle: &ringloop::DatagramHandle) {
///     let _ = handle.wake();
/// }
/// ```
///
/// ```compile_fail
/// fn close(handle: &ringloop::DatagramHandle) {
///     let _ = handle.close();
/// }
/// ```
#[derive(Clone)]
pub struct DatagramHandle {
    loop_index: u32,
    socket: u32,
    engine: Arc<EngineShared>,
}

impl DatagramHandle {
    /// Index of the loop that owns the socket.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    fn message(&self, data: Vec<u8>, to: SockAddr, done: Completion<usize>) -> LoopMessage {
        LoopMessage::SendTo {
            socket: self.socket,
            peer: Box::new(to),
            data,
            done,
        }
    }

    /// Sends `data` as one datagram to `to` from the owning loop. `on_done`
    /// runs there with `Ok(data.len())` once sent, or with the error (the
    /// socket buffer was full, the engine stopped); it runs in every case.
    /// Waits for room if this thread's lane into the loop is full (never on
    /// a loop thread). Returns an error only if the request could not be
    /// delivered.
    pub fn async_send_to(
        &self,
        data: impl Into<Vec<u8>>,
        to: SockAddr,
        on_done: impl FnOnce(Result<usize>) + Send + 'static,
    ) -> Result<()> {
        let message = self.message(data.into(), to, Completion::new(Some(Box::new(on_done))));
        self.engine.send_to_loop(self.loop_index as usize, message)
    }

    /// Sends several buffers as one datagram (see
    /// [`async_send_to`](Self::async_send_to)).
    pub fn async_sendv_to(
        &self,
        bufs: Vec<Vec<u8>>,
        to: SockAddr,
        on_done: impl FnOnce(Result<usize>) + Send + 'static,
    ) -> Result<()> {
        self.async_send_to(bufs.concat(), to, on_done)
    }

    /// An awaitable [`async_send_to`](Self::async_send_to): block on it with
    /// [`Pending::wait`] or `.await` it.
    pub fn send_to(&self, data: impl Into<Vec<u8>>, to: SockAddr) -> Pending<usize> {
        let (tx, rx) = flume::bounded(1);
        let _ = self.async_send_to(data, to, move |r| {
            let _ = tx.send(r);
        });
        Pending { rx }
    }

    /// Like [`async_send_to`](Self::async_send_to) without a callback, but
    /// never waits: if the lane is full the data is handed back.
    pub fn try_send_to(&self, data: Vec<u8>, to: SockAddr) -> Result<(), TryWriteError> {
        let message = self.message(data, to, Completion::new(None));
        self.engine
            .try_send_to_loop(self.loop_index as usize, message)
            .map_err(|(message, error)| match message {
                LoopMessage::SendTo { data, .. } => TryWriteError { data, error },
                _ => unreachable!("try_send_to_loop hands back the message it was given"),
            })
    }
}

impl fmt::Debug for DatagramHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramHandle")
            .field("loop", &self.loop_index)
            .field("socket", &self.socket)
            .finish()
    }
}
