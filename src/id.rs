//! [`ConnId`]: the identity of a connection (loop, slot, generation).
//!
//! Vocabulary only: a plain `Copy` value that every layer may name. It must
//! never hold or reach anything of the engine.

use std::fmt;

/// The identity of a connection: which loop owns it, its slot there, and the
/// slot's generation (which changes whenever the slot is reused).
///
/// ```
/// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
/// # use std::{io::Read, net::TcpStream, sync::mpsc};
/// # struct Give(mpsc::Sender<ConnHandle>);
/// # impl EventHandler for Give {
/// #     type State = ();
/// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
/// #         let _ = self.0.send(conn.handle());
/// #         Action::None
/// #     }
/// # }
/// # let (tx, rx) = mpsc::channel();
/// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// # let engine = server.handle();
/// # let runner = std::thread::spawn(move || server.run());
/// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// # let handle: ConnHandle = rx.recv().unwrap();
/// // `handle` is the server's side of `client` (sent out by `on_open`).
/// let id = handle.id();
/// assert_eq!(id.loop_index(), 0); // one loop
/// // The same id, reached again through the engine:
/// assert_eq!(engine.handle(id).id(), id);
/// println!("connection {id}"); // loop:slot#generation
/// # drop(client);
/// # engine.stop();
/// # runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_index: u32,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The loop that owns the connection.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// assert!(handle.id().loop_index() < engine.loop_count());
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    /// The connection's slot on its loop.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let id = handle.id();
    /// assert_eq!(id.slot(), 0); // the loop's first connection
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The slot's generation when this connection held it.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let first = handle.id();
    /// drop(client);
    /// # std::thread::sleep(std::time::Duration::from_millis(50));
    /// // Once closed, a new connection may get the same slot but never the same id.
    /// let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// let second = rx.recv().unwrap().id();
    /// assert!(second.slot() != first.slot() || second.generation() != first.generation());
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub(crate) fn key(&self) -> crate::actors::slab::SlotKey {
        crate::actors::slab::SlotKey {
            index: self.slot,
            generation: self.generation,
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.loop_index, self.slot, self.generation)
    }
}
