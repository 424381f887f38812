//! The process's default node, as an Erlang process has its node: what [`any`], [`all`] and
//! [`by_key`] call through. Set when the first node starts (or by
//! [`Node::make_default`](crate::Node::make_default)), cleared when it shuts down.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::client::RouteKey;
use crate::runtime::Rpc;
use crate::target::{All, Any, ByKey, To};

/// The process's default node.
static DEFAULT: ArcSwapOption<Rpc> = ArcSwapOption::const_empty();

/// The default node, if one runs.
fn current() -> Option<Arc<Rpc>> {
    DEFAULT.load_full()
}

/// Whether a default node is set.
pub(crate) fn is_set() -> bool {
    DEFAULT.load().is_some()
}

/// Makes `rpc` the default node.
pub(crate) fn set(rpc: &Arc<Rpc>) {
    DEFAULT.store(Some(rpc.clone()));
}

/// Clears the default node if it is `rpc`.
pub(crate) fn clear_if(rpc: &Arc<Rpc>) {
    let me = Arc::as_ptr(rpc);
    DEFAULT.rcu(|cur| match cur {
        Some(d) if Arc::as_ptr(d) == me => None,
        other => other.clone(),
    });
}

/// Calls to one node of `role`, through the process's default node (the first node started in
/// the process, or the one made default with [`Node::make_default`](crate::Node::make_default)).
///
/// If no node runs in this process (none was started, or the default node has shut down), the
/// target's calls fail with [`RpcError::NotRunning`](crate::RpcError::NotRunning); nothing
/// panics.
///
/// ```
/// # #[easy_rpc::service] pub trait Billing { async fn balance(account: String) -> u64; }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // No node started yet in this process:
/// let e = easy_rpc::any("billing").balance("acct-1".into()).await.unwrap_err();
/// assert!(matches!(e, easy_rpc::RpcError::NotRunning { node: None }));
/// # }
/// ```
pub fn any(role: &str) -> Any {
    Any::new(current(), role)
}

/// Calls to every node of `role`, through the process's default node. Without one, every
/// call fails as a whole with [`RpcError::NotRunning`](crate::RpcError::NotRunning) (there is
/// no node to name an entry after; see [`AllResults`](crate::AllResults)). See [`any`].
pub fn all(role: &str) -> All {
    All::new(current(), role)
}

/// Calls to the node of `role` that owns `key` (see [`RouteKey`]), through the process's
/// default node. See [`any`].
pub fn by_key(role: &str, key: impl RouteKey) -> ByKey {
    ByKey::new(current(), role, key)
}

/// Calls to one given node (by name or by id), through the process's default node. See
/// [`Node::to`](crate::Node::to) and [`any`].
pub fn to<'a>(node: impl Into<cluster_helper::NodeRef<'a>>) -> To {
    To::new(current(), vec![node.into().into()])
}

/// Calls to one of the given nodes (by name or by id), through the process's default node.
/// See [`Node::to_any_of`](crate::Node::to_any_of) and [`any`].
pub fn to_any_of<'a, N: Into<cluster_helper::NodeRef<'a>>>(
    nodes: impl IntoIterator<Item = N>,
) -> To {
    To::new(
        current(),
        nodes.into_iter().map(|n| n.into().into()).collect(),
    )
}
