//! Node configuration: a `#[non_exhaustive]` struct with defaults. The builder fills it from
//! code and from `CLUSTER_*` environment variables (see `settings.rs` for the precedence).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::address::Address;
use crate::error::Error;
use crate::id::{Role, ServiceName};
use crate::secret::Secret;
use crate::seed::Seed;
use crate::settings::{Field, Origins};

/// The default port for gossip (UDP) and RPC (TCP).
pub const DEFAULT_PORT: u16 = 7946;

/// The largest fixed [`Config::gossip_fanout`].
pub(crate) const MAX_GOSSIP_FANOUT: u32 = 16;

/// Where a node accepts RPC connections.
///
/// The default is [`Disabled`](RpcListen::Disabled): a cluster-helper node alone binds no TCP
/// port, since nothing would accept on it. An RPC layer makes
/// [`SamePort`](RpcListen::SamePort) its default (easy-rpc does, through
/// [`NodeBuilder::default_rpc_listen`](crate::NodeBuilder::default_rpc_listen)), and a program
/// that serves RPC itself from [`Node::take_rpc_listener`](crate::Node::take_rpc_listener)
/// asks for one ([`NodeBuilder::rpc_listen`](crate::NodeBuilder::rpc_listen) or
/// `CLUSTER_RPC_LISTEN`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RpcListen {
    /// A TCP listener on the gossip address's IP and port number (one port number per node,
    /// TCP and UDP). The default of easy-rpc nodes.
    SamePort,
    /// A TCP listener on this address (port 0 picks a free port).
    Addr(Address),
    /// No RPC listener: the node binds no TCP port and only takes part in membership (or
    /// makes calls). The default of a cluster-helper node.
    #[default]
    Disabled,
}

impl From<SocketAddr> for RpcListen {
    fn from(addr: SocketAddr) -> RpcListen {
        RpcListen::Addr(Address::Ip(addr))
    }
}

impl fmt::Display for RpcListen {
    /// As `CLUSTER_RPC_LISTEN` writes it: `same`, `off` or the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcListen::SamePort => f.write_str("same"),
            RpcListen::Addr(addr) => write!(f, "{addr}"),
            RpcListen::Disabled => f.write_str("off"),
        }
    }
}

/// Everything a [`Node`](crate::Node) needs.
///
/// [`NodeBuilder`](crate::NodeBuilder) fills it from three sources: a `Config` given to
/// [`NodeBuilder::config`](crate::NodeBuilder::config) is the base (the defaults below when none
/// is given); the `CLUSTER_*` variables read by
/// [`NodeBuilder::from_env`](crate::NodeBuilder::from_env) override the base; values set by the
/// builder's other methods override both, whatever the order of the calls. Roles, services and
/// seeds are merged instead: the node gets every source's (the union, duplicates dropped). At
/// start the node logs each environment value that the program overrode.
///
/// Addresses are [`Address`]es: a literal `ip:port`, or a `host:port` resolved (without
/// blocking) when the node starts. [`Node::config`](crate::Node::config) shows them as
/// configured; [`Node::gossip_addr`](crate::Node::gossip_addr) and
/// [`Node::rpc_addr`](crate::Node::rpc_addr) give what they resolved to.
///
/// Its `Debug` output never shows the secrets:
///
/// ```
/// let secret = cluster_helper::Secret::generate();
/// let mut config = cluster_helper::Config::default();
/// config.secrets = vec![secret.clone()];
/// let shown = format!("{config:?}");
/// assert!(shown.contains(r#"secrets: ["<redacted>"]"#) && !shown.contains(&secret.to_base64()));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The cluster's name (`CLUSTER_NAME`, default `"default"`). Nodes of other clusters are
    /// never seen, even on the same network.
    pub cluster: String,
    /// The node's name (`CLUSTER_NODE_NAME`). Default: the hostname, with `-<pid>` appended
    /// unless the process is a container's PID 1, and `-<n>` for the n-th extra node started in
    /// the same process.
    pub node_name: Option<String>,
    /// The roles the node starts with (`CLUSTER_ROLES`, comma separated).
    pub roles: BTreeSet<Role>,
    /// The RPC services the node serves from the start (set by the RPC layer, not from the
    /// environment), so that they are advertised with the node's first gossip state.
    pub services: BTreeSet<ServiceName>,
    /// Where peers might be (`CLUSTER_SEEDS`, comma separated).
    pub seeds: Vec<Seed>,
    /// The gossip (UDP) listen address (`CLUSTER_LISTEN`, default `0.0.0.0:7946`; in
    /// [`insecure`](Config::insecure) mode the default is `127.0.0.1:7946`).
    pub listen: Address,
    /// The gossip address peers use to reach this node (`CLUSTER_ADVERTISE`, e.g. the pod IP;
    /// port 0, or a bare IP in the variable, takes the bound gossip port). Default: the listen
    /// address if it is specific, else the address the hostname resolves to, else 127.0.0.1.
    pub advertise: Option<Address>,
    /// The RPC (TCP) listener (`CLUSTER_RPC_LISTEN`: `same`, an address, or `off`). Default:
    /// [`RpcListen::Disabled`] (no TCP port) for a cluster-helper node, unless the layer that
    /// starts it sets another default with
    /// [`NodeBuilder::default_rpc_listen`](crate::NodeBuilder::default_rpc_listen): an
    /// easy-rpc node listens on the gossip port number ([`RpcListen::SamePort`]) unless code,
    /// the environment or the base `Config` say otherwise.
    pub rpc_listen: RpcListen,
    /// The RPC address peers use (`CLUSTER_RPC_ADVERTISE`; port 0 takes the RPC listener's
    /// port). Default: the advertised gossip IP with the RPC listener's port.
    pub rpc_advertise: Option<Address>,
    /// The keyring: the cluster secrets, in order (`CLUSTER_SECRET`: one secret or a comma
    /// separated list; or `CLUSTER_SECRET_FILE`: the path of a file holding one per line).
    /// The first one seals what the node sends and proves it in handshakes; every one is
    /// accepted on receipt, so that a key can be rotated without downtime (see
    /// [`Node::set_secrets`](crate::Node::set_secrets)). A node does not start without one,
    /// unless [`insecure`](Config::insecure).
    pub secrets: Vec<Secret>,
    /// Runs without a secret (`CLUSTER_INSECURE=1`): gossip and RPC keys derive from a fixed,
    /// public value and the cluster name, so anyone who can reach the node can join the
    /// cluster, read its gossip and call its services. For local experiments only: a warning
    /// is logged at start, and the default listen address becomes `127.0.0.1:7946`. Setting
    /// both a secret and this is an error.
    pub insecure: bool,
    /// How old (or how far in the future, by the sender's clock) a gossip packet may be and
    /// still be accepted (`CLUSTER_GOSSIP_MAX_PACKET_AGE_MS`, default 10s, from 100ms to 1h).
    /// This is the clock-skew allowance between nodes: keep their clocks synchronised (NTP)
    /// to well within it. Older packets are dropped, so that a recorded packet cannot be
    /// replayed later.
    pub gossip_max_packet_age: Duration,
    /// The DNS server for `dns:`/`srv:`/hostname seeds (`CLUSTER_DNS_SERVER`, `ip:port`; a bare
    /// IP means port 53). Default: the system's resolver configuration.
    pub dns_server: Option<Address>,
    /// How often a node gossips with a few peers (`CLUSTER_GOSSIP_INTERVAL`, default 250ms,
    /// from 10ms to 60s).
    pub gossip_interval: Duration,
    /// Phi-accrual threshold (`CLUSTER_PHI_THRESHOLD`, default 8, at least 1): a node is
    /// declared down once nothing was heard from it for about this many mean heartbeat
    /// intervals. With the default interval a crashed node leaves the registry in about 2-3 s.
    pub phi_threshold: f64,
    /// How many live peers each gossip round sends its digest to (`CLUSTER_GOSSIP_FANOUT`,
    /// `auto` or 1 to 16). `None` (the default, `auto`) adapts it to the cluster: 3 while a node
    /// has at most 32 live peers, then `96 / peers`, at least 1. Every gossip message carries
    /// an entry per member, so this keeps a node's gossip bytes near 10 KB/s up to about 128
    /// members (they grow linearly beyond), at the price of changes and heartbeats taking
    /// a few more rounds to reach everyone in large clusters (ARCHITECTURE.md, "What limits
    /// N"). A fixed fanout trades bytes for speed the other way.
    pub gossip_fanout: Option<u32>,
    /// How long a leaving node keeps gossiping after announcing `leaving` (so that every peer
    /// hears it) before it stops (`CLUSTER_LEAVE_GRACE`, default 500ms).
    pub leave_grace: Duration,
    /// How long a node waits for any peer to answer before it declares itself ready alone, as
    /// the first node of a new cluster (`CLUSTER_JOIN_TIMEOUT`, default 5s; a huge value such
    /// as `Duration::MAX` means "never").
    pub join_timeout: Duration,
    /// Bounds on DNS re-resolution; within them the interval follows the records' TTL
    /// (`CLUSTER_DNS_MIN_INTERVAL`, default 1s, more than 0; `CLUSTER_DNS_MAX_INTERVAL`,
    /// default 30s).
    pub dns_min_interval: Duration,
    /// See [`dns_min_interval`](Config::dns_min_interval).
    pub dns_max_interval: Duration,
    /// How long a dead node's state is kept (to recognise its late packets) before it is
    /// forgotten. Default 10 minutes; values above one day count as one day.
    pub dead_node_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "default".to_owned(),
            node_name: None,
            roles: BTreeSet::new(),
            services: BTreeSet::new(),
            seeds: Vec::new(),
            listen: Address::Ip(SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))),
            advertise: None,
            rpc_listen: RpcListen::Disabled,
            rpc_advertise: None,
            secrets: Vec::new(),
            insecure: false,
            gossip_max_packet_age: Duration::from_secs(10),
            dns_server: None,
            gossip_interval: Duration::from_millis(250),
            phi_threshold: 8.0,
            gossip_fanout: None,
            leave_grace: Duration::from_millis(500),
            join_timeout: Duration::from_secs(5),
            dns_min_interval: Duration::from_secs(1),
            dns_max_interval: Duration::from_secs(30),
            dead_node_grace: Duration::from_secs(600),
        }
    }
}

/// The environment variables [`NodeBuilder::from_env`](crate::NodeBuilder::from_env) reads.
pub const ENV_VARS: &[&str] = &[
    "CLUSTER_NAME",
    "CLUSTER_NODE_NAME",
    "CLUSTER_ROLES",
    "CLUSTER_SEEDS",
    "CLUSTER_LISTEN",
    "CLUSTER_ADVERTISE",
    "CLUSTER_RPC_LISTEN",
    "CLUSTER_RPC_ADVERTISE",
    "CLUSTER_SECRET",
    "CLUSTER_SECRET_FILE",
    "CLUSTER_INSECURE",
    "CLUSTER_GOSSIP_MAX_PACKET_AGE_MS",
    "CLUSTER_DNS_SERVER",
    "CLUSTER_GOSSIP_INTERVAL",
    "CLUSTER_PHI_THRESHOLD",
    "CLUSTER_GOSSIP_FANOUT",
    "CLUSTER_LEAVE_GRACE",
    "CLUSTER_JOIN_TIMEOUT",
    "CLUSTER_DNS_MIN_INTERVAL",
    "CLUSTER_DNS_MAX_INTERVAL",
];

impl Config {
    /// Checks the values that parse on their own but may still be out of range, or conflict.
    /// Errors name each setting as `origins` says it was given.
    pub(crate) fn validate(&self, origins: &Origins) -> Result<(), Error> {
        let fail = |field: Field, value: String, expected: String| {
            Err(Error::config(origins.label(field), value, expected))
        };
        if self.gossip_interval < Duration::from_millis(10)
            || self.gossip_interval > Duration::from_secs(60)
        {
            return fail(
                Field::GossipInterval,
                format!("{:?}", self.gossip_interval),
                "a duration from 10ms to 60s".into(),
            );
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold >= 1.0) {
            return fail(
                Field::PhiThreshold,
                self.phi_threshold.to_string(),
                "a number of at least 1, e.g. 8".into(),
            );
        }
        if let Some(fanout) = self.gossip_fanout
            && !(1..=MAX_GOSSIP_FANOUT).contains(&fanout)
        {
            return fail(
                Field::GossipFanout,
                fanout.to_string(),
                format!("`auto` or a number from 1 to {MAX_GOSSIP_FANOUT}"),
            );
        }
        if self.dns_min_interval.is_zero() {
            return fail(
                Field::DnsMinInterval,
                "0".into(),
                "a positive duration, e.g. 1s".into(),
            );
        }
        if self.dns_min_interval > self.dns_max_interval {
            return fail(
                Field::DnsMinInterval,
                format!("{:?}", self.dns_min_interval),
                format!(
                    "at most the {} ({:?})",
                    origins.label(Field::DnsMaxInterval),
                    self.dns_max_interval
                ),
            );
        }
        if let Some(dns) = &self.dns_server
            && dns.port() == 0
        {
            return fail(
                Field::DnsServer,
                dns.to_string(),
                "a DNS server address with a port from 1 to 65535 (a bare IP means port 53)".into(),
            );
        }
        if self.gossip_max_packet_age < Duration::from_millis(100)
            || self.gossip_max_packet_age > Duration::from_secs(3600)
        {
            return fail(
                Field::GossipMaxPacketAge,
                format!("{:?}", self.gossip_max_packet_age),
                "a duration from 100ms to 1h, e.g. 10s".into(),
            );
        }
        match (self.insecure, self.secrets.is_empty()) {
            (false, true) => Err(Error::MissingSecret),
            (true, false) => Err(Error::config(
                format!(
                    "{} and {}",
                    origins.label(Field::Insecure),
                    origins.label(Field::Secrets)
                ),
                "both set",
                "either a secret or insecure mode, not both",
            )),
            _ => Ok(()),
        }
    }
}
