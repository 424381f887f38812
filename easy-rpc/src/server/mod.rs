//! The server: one TCP listener per node for every service it serves. Each connection starts
//! with the handshake, then carries one tarpc service.
//!
//! - [`accept`]: the accept loop and one connection's life (handshake, then serving).
//! - [`served`]: [`Served`], the type-erased server of one service.
//! - [`state`]: what the loop and the connections share (services, leaving, in flight).
//!
//! It depends on [`crate::service`] (the macro contract), never the other way round.

mod accept;
mod served;
mod state;

pub(crate) use accept::accept_loop;
pub use served::Served;
pub(crate) use state::ServerState;
