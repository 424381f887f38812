//! The server: one TCP listener per node for every service it serves. Each connection starts
//! with the handshake, then carries one tarpc service.
//!
//! - [`accept`]: the accept loop and one connection's life (handshake, then serving).
//! - [`served`]: [`Served`], the type-erased server of one service.
//! - [`layer`]: tower layers around every handler ([`ServerCall`]).
//! - [`state`]: what the loop and the connections share (services, leaving, in flight).
//! - [`limits`]: [`ServerLimits`] and their bookkeeping (admission, the frame budget, the
//!   open-file limit).
//! - [`stats`]: [`ServerStats`], what the server holds and refused.
//!
//! It depends on [`crate::service`] (the macro contract), never the other way round.

mod accept;
mod admission;
mod layer;
mod limits;
mod served;
mod state;
mod stats;

pub(crate) use accept::accept_loop;
pub use layer::{ServerCall, ServerFuture, ServerResponse, ServerService};
pub(crate) use layer::{ServerLayers, ServerStack};
pub use limits::ServerLimits;
pub(crate) use limits::{Bounds, FrameBudget, raise_open_file_limit};
pub use served::Served;
pub(crate) use state::ServerState;
pub use stats::{RefusedConnections, ServerStats};
