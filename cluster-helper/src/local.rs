//! The node's own state (roles, services, status) and the one ordered path every change to it
//! takes: applied, checked, written to gossip and shown in the node's own registry under one
//! lock, so that gossip always holds the last change and the registry reflects it when the
//! change returns.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chitchat::NodeState;

use crate::error::{Error, Result};
use crate::id::{MAX_ROLES_PER_NODE, MAX_SERVICES_PER_NODE, Role, ServiceName};
use crate::member::{
    KEY_ROLE_SET, KEY_RPC_ADDR, KEY_SERVICE_SET, KEY_STATUS, NodeStatus, ROLE_PREFIX,
    SERVICE_PREFIX, set_marker,
};
use crate::membership::{announce, refresh};
use crate::node::Inner;

/// What this node says of itself in gossip.
#[derive(Clone, Debug)]
pub(crate) struct LocalState {
    pub(crate) roles: BTreeSet<Role>,
    pub(crate) services: BTreeSet<ServiceName>,
    pub(crate) status: NodeStatus,
}

impl LocalState {
    /// Refuses a state over the documented limits.
    pub(crate) fn check_limits(&self) -> Result<()> {
        if self.roles.len() > MAX_ROLES_PER_NODE {
            return Err(Error::TooMany {
                what: "roles",
                requested: self.roles.len(),
                limit: MAX_ROLES_PER_NODE,
            });
        }
        if self.services.len() > MAX_SERVICES_PER_NODE {
            return Err(Error::TooMany {
                what: "services",
                requested: self.services.len(),
                limit: MAX_SERVICES_PER_NODE,
            });
        }
        Ok(())
    }

    /// The gossip key-values of this state, for a node that starts: each set's keys before its
    /// marker, the status last.
    pub(crate) fn initial_kvs(&self, rpc_addr: Option<SocketAddr>) -> Vec<(String, String)> {
        let mut kvs: Vec<(String, String)> =
            Vec::with_capacity(self.roles.len() + self.services.len() + 4);
        kvs.extend(
            self.roles
                .iter()
                .map(|r| (format!("{ROLE_PREFIX}{r}"), String::new())),
        );
        kvs.push((
            KEY_ROLE_SET.to_owned(),
            set_marker(self.roles.iter().map(Role::as_str)),
        ));
        kvs.extend(
            self.services
                .iter()
                .map(|s| (format!("{SERVICE_PREFIX}{s}"), String::new())),
        );
        kvs.push((
            KEY_SERVICE_SET.to_owned(),
            set_marker(self.services.iter().map(ServiceName::as_str)),
        ));
        if let Some(a) = rpc_addr {
            kvs.push((KEY_RPC_ADDR.to_owned(), a.to_string()));
        }
        kvs.push((KEY_STATUS.to_owned(), self.status.as_str().to_owned()));
        kvs
    }

    /// Writes the difference from `old` to `self` into this node's gossip state: added and
    /// removed keys first, then the marker of each changed set, then the status.
    fn write_changes(&self, old: &LocalState, gossip: &mut NodeState) {
        if self.roles != old.roles {
            write_set(gossip, ROLE_PREFIX, KEY_ROLE_SET, &old.roles, &self.roles);
        }
        if self.services != old.services {
            write_set(
                gossip,
                SERVICE_PREFIX,
                KEY_SERVICE_SET,
                &old.services,
                &self.services,
            );
        }
        if self.status != old.status {
            gossip.set(KEY_STATUS, self.status.as_str());
        }
    }
}

fn write_set<T: Ord + AsRef<str>>(
    gossip: &mut NodeState,
    prefix: &str,
    marker: &str,
    old: &BTreeSet<T>,
    new: &BTreeSet<T>,
) {
    for gone in old.difference(new) {
        gossip.delete(&format!("{prefix}{}", gone.as_ref()));
    }
    for added in new.difference(old) {
        gossip.set(format!("{prefix}{}", added.as_ref()), "");
    }
    gossip.set(marker, set_marker(new.iter().map(AsRef::as_ref)));
}

/// The node's own state behind its one ordered path.
#[derive(Debug)]
pub(crate) struct Local {
    /// Held for the whole of a change (apply, gossip write, registry refresh): changes take
    /// effect in the order they take this lock (tokio's mutex is fair), one at a time.
    state: tokio::sync::Mutex<LocalState>,
    /// The last committed state, for reads that must not wait.
    view: ArcSwap<LocalState>,
}

impl Local {
    pub(crate) fn new(state: LocalState) -> Local {
        Local {
            view: ArcSwap::from_pointee(state.clone()),
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// The last committed state.
    pub(crate) fn view(&self) -> Arc<LocalState> {
        self.view.load_full()
    }
}

/// Applies `change` to the node's state; if it changed anything (and stays within the
/// limits), writes it to gossip, refreshes the node's own registry (events included), and
/// pushes it to every peer. Returns whether anything changed.
pub(crate) async fn change(
    inner: &Inner,
    change: impl FnOnce(&mut LocalState) -> bool,
) -> Result<bool> {
    if *inner.stop.borrow() {
        return Err(Error::ShutDown);
    }
    let mut state = inner.local.state.lock().await;
    let mut next = state.clone();
    if !change(&mut next) {
        return Ok(false);
    }
    next.check_limits()?;
    {
        let mut cc = inner.chitchat.lock().await;
        next.write_changes(&state, cc.self_node_state());
    }
    inner.local.view.store(Arc::new(next.clone()));
    *state = next;
    // Read-your-writes: the registry (and its events) show the change before it returns.
    refresh(inner).await;
    drop(state);
    announce(inner).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(roles: usize, services: usize) -> LocalState {
        LocalState {
            roles: (0..roles)
                .map(|i| Role::new(format!("r{i}")).unwrap())
                .collect(),
            services: (0..services)
                .map(|i| ServiceName::new(format!("s{i}")).unwrap())
                .collect(),
            status: NodeStatus::Joining,
        }
    }

    #[test]
    fn limits_are_checked_at_and_over() {
        assert!(state(MAX_ROLES_PER_NODE, 0).check_limits().is_ok());
        let err = state(MAX_ROLES_PER_NODE + 1, 0).check_limits().unwrap_err();
        assert!(
            matches!(err, Error::TooMany { what: "roles", requested, .. } if requested == MAX_ROLES_PER_NODE + 1)
        );
        assert!(state(0, MAX_SERVICES_PER_NODE).check_limits().is_ok());
        let err = state(0, MAX_SERVICES_PER_NODE + 1)
            .check_limits()
            .unwrap_err();
        assert!(err.to_string().contains("services"), "{err}");
    }

    #[test]
    fn initial_keys_put_each_marker_after_its_set_and_the_status_last() {
        let kvs = state(3, 1).initial_kvs(Some("127.0.0.1:1".parse().unwrap()));
        let keys: Vec<&str> = kvs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "role:r0",
                "role:r1",
                "role:r2",
                "role-set",
                "service:s0",
                "service-set",
                "rpc",
                "status"
            ]
        );
    }
}
