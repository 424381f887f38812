//! The client side of a node: who a call goes to and how it gets there.
//!
//! - [`role_set`]: a role's nodes that serve a service, rebuilt on registry changes.
//! - [`pick`]: choosing one of them (strategies, rendezvous by key), on a [`peer`]'s view.
//! - [`load`]: load measures (pending requests, peak EWMA), tower `Load`s.
//! - [`key`]: key and node name hashing for rendezvous.
//! - [`pool`] and [`endpoint`]: one pooled connection per node and service, one attempt.
//! - [`outgoing`]: a request on its way out, and whether it was ever written.
//! - [`budget`]: the retries and reroutes a node's calls may add.
//! - [`retry`]: after a failed attempt, reroute, retry or stop (a pure policy).
//! - [`hedge`] and [`latency`]: a second request for a slow idempotent call, after a
//!   percentile of the method's recent latencies.
//! - [`call`]: one call, and one node's call of `all`, put together from the above.
//! - [`layer`]: tower layers around each attempt ([`Call`]), when the node has any.

mod budget;
mod call;
mod endpoint;
mod hedge;
mod key;
mod latency;
mod layer;
mod load;
mod outgoing;
mod peer;
mod pick;
mod pool;
mod retry;
mod role_set;

pub(crate) use budget::RetryBudget;
pub(crate) use call::{Plan, call_endpoint, call_one};
pub use hedge::{Hedge, HedgeStats};
pub(crate) use hedge::{Hedging, call_hedged};
pub use key::{KeyHasher, RouteKey};
pub use layer::{Call, CallFuture, CallResponse, CallService};
pub(crate) use layer::{ClientLayers, ClientStack};
pub(crate) use outgoing::Outgoing;
pub(crate) use pick::Route;
pub(crate) use pool::Pool;
pub(crate) use role_set::{Listed, RoleSets, SetCache, Source};
