//! Per-connection state without the `Option` dance: [`Conn::state_or_default`],
//! [`Conn::state_or_insert_with`], and [`Conn::with_state`], which lends the
//! state and the connection's I/O together.
//!
//! Owns only these conveniences over the state slot that `conn.rs` keeps; it
//! must never change where or how long the state lives.

use crate::conn::Conn;

/// The loop keeps a callback's connection in its table for the whole
/// callback (and a datagram carries its own slot), so the slot is always
/// there.
const SLOT_IS_THERE: &str = "a connection's state slot exists during its callbacks";

impl<S> Conn<'_, S> {
    /// This connection's state, created with `init` if it has none yet (an
    /// accepted connection starts without state).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, EventHandler};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = Vec<u8>; // a line being assembled
    /// fn on_traffic(&mut self, conn: &mut Conn<'_, Vec<u8>>) -> Action {
    ///     let data = conn.read_all();
    ///     conn.state_or_insert_with(|| Vec::with_capacity(128))
    ///         .extend_from_slice(data);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state_or_insert_with(&mut self, init: impl FnOnce() -> S) -> &mut S {
        self.state_slot()
            .expect(SLOT_IS_THERE)
            .get_or_insert_with(init)
    }

    /// This connection's state, starting from `S::default()` if it has none
    /// yet: for a handler whose state has a natural start, every callback
    /// can use the state without checking for it.
    ///
    /// ```
    /// use ringloop::{Action, Conn, EventHandler};
    ///
    /// /// Counts the lines of each connection.
    /// struct Lines;
    /// impl EventHandler for Lines {
    ///     type State = u64;
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
    ///         let lines = conn.read_all().iter().filter(|&&b| b == b'\n').count();
    ///         *conn.state_or_default() += lines as u64;
    ///         Action::None
    ///     }
    /// }
    /// ```
    pub fn state_or_default(&mut self) -> &mut S
    where
        S: Default,
    {
        self.state_or_insert_with(S::default)
    }

    /// Lends this connection's state (from `S::default()` if it has none
    /// yet) and the connection itself to `f` at the same time, so a callback
    /// can hold `&mut` state while it reads, writes or relays — which
    /// [`state_mut`](Self::state_mut) cannot, since it borrows the whole
    /// connection. Returns what `f` returns.
    ///
    /// The state is moved out for the call and put back after it: inside
    /// `f`, [`state`](Self::state) of this connection is `None`, and a state
    /// set there with [`set_state`](Self::set_state) is replaced by the lent
    /// one when `f` returns.
    ///
    /// ```
    /// use ringloop::{Action, Conn, ConnId, EventHandler};
    ///
    /// /// Relays to a partner connection and counts what it relayed.
    /// #[derive(Default)]
    /// struct Pipe {
    ///     partner: Option<ConnId>,
    ///     relayed: u64,
    /// }
    ///
    /// struct Relay;
    /// impl EventHandler for Relay {
    ///     type State = Pipe;
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, Pipe>) -> Action {
    ///         conn.with_state(|pipe, conn| {
    ///             let Some(partner) = pipe.partner else { return Action::None };
    ///             let data = conn.read_all();
    ///             pipe.relayed += data.len() as u64; // state and I/O together
    ///             match conn.write_to(partner, data) {
    ///                 Ok(_) => Action::None,
    ///                 Err(_) => Action::Close,
    ///             }
    ///         })
    ///     }
    /// }
    /// ```
    pub fn with_state<R>(&mut self, f: impl FnOnce(&mut S, &mut Self) -> R) -> R
    where
        S: Default,
    {
        let mut state = self.take_state().unwrap_or_default();
        let result = f(&mut state, self);
        *self.state_slot().expect(SLOT_IS_THERE) = Some(state);
        result
    }
}
