//! [`NodeBuilder`]: every setting of a node, from code or the environment, checked before
//! anything is bound.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::config::{Config, RpcListen};
use crate::error::{Error, Result};
use crate::id::{Role, ServiceName};
use crate::node::Node;
use crate::seed::Seed;

/// Builds and starts a [`Node`]. Every setting has a default; see [`Config`] for each one and the
/// environment variable that sets it.
///
/// Setters that take text validate it; the first invalid value is returned by
/// [`start`](NodeBuilder::start), so a chain of setters needs only one `?`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cluster_helper::Error> {
/// let node = cluster_helper::Node::builder()
///     .cluster("docs")
///     .name("billing-1")
///     .roles(["billing"])
///     .listen("127.0.0.1:0")
///     .secret("not-a-real-secret")
///     .start()
///     .await?;
/// node.ready().await;
/// assert_eq!(node.nodes_with_role("billing")[0].id, *node.id());
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .start() is awaited"]
pub struct NodeBuilder {
    config: Config,
    error: Option<Error>,
}

impl NodeBuilder {
    /// A builder with the default [`Config`].
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(mut self, e: Error) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Reads the `CLUSTER_*` environment variables (see [`Config`]); they override what was set
    /// before, and later setters override them.
    pub fn from_env(self) -> Result<Self> {
        self.from_vars(std::env::vars())
    }

    /// Like [`from_env`](NodeBuilder::from_env), from the given variables instead of the
    /// process environment.
    pub fn from_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.config.apply_env(|k| vars.get(k).cloned())?;
        Ok(self)
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The cluster's name.
    pub fn cluster(mut self, name: impl AsRef<str>) -> Self {
        match crate::config::parse_cluster_name("cluster name", name.as_ref()) {
            Ok(n) => {
                self.config.cluster = n;
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The node's name (default: derived from the hostname, see [`Config::node_name`]).
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        match crate::id::check_node_name(name.as_ref()) {
            Ok(()) => {
                self.config.node_name = Some(name.as_ref().to_owned());
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The roles the node starts with (replacing any set before).
    pub fn roles<R: AsRef<str>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        let mut set = BTreeSet::new();
        for r in roles {
            match Role::new(r) {
                Ok(r) => {
                    set.insert(r);
                }
                Err(e) => return self.fail(e),
            }
        }
        self.config.roles = set;
        self
    }

    /// Adds RPC services the node advertises from the start (used by the RPC layer).
    pub fn services<S: AsRef<str>>(mut self, services: impl IntoIterator<Item = S>) -> Self {
        for s in services {
            match ServiceName::new(s) {
                Ok(s) => {
                    self.config.services.insert(s);
                }
                Err(e) => return self.fail(e),
            }
        }
        self
    }

    /// Where peers might be: `host:port`, `dns:name:port` or `srv:_service._proto.name`
    /// (replacing any set before).
    pub fn seeds<S: AsRef<str>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        let mut list = Vec::new();
        for s in seeds {
            match s.as_ref().parse::<Seed>() {
                Ok(seed) => list.push(seed),
                Err(e) => return self.fail(e),
            }
        }
        self.config.seeds = list;
        self
    }

    /// The gossip (UDP) listen address, e.g. `"0.0.0.0:7946"`; port 0 picks a free port.
    pub fn listen(mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Self {
        match first_addr("listen address", addr) {
            Ok(a) => {
                self.config.listen = a;
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The gossip address peers use to reach this node (e.g. the pod IP).
    pub fn advertise(mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Self {
        match first_addr("advertise address", addr) {
            Ok(a) => {
                self.config.advertise = Some(a);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// Where the node accepts RPC connections.
    pub fn rpc_listen(mut self, rpc: RpcListen) -> Self {
        self.config.rpc_listen = rpc;
        self
    }

    /// The cluster secret: every gossip packet and RPC handshake is authenticated with keys
    /// derived from it.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// The DNS server (`ip:port`) for DNS seeds, instead of the system's.
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.config.dns_server = Some(addr);
        self
    }

    /// How often the node gossips.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.config.gossip_interval = interval;
        self
    }

    /// The phi-accrual threshold of the failure detector.
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.config.phi_threshold = phi;
        self
    }

    /// How long a leaving node keeps gossiping after announcing it leaves.
    pub fn leave_grace(mut self, grace: Duration) -> Self {
        self.config.leave_grace = grace;
        self
    }

    /// How long to wait for a peer before declaring this node ready on its own.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.config.join_timeout = timeout;
        self
    }

    /// Bounds on DNS re-resolution (the records' TTL decides within them).
    pub fn dns_interval(mut self, min: Duration, max: Duration) -> Self {
        self.config.dns_min_interval = min;
        self.config.dns_max_interval = max;
        self
    }

    /// Binds the sockets, starts gossip and discovery, and returns the running node. The node
    /// is [ready](Node::ready) once it has seen the cluster.
    pub async fn start(self) -> Result<Node> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        Node::start(self.config).await
    }
}

fn first_addr(what: &str, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Error::config(
                what,
                format!("{addr:?}").trim_matches('"').to_owned(),
                "an IP address and port such as 127.0.0.1:0",
            )
        })
}
