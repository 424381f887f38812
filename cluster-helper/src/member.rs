//! What the registry knows of one node, and how it travels in the gossip key-value state.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::id::{NodeId, Role, ServiceName};

/// Gossip key: the node's roles, comma separated, sorted.
pub(crate) const KEY_ROLES: &str = "roles";
/// Gossip key: the services the node serves, comma separated, sorted.
pub(crate) const KEY_SERVICES: &str = "services";
/// Gossip key: the address of the node's RPC (TCP) listener.
pub(crate) const KEY_RPC_ADDR: &str = "rpc";
/// Gossip key: the node's [`NodeStatus`].
pub(crate) const KEY_STATUS: &str = "status";

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NodeStatus {
    /// Started, has not yet seen the rest of the cluster. Not returned by role lookups.
    Joining,
    /// Joined and serving: returned by role lookups.
    Serving,
    /// Shutting down: finishing in-flight work, must not be picked for new work. Not returned
    /// by role lookups.
    Leaving,
}

impl NodeStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Joining => "joining",
            NodeStatus::Serving => "serving",
            NodeStatus::Leaving => "leaving",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "joining" => NodeStatus::Joining,
            "serving" => NodeStatus::Serving,
            "leaving" => NodeStatus::Leaving,
            _ => return None,
        })
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live node as the local registry sees it: identity, roles, services, addresses, status.
///
/// Members are immutable snapshots, shared (`Arc<Member>`) between registry snapshots: a change
/// to a node makes a new `Member`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The node's identity (name + incarnation).
    pub id: NodeId,
    /// The node's roles.
    pub roles: BTreeSet<Role>,
    /// The RPC services the node serves.
    pub services: BTreeSet<ServiceName>,
    /// Where the node accepts RPC connections (TCP), if it advertises one.
    pub rpc_addr: Option<SocketAddr>,
    /// Where the node gossips (UDP).
    pub gossip_addr: SocketAddr,
    /// Whether the node is joining, serving or leaving.
    pub status: NodeStatus,
}

impl Member {
    /// Whether the node has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the node serves the RPC service `service`.
    pub fn serves(&self, service: &str) -> bool {
        self.services.contains(service)
    }

    /// Builds a member from a gossip key-value state. Malformed values are skipped (and logged):
    /// a peer running a newer version with values this one does not understand still shows up
    /// with what can be read.
    pub(crate) fn from_gossip<'a>(
        id: NodeId,
        gossip_addr: SocketAddr,
        kvs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Member {
        let mut member = Member {
            id,
            roles: BTreeSet::new(),
            services: BTreeSet::new(),
            rpc_addr: None,
            gossip_addr,
            status: NodeStatus::Joining,
        };
        for (key, value) in kvs {
            match key {
                KEY_ROLES => member.roles = parse_list(value, |r| Role::new(r).ok()),
                KEY_SERVICES => member.services = parse_list(value, |s| ServiceName::new(s).ok()),
                KEY_RPC_ADDR => member.rpc_addr = value.parse().ok(),
                KEY_STATUS => {
                    if let Some(status) = NodeStatus::parse(value) {
                        member.status = status;
                    }
                }
                _ => {}
            }
        }
        member
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("roles", &self.roles)
            .field("services", &self.services)
            .field("rpc_addr", &self.rpc_addr)
            .field("gossip_addr", &self.gossip_addr)
            .finish()
    }
}

fn parse_list<T: Ord>(value: &str, parse: impl Fn(&str) -> Option<T>) -> BTreeSet<T> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let parsed = parse(s);
            if parsed.is_none() {
                tracing::debug!(value = s, "ignoring malformed gossip list item");
            }
            parsed
        })
        .collect()
}

/// Joins names with commas, the gossip encoding of a set.
pub(crate) fn join_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

/// A shared member, as handed out by the registry.
pub type MemberRef = Arc<Member>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_gossip_values() {
        let roles = join_list(["audit", "billing"]);
        let kvs = [
            (KEY_ROLES, roles.as_str()),
            (KEY_SERVICES, "Billing"),
            (KEY_RPC_ADDR, "127.0.0.1:4000"),
            (KEY_STATUS, "serving"),
            ("unknown-future-key", "x"),
        ];
        let id = NodeId::new("n1", 7).unwrap();
        let m = Member::from_gossip(
            id.clone(),
            "127.0.0.1:4000".parse().unwrap(),
            kvs.into_iter(),
        );
        assert_eq!(m.id, id);
        assert!(m.has_role("billing") && m.has_role("audit") && !m.has_role("x"));
        assert!(m.serves("Billing"));
        assert_eq!(m.status, NodeStatus::Serving);
        assert_eq!(m.rpc_addr, Some("127.0.0.1:4000".parse().unwrap()));
    }

    #[test]
    fn malformed_values_are_skipped() {
        let kvs = [(KEY_ROLES, "ok,,bad role,also-ok"), (KEY_STATUS, "weird")];
        let id = NodeId::new("n1", 7).unwrap();
        let m = Member::from_gossip(id, "127.0.0.1:1".parse().unwrap(), kvs.into_iter());
        assert_eq!(m.roles.len(), 2);
        assert_eq!(m.status, NodeStatus::Joining);
    }
}
