//! Names: node identity, roles and service names, each validated once, cheap to clone.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::Error;

/// The longest role name accepted.
pub const MAX_ROLE_LEN: usize = 64;
/// The longest node name accepted (a DNS name's length).
pub const MAX_NODE_NAME_LEN: usize = 253;
/// The longest service name accepted.
pub const MAX_SERVICE_LEN: usize = 128;
/// The most roles one node may have. A change that would give a node more is refused with
/// [`Error::TooMany`]; a node with this many roles reaches every peer (each role travels as its
/// own gossip key, so no single gossip value grows with the number of roles).
pub const MAX_ROLES_PER_NODE: usize = 10_000;
/// The most RPC services one node may advertise (refused beyond, with [`Error::TooMany`]).
pub const MAX_SERVICES_PER_NODE: usize = 1_000;

/// The characters a role may contain besides ASCII letters and digits.
const ROLE_EXTRA: &[u8] = b"-_.:/";
/// The characters a service name may contain besides ASCII letters and digits.
const SERVICE_EXTRA: &[u8] = b"-_.:";
/// The characters a node name may contain besides ASCII letters and digits.
const NODE_EXTRA: &[u8] = b"-_.";

/// Checks a name: not empty, at most `max` bytes, starts with an ASCII letter or digit, and
/// contains only ASCII letters, digits and `extra`.
fn check_name(name: &str, max: usize, extra: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > max {
        return Err(match max {
            MAX_ROLE_LEN => "it is longer than 64 bytes",
            MAX_SERVICE_LEN => "it is longer than 128 bytes",
            _ => "it is longer than 253 bytes",
        });
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("it must start with an ASCII letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(match extra {
            NODE_EXTRA => "only ASCII letters, digits, '-', '_' and '.' are allowed",
            ROLE_EXTRA => "only ASCII letters, digits, '-', '_', '.', ':' and '/' are allowed",
            _ => "only ASCII letters, digits, '-', '_', '.' and ':' are allowed",
        });
    }
    Ok(())
}

/// A role, such as `"billing"`, `"shard:1"` or `"region/eu"`: what a node does, and what
/// callers ask for.
///
/// # Grammar
///
/// ```text
/// role  = first *63rest            ; 1 to 64 bytes
/// first = ALPHA / DIGIT            ; ASCII only
/// rest  = ALPHA / DIGIT / "-" / "_" / "." / ":" / "/"
/// ```
///
/// Roles compare by their exact text (`"Billing"` is not `"billing"`); `:` and `/` carry no
/// meaning to the registry (`"region/eu"` is one role, not a hierarchy). A role never contains
/// `,` (the separator of `CLUSTER_ROLES`), white space or anything outside ASCII. In gossip each
/// role is its own key, `role:<role>`: the fixed prefix is stripped once, so colons inside a
/// role stay part of it.
///
/// ```
/// use cluster_helper::Role;
/// let billing: Role = "billing".parse()?;
/// assert_eq!(billing.as_str(), "billing");
/// assert!(Role::new("shard:1").is_ok());
/// assert!(Role::new("region/eu").is_ok());
/// assert!(Role::new("").is_err());
/// assert!(Role::new("bill ing").is_err());
/// assert!(Role::new("a,b").is_err());
/// assert!(Role::new("/root").is_err());
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(Arc<str>);

impl Role {
    /// Validates `name` and makes a role of it.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        check_name(name, MAX_ROLE_LEN, ROLE_EXTRA).map_err(|reason| Error::InvalidRole {
            role: name.to_owned(),
            reason,
        })?;
        Ok(Role(name.into()))
    }

    /// The role's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Role::new(s)
    }
}

impl TryFrom<&str> for Role {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Role::new(s)
    }
}

impl TryFrom<String> for Role {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Role::new(s)
    }
}

impl TryFrom<&String> for Role {
    type Error = Error;
    fn try_from(s: &String) -> Result<Self, Error> {
        Role::new(s)
    }
}

impl TryFrom<&Role> for Role {
    type Error = Error;
    fn try_from(r: &Role) -> Result<Self, Error> {
        Ok(r.clone())
    }
}

impl Borrow<str> for Role {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The name of an RPC service a node serves, such as `"Billing"`.
///
/// 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `:`, starting with a letter or
/// digit.
///
/// ```
/// use cluster_helper::ServiceName;
/// assert!(ServiceName::new("billing::Billing").is_ok());
/// assert!(ServiceName::new("no spaces").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// Validates `name` and makes a service name of it.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        check_name(name, MAX_SERVICE_LEN, SERVICE_EXTRA).map_err(|reason| {
            Error::InvalidService {
                service: name.to_owned(),
                reason,
            }
        })?;
        Ok(ServiceName(name.into()))
    }

    /// The service's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Validates a node name (see [`NodeId`]).
pub(crate) fn check_node_name(name: &str) -> Result<(), Error> {
    check_name(name, MAX_NODE_NAME_LEN, NODE_EXTRA).map_err(|reason| Error::InvalidNodeName {
        name: name.to_owned(),
        reason,
    })
}

/// Why a name was rejected, from one of the name errors.
pub(crate) fn reason_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidRole { reason, .. }
        | Error::InvalidNodeName { reason, .. }
        | Error::InvalidService { reason, .. } => reason,
        _ => "invalid",
    }
}

/// Validates a cluster name (the rules of a node name); the error names `setting`.
pub(crate) fn parse_cluster_name(setting: &str, v: &str) -> Result<String, Error> {
    check_node_name(v).map_err(|e| {
        Error::config(
            setting,
            v,
            format!(
                "a cluster name of 1-253 ASCII letters, digits, '-', '_', '.' ({})",
                reason_of(&e)
            ),
        )
    })?;
    Ok(v.to_owned())
}

/// The identity of one run of one node: its name plus an incarnation.
///
/// The name is stable across restarts where the platform makes it so (a Kubernetes
/// StatefulSet's `billing-0`) or unique per pod (a Deployment's pod name). The incarnation is
/// chosen at start from the wall clock in microseconds, so a restarted node always has a larger
/// one than the run it replaces. Two `NodeId`s are equal only if both parts are: a node restarted
/// with a new address is a different `NodeId`, and the registry drops the older incarnation of
/// a name as soon as it sees the newer one. The IP address is never part of the identity.
///
/// ```
/// use cluster_helper::NodeId;
/// let a = NodeId::new("billing-0", 1)?;
/// let b = NodeId::new("billing-0", 2)?;
/// assert_ne!(a, b);
/// assert_eq!(a.name(), b.name());
/// assert_eq!(b.to_string(), "billing-0#2");
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    name: Arc<str>,
    incarnation: u64,
}

impl NodeId {
    /// Makes a node id from a validated name and an incarnation.
    pub fn new(name: impl AsRef<str>, incarnation: u64) -> Result<Self, Error> {
        let name = name.as_ref();
        check_node_name(name)?;
        Ok(NodeId {
            name: name.into(),
            incarnation,
        })
    }

    pub(crate) fn from_parts(name: Arc<str>, incarnation: u64) -> Self {
        NodeId { name, incarnation }
    }

    /// The node's name, stable for the life of the process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The incarnation (generation) of this run of the node; larger means newer.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            f.pad(&format!("{}#{}", self.name, self.incarnation))
        } else {
            write!(f, "{}#{}", self.name, self.incarnation)
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A node named either by its full [`NodeId`] or by its name alone, for lookups such as
/// [`Registry::roles_of`](crate::Registry::roles_of).
///
/// A registry holds at most one incarnation per name (the newest; a node always keeps its own),
/// so a name finds the same member an id would, without knowing the incarnation. An id finds
/// only that incarnation.
///
/// ```
/// use cluster_helper::{NodeId, NodeRef};
/// let id = NodeId::new("billing-0", 7)?;
/// assert_eq!(NodeRef::from(&id), NodeRef::Id(&id));
/// assert_eq!(NodeRef::from("billing-0"), NodeRef::Name("billing-0"));
/// assert_eq!(NodeRef::from(&id).name(), "billing-0");
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRef<'a> {
    /// One incarnation of a node.
    Id(&'a NodeId),
    /// Whichever incarnation of the node of this name the registry holds.
    Name(&'a str),
}

impl NodeRef<'_> {
    /// The node's name.
    pub fn name(&self) -> &str {
        match self {
            NodeRef::Id(id) => id.name(),
            NodeRef::Name(name) => name,
        }
    }
}

impl<'a> From<&'a NodeId> for NodeRef<'a> {
    fn from(id: &'a NodeId) -> Self {
        NodeRef::Id(id)
    }
}

impl<'a> From<&'a str> for NodeRef<'a> {
    fn from(name: &'a str) -> Self {
        NodeRef::Name(name)
    }
}

impl<'a> From<&'a String> for NodeRef<'a> {
    fn from(name: &'a String) -> Self {
        NodeRef::Name(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_validation_names_the_problem() {
        assert!(Role::new("billing").is_ok());
        assert!(Role::new("billing-v2.eu_west").is_ok());
        let err = Role::new("").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Role::new("x".repeat(65)).unwrap_err().to_string();
        assert!(err.contains("longer than 64"), "{err}");
        assert!(Role::new("x".repeat(64)).is_ok());
        let err = Role::new("a,b").unwrap_err().to_string();
        assert!(err.contains("only ASCII"), "{err}");
        let err = Role::new("-billing").unwrap_err().to_string();
        assert!(err.contains("start with"), "{err}");
        assert!(Role::new("bil ling").is_err());
        assert!(Role::new("billé").is_err());
        for ok in ["shard:1", "region/eu", "a:b/c:d", "x/"] {
            assert_eq!(Role::new(ok).unwrap().as_str(), ok);
        }
        for bad in [":x", "/x", "a\\b", "a;b", "a\nb"] {
            let err = Role::new(bad).unwrap_err().to_string();
            assert!(
                err.contains("start with") || err.contains("'/'"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn node_ids_differ_by_incarnation() {
        let a = NodeId::new("n", 1).unwrap();
        let b = NodeId::new("n", 2).unwrap();
        assert_ne!(a, b);
        assert!(a < b);
        assert!(NodeId::new("has#hash", 1).is_err());
        assert!(NodeId::new("", 1).is_err());
    }

    #[test]
    fn service_names() {
        assert!(ServiceName::new("billing::Billing").is_ok());
        assert!(ServiceName::new("a,b").is_err());
        assert!(ServiceName::new("x".repeat(129)).is_err());
    }
}
