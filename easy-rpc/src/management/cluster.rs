//! `/cluster`: the registry as this node sees it, as JSON.
//!
//! ```json
//! {
//!   "cluster": "shop",
//!   "version": 12,
//!   "node": { "id": "gw-1#1764230000123", "name": "gw-1", "incarnation": 1764230000123,
//!             "status": "serving", "ready": true, "readiness": "ready",
//!             "roles": ["gateway"], "services": [], "gossip_addr": "10.0.0.5:7946",
//!             "rpc_addr": "10.0.0.5:7946", "in_flight": 0 },
//!   "members": [ { "id": "billing-1#1764230000456", "name": "billing-1",
//!                  "incarnation": 1764230000456, "status": "serving",
//!                  "roles": ["billing"], "services": ["Billing"],
//!                  "gossip_addr": "10.0.0.6:7946", "rpc_addr": "10.0.0.6:7946",
//!                  "last_heard_ms": 180 } ],
//!   "roles": { "billing": ["billing-1#1764230000456"] }
//! }
//! ```
//!
//! `members` is every live member of the registry (joining, serving, leaving; this node
//! included), ordered by id; `roles` maps each role to the *serving* nodes that have it (what
//! role lookups return), ordered by id. `last_heard_ms` is how long ago this node last heard
//! the member's heartbeat advance (`null` for itself): it stays within a few gossip intervals
//! for a healthy member and grows until the failure detector declares a silent one down.
//! `version` is the registry's version: `/cluster?wait=<version>` answers as soon as it differs
//! from `<version>`, or after [`LONG_POLL`](super::LONG_POLL) (a long poll: how the page shows
//! changes as soon as the registry has them).
//! Incarnations exceed JavaScript's exact integers: compare ids (strings), not
//! incarnations, in a browser.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cluster_helper::Member;
use serde::Serialize;

use crate::node::Node;

#[derive(Serialize)]
struct ClusterDoc<'a> {
    cluster: &'a str,
    version: u64,
    node: SelfView,
    members: Vec<MemberView>,
    roles: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
struct SelfView {
    id: String,
    name: String,
    incarnation: u64,
    status: String,
    ready: bool,
    readiness: &'static str,
    roles: Vec<String>,
    services: Vec<&'static str>,
    gossip_addr: SocketAddr,
    rpc_addr: Option<SocketAddr>,
    in_flight: usize,
}

#[derive(Serialize)]
struct MemberView {
    id: String,
    name: String,
    incarnation: u64,
    status: String,
    roles: Vec<String>,
    services: Vec<String>,
    gossip_addr: SocketAddr,
    rpc_addr: Option<SocketAddr>,
    /// Milliseconds since this node last heard the member's heartbeat advance (`null` for
    /// this node itself).
    last_heard_ms: Option<u64>,
}

impl MemberView {
    fn new(m: &Member, last_heard: Option<Duration>) -> Self {
        MemberView {
            last_heard_ms: last_heard.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            id: m.id.to_string(),
            name: m.id.name().to_owned(),
            incarnation: m.id.incarnation(),
            status: m.status.to_string(),
            roles: m.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            services: m.services.iter().map(|s| s.as_str().to_owned()).collect(),
            gossip_addr: m.gossip_addr,
            rpc_addr: m.rpc_addr,
        }
    }
}

/// The `/cluster` document of `node`, from one registry snapshot.
pub(crate) async fn json(node: &Node) -> Vec<u8> {
    let heard = node.last_heard().await;
    let snapshot = node.registry().snapshot();
    let (ready, readiness) = super::routes::readiness(node);
    let id = node.id();
    let doc = ClusterDoc {
        cluster: node.cluster(),
        version: snapshot.version(),
        node: SelfView {
            id: id.to_string(),
            name: id.name().to_owned(),
            incarnation: id.incarnation(),
            status: node.status().to_string(),
            ready,
            readiness,
            roles: node.roles().iter().map(|r| r.as_str().to_owned()).collect(),
            services: node.services(),
            gossip_addr: node.gossip_addr(),
            rpc_addr: node.rpc_addr(),
            in_flight: node.in_flight(),
        },
        members: snapshot
            .members()
            .map(|m| MemberView::new(m, heard.get(&m.id).copied()))
            .collect(),
        roles: snapshot
            .roles()
            .map(|(role, nodes)| {
                let mut ids: Vec<String> = nodes.iter().map(|m| m.id.to_string()).collect();
                ids.sort_unstable();
                (role.as_str().to_owned(), ids)
            })
            .collect(),
    };
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}
