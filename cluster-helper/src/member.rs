//! What the registry knows of one node, and how it travels in the gossip key-value state.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::id::{NodeId, Role, ServiceName};

// The gossip encoding of a node's state. Every role and every service is its own key, so that
// no single value grows with their number (chitchat cannot send a value larger than one
// datagram) and a change of one role is one small delta. A set's marker key, written after the
// set's keys in the same change, holds the size and a hash of the whole set: a peer that has
// received part of a large change (chitchat splits deltas at its datagram size) sees a set that
// does not match the marker and keeps the set it had, so it never shows half a change.

/// Gossip key prefix: one key `role:<role>` (value empty) per role.
pub(crate) const ROLE_PREFIX: &str = "role:";
/// Gossip key prefix: one key `service:<service>` (value empty) per service.
pub(crate) const SERVICE_PREFIX: &str = "service:";
/// Gossip key: the marker of the role set, `<count>:<hash>` (see [`set_marker`]).
pub(crate) const KEY_ROLE_SET: &str = "role-set";
/// Gossip key: the marker of the service set, `<count>:<hash>`.
pub(crate) const KEY_SERVICE_SET: &str = "service-set";
/// Gossip key: the address of the node's RPC (TCP) listener.
pub(crate) const KEY_RPC_ADDR: &str = "rpc";
/// Gossip key: the node's [`NodeStatus`].
pub(crate) const KEY_STATUS: &str = "status";

/// The marker of a set of names given in ascending order: `<count>:<hash>`, the hash being
/// FNV-1a 64 over each name followed by a newline, in hexadecimal.
pub(crate) fn set_marker<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = FNV_OFFSET;
    let mut count = 0usize;
    for name in names {
        hash = fnv_line(hash, name);
        count += 1;
    }
    format!("{count}:{hash:016x}")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a 64 hash over `name` and a newline.
fn fnv_line(mut hash: u64, name: &str) -> u64 {
    for b in name.bytes().chain(std::iter::once(b'\n')) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

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

    /// Builds a member from a gossip key-value state (keys in ascending order, as chitchat
    /// holds them). Malformed values are skipped (and logged): a peer running a newer version
    /// with values this one does not understand still shows up with what can be read.
    ///
    /// A role or service set that does not match its marker is a change still in transit: the
    /// member keeps that set from `previous` (the member as last read). A member seen for the
    /// first time with such a set is not shown yet (`None`), so that no peer ever sees a node
    /// with part of its state.
    pub(crate) fn from_gossip<'a>(
        id: NodeId,
        gossip_addr: SocketAddr,
        kvs: impl Iterator<Item = (&'a str, &'a str)>,
        previous: Option<&Member>,
    ) -> Option<Member> {
        let mut member = Member {
            id,
            roles: BTreeSet::new(),
            services: BTreeSet::new(),
            rpc_addr: None,
            gossip_addr,
            status: NodeStatus::Joining,
        };
        let mut roles = SetReader::default();
        let mut services = SetReader::default();
        for (key, value) in kvs {
            if let Some(role) = key.strip_prefix(ROLE_PREFIX) {
                roles.item(role, |r| Role::new(r).ok(), &mut member.roles);
            } else if let Some(service) = key.strip_prefix(SERVICE_PREFIX) {
                services.item(service, |s| ServiceName::new(s).ok(), &mut member.services);
            } else {
                match key {
                    KEY_ROLE_SET => roles.marker = Some(value),
                    KEY_SERVICE_SET => services.marker = Some(value),
                    KEY_RPC_ADDR => member.rpc_addr = value.parse().ok(),
                    KEY_STATUS => {
                        if let Some(status) = NodeStatus::parse(value) {
                            member.status = status;
                        }
                    }
                    _ => {}
                }
            }
        }
        if !roles.complete() {
            member.roles = previous?.roles.clone();
        }
        if !services.complete() {
            member.services = previous?.services.clone();
        }
        Some(member)
    }
}

/// Reads one set (roles or services) of a gossip state and checks it against its marker.
struct SetReader<'a> {
    hash: u64,
    count: usize,
    marker: Option<&'a str>,
}

impl Default for SetReader<'_> {
    fn default() -> Self {
        SetReader {
            hash: FNV_OFFSET,
            count: 0,
            marker: None,
        }
    }
}

impl SetReader<'_> {
    fn item<T: Ord>(
        &mut self,
        raw: &str,
        parse: impl Fn(&str) -> Option<T>,
        into: &mut BTreeSet<T>,
    ) {
        self.hash = fnv_line(self.hash, raw);
        self.count += 1;
        match parse(raw) {
            Some(v) => {
                into.insert(v);
            }
            None => tracing::debug!(value = raw, "ignoring a malformed gossip set item"),
        }
    }

    /// Whether the items read are exactly the set the marker describes (no marker and no
    /// items: an empty set).
    fn complete(&self) -> bool {
        match self.marker {
            None => self.count == 0,
            Some(m) => m == format!("{}:{:016x}", self.count, self.hash),
        }
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

/// A shared member, as handed out by the registry.
pub type MemberRef = Arc<Member>;

#[cfg(test)]
mod tests {
    use super::*;

    fn kvs(roles: &[&str], marker: Option<&[&str]>) -> Vec<(String, String)> {
        let mut kvs: Vec<(String, String)> = roles
            .iter()
            .map(|r| (format!("{ROLE_PREFIX}{r}"), String::new()))
            .collect();
        if let Some(m) = marker {
            let mut m = m.to_vec();
            m.sort();
            kvs.push((KEY_ROLE_SET.into(), set_marker(m)));
        }
        kvs.push((format!("{SERVICE_PREFIX}billing::Billing"), String::new()));
        kvs.push((KEY_SERVICE_SET.into(), set_marker(["billing::Billing"])));
        kvs.push((KEY_RPC_ADDR.into(), "127.0.0.1:4000".into()));
        kvs.push((KEY_STATUS.into(), "serving".into()));
        kvs.push(("unknown-future-key".into(), "x".into()));
        kvs.sort();
        kvs
    }

    fn read(kvs: &[(String, String)], previous: Option<&Member>) -> Option<Member> {
        Member::from_gossip(
            NodeId::new("n1", 7).unwrap(),
            "127.0.0.1:4000".parse().unwrap(),
            kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            previous,
        )
    }

    #[test]
    fn round_trips_through_gossip_keys() {
        let roles = ["audit", "billing", "shard:1", "region/eu"];
        let m = read(&kvs(&roles, Some(&roles)), None).unwrap();
        assert_eq!(m.id, NodeId::new("n1", 7).unwrap());
        for r in roles {
            assert!(m.has_role(r), "{r}");
        }
        assert_eq!(m.roles.len(), 4);
        assert!(m.serves("billing::Billing"));
        assert_eq!(m.status, NodeStatus::Serving);
        assert_eq!(m.rpc_addr, Some("127.0.0.1:4000".parse().unwrap()));
    }

    #[test]
    fn a_set_that_does_not_match_its_marker_is_not_shown() {
        // Half of a change: the marker says three roles, two arrived.
        let partial = kvs(&["a", "b"], Some(&["a", "b", "c"]));
        assert!(read(&partial, None).is_none(), "first sight: hidden");
        let before = read(&kvs(&["x"], Some(&["x"])), None).unwrap();
        let m = read(&partial, Some(&before)).unwrap();
        assert_eq!(m.roles, before.roles, "keeps the last complete set");
        assert_eq!(m.status, NodeStatus::Serving, "other keys still read");
        // The rest arrives: the new set in full.
        let full = read(
            &kvs(&["a", "b", "c"], Some(&["a", "b", "c"])),
            Some(&before),
        )
        .unwrap();
        assert_eq!(full.roles.len(), 3);
        // Roles without a marker are in transit too; no roles and no marker is an empty set.
        assert!(read(&kvs(&["a"], None), None).is_none());
        assert!(read(&kvs(&[], None), None).unwrap().roles.is_empty());
    }

    #[test]
    fn malformed_items_are_skipped_but_counted() {
        let roles = ["ok", "bad role", "also-ok"];
        let mut kv = kvs(&roles, Some(&roles));
        kv.push((KEY_STATUS.into(), "weird".into()));
        kv.retain(|(k, v)| !(k == KEY_STATUS && v == "serving"));
        kv.sort();
        let m = read(&kv, None).unwrap();
        assert_eq!(m.roles.len(), 2);
        assert_eq!(m.status, NodeStatus::Joining);
    }
}
