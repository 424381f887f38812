//! The pool: one [`Endpoint`] (so one connection) per node and service, shared by every role
//! the node is in, and closed when the node leaves the registry.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cluster_helper::{NodeId, NodeStatus, Snapshot};

use super::endpoint::Endpoint;
use crate::service::ServiceDef;

/// One connection per node and service, the service by its type: two service types that
/// share a wire name (a mistake, but a possible one) get endpoints of their own instead of a
/// failed downcast.
type PoolKey = (NodeId, TypeId);

/// A pooled `Endpoint<S>` of any service.
trait PoolEntry: Send + Sync + 'static {
    /// Drops the pooled connection (the node left the registry); `end_calls` ends the calls
    /// in flight on it too.
    fn close(&self, end_calls: bool);
    /// For downcasting to the concrete endpoint.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<S: ServiceDef> PoolEntry for Endpoint<S> {
    fn close(&self, end_calls: bool) {
        Endpoint::close(self, end_calls);
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Every endpoint of one node's calls.
#[derive(Default)]
pub(crate) struct Pool {
    endpoints: Mutex<HashMap<PoolKey, Arc<dyn PoolEntry>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.endpoints.lock().map_or(0, |m| m.len());
        f.debug_struct("Pool").field("endpoints", &n).finish()
    }
}

impl Pool {
    /// The endpoint of `node` (at `addr`) for service `S`, made on first use. Called when a
    /// role set is rebuilt, not per call.
    pub(crate) fn endpoint<S: ServiceDef>(
        &self,
        node: &NodeId,
        addr: SocketAddr,
        local: bool,
    ) -> Arc<Endpoint<S>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((node.clone(), TypeId::of::<S>()))
            .or_insert_with(|| Arc::new(Endpoint::<S>::new(node.clone(), addr, local)))
            .clone()
            .into_any()
            .downcast::<Endpoint<S>>()
            .expect("the key holds the endpoint's service type")
    }

    /// Drops every endpoint and closes its connection (the node shut down).
    pub(crate) fn close_all(&self) {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        for endpoint in map.values() {
            endpoint.close(false);
        }
        map.clear();
    }

    /// Drops the endpoints (and so closes the connections) of nodes in `before` that are not
    /// in `now`. A node that was leaving finished leaving: its calls in flight finish as it
    /// drains them. Any other node is gone (crashed, unreachable, replaced by a new
    /// incarnation): its calls in flight end now, so that idempotent ones are sent elsewhere
    /// at once and the others fail now rather than at their deadlines.
    /// With `trust_downs` false (this process was just paused, so its failure detector may
    /// be wrong), no calls are ended.
    pub(crate) fn prune(&self, before: &Snapshot, now: &Snapshot, trust_downs: bool) {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(node, _), endpoint| {
            let keep = now.member(node).is_some();
            if !keep {
                let left = before
                    .member(node)
                    .is_some_and(|m| m.status == NodeStatus::Leaving);
                // Role sets may still hold the endpoint until their next rebuild; the
                // connection goes now.
                endpoint.close(trust_downs && !left);
            }
            keep
        });
    }
}
