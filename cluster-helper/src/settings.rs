//! Where each setting comes from, and the one precedence rule between the sources.
//!
//! A node's settings come from three layers: the base [`Config`] (`NodeBuilder::config`), the
//! environment (`NodeBuilder::from_env` / `from_vars`) and code (the other builder methods).
//! Each layer except the base is a [`Settings`]: only what that source gave. At start they are
//! merged, whatever the order of the builder calls:
//!
//! - a single value (listen address, cluster name, keyring, ...) comes from code if code set it,
//!   else from the environment if it has it, else from the base;
//! - roles, services and seeds are merged: the union of all three layers (seeds in the order
//!   code, environment, base, duplicates dropped).
//!
//! Merging also says which source each value came from (so that errors name the environment
//! variable only when the value came from it) and notes what code overrode, for the log.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::address::Address;
use crate::config::{Config, DEFAULT_PORT, RpcListen};
use crate::id::{Role, ServiceName};
use crate::secret::Secret;
use crate::seed::Seed;

/// One setting of [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Cluster,
    NodeName,
    Roles,
    Services,
    Seeds,
    Listen,
    Advertise,
    RpcListen,
    RpcAdvertise,
    Secrets,
    Insecure,
    GossipMaxPacketAge,
    DnsServer,
    GossipInterval,
    PhiThreshold,
    GossipFanout,
    LeaveGrace,
    JoinTimeout,
    DnsMinInterval,
    DnsMaxInterval,
    DeadNodeGrace,
}

impl Field {
    const COUNT: usize = Field::DeadNodeGrace as usize + 1;

    /// The setting's name in messages when it was not set from the environment.
    pub(crate) fn human(self) -> &'static str {
        match self {
            Field::Cluster => "cluster name",
            Field::NodeName => "node name",
            Field::Roles => "roles",
            Field::Services => "services",
            Field::Seeds => "seeds",
            Field::Listen => "listen address",
            Field::Advertise => "advertise address",
            Field::RpcListen => "RPC listen address",
            Field::RpcAdvertise => "RPC advertise address",
            Field::Secrets => "secret",
            Field::Insecure => "insecure mode",
            Field::GossipMaxPacketAge => "gossip max packet age",
            Field::DnsServer => "DNS server",
            Field::GossipInterval => "gossip interval",
            Field::PhiThreshold => "phi threshold",
            Field::GossipFanout => "gossip fanout",
            Field::LeaveGrace => "leave grace",
            Field::JoinTimeout => "join timeout",
            Field::DnsMinInterval => "DNS min interval",
            Field::DnsMaxInterval => "DNS max interval",
            Field::DeadNodeGrace => "dead node grace",
        }
    }

    /// The builder method that sets it, as the override log names it.
    fn method(self) -> &'static str {
        match self {
            Field::Cluster => "cluster",
            Field::NodeName => "name",
            Field::Roles => "roles",
            Field::Services => "services",
            Field::Seeds => "seeds",
            Field::Listen => "listen",
            Field::Advertise => "advertise",
            Field::RpcListen => "rpc_listen",
            Field::RpcAdvertise => "rpc_advertise",
            Field::Secrets => "secrets",
            Field::Insecure => "insecure",
            Field::GossipMaxPacketAge => "gossip_max_packet_age",
            Field::DnsServer => "dns_server",
            Field::GossipInterval => "gossip_interval",
            Field::PhiThreshold => "phi_threshold",
            Field::GossipFanout => "gossip_fanout",
            Field::LeaveGrace => "leave_grace",
            Field::JoinTimeout => "join_timeout",
            Field::DnsMinInterval => "dns_interval min",
            Field::DnsMaxInterval => "dns_interval max",
            Field::DeadNodeGrace => "dead_node_grace",
        }
    }
}

/// Where a value of the merged configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The base [`Config`] (or its default).
    Base,
    /// This environment variable.
    Env(&'static str),
    /// A builder method.
    Code,
}

/// The source of every setting of a merged [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origins([Source; Field::COUNT]);

impl Default for Origins {
    fn default() -> Self {
        Origins([Source::Base; Field::COUNT])
    }
}

impl Origins {
    /// Where `field` came from.
    pub(crate) fn source(&self, field: Field) -> Source {
        self.0[field as usize]
    }

    fn set(&mut self, field: Field, source: Source) {
        self.0[field as usize] = source;
    }

    /// How an error names `field`: the environment variable if the value came from one,
    /// otherwise the setting's name.
    pub(crate) fn label(&self, field: Field) -> String {
        match self.source(field) {
            Source::Env(var) => var.to_owned(),
            Source::Base | Source::Code => field.human().to_owned(),
        }
    }
}

/// What one source (the environment, or code) set; `None` where it said nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub cluster: Option<String>,
    pub node_name: Option<String>,
    pub roles: Option<BTreeSet<Role>>,
    pub services: BTreeSet<ServiceName>,
    pub seeds: Option<Vec<Seed>>,
    pub listen: Option<Address>,
    pub advertise: Option<Address>,
    pub rpc_listen: Option<RpcListen>,
    pub rpc_advertise: Option<Address>,
    /// The keyring and the variable it came from (`CLUSTER_SECRET` or `CLUSTER_SECRET_FILE`;
    /// empty when set in code).
    pub secrets: Option<(Vec<Secret>, &'static str)>,
    pub insecure: Option<bool>,
    pub gossip_max_packet_age: Option<Duration>,
    pub dns_server: Option<Address>,
    pub gossip_interval: Option<Duration>,
    pub phi_threshold: Option<f64>,
    /// `Some(None)`: adaptive, set explicitly (`CLUSTER_GOSSIP_FANOUT=auto`).
    pub gossip_fanout: Option<Option<u32>>,
    pub leave_grace: Option<Duration>,
    pub join_timeout: Option<Duration>,
    pub dns_min_interval: Option<Duration>,
    pub dns_max_interval: Option<Duration>,
}

impl Settings {
    /// `later` on top of `self`: what `later` set replaces what `self` set.
    pub(crate) fn overlay(&mut self, later: Settings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            cluster,
            node_name,
            roles,
            seeds,
            listen,
            advertise,
            rpc_listen,
            rpc_advertise,
            secrets,
            insecure,
            gossip_max_packet_age,
            dns_server,
            gossip_interval,
            phi_threshold,
            gossip_fanout,
            leave_grace,
            join_timeout,
            dns_min_interval,
            dns_max_interval
        );
        self.services.extend(later.services);
    }
}

/// The configuration a node starts with, where each value came from, and what code overrode.
#[derive(Debug)]
pub(crate) struct Merged {
    pub config: Config,
    pub origins: Origins,
    /// One line per environment value that code overrode, and per list merged from both.
    pub notes: Vec<String>,
}

/// How a value is shown in the override log (secrets never).
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for String {
    fn shown(&self) -> String {
        self.clone()
    }
}

impl Shown for Address {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for RpcListen {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for Duration {
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

/// A gossip fanout: `None` is `auto`.
impl Shown for Option<u32> {
    fn shown(&self) -> String {
        self.map_or_else(|| "auto".to_owned(), |n| n.to_string())
    }
}

impl Shown for f64 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for Vec<Secret> {
    fn shown(&self) -> String {
        "<redacted>".to_owned()
    }
}

impl Shown for bool {
    fn shown(&self) -> String {
        self.to_string()
    }
}

/// `items` as a comma list, for the log.
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Merger {
    origins: Origins,
    notes: Vec<String>,
}

impl Merger {
    /// The value for `field`: code's, else the environment's (from variable `var`), else
    /// `None` (keep the base). Notes an environment value that code overrode.
    fn pick<T: Clone + Shown>(
        &mut self,
        field: Field,
        var: &'static str,
        env: Option<&T>,
        code: Option<&T>,
    ) -> Option<T> {
        match (code, env) {
            (Some(code), env) => {
                if let Some(env) = env {
                    self.notes.push(format!(
                        "{var}={} ignored: the program sets {} = {}",
                        env.shown(),
                        field.method(),
                        code.shown()
                    ));
                }
                self.origins.set(field, Source::Code);
                Some(code.clone())
            }
            (None, Some(env)) => {
                self.origins.set(field, Source::Env(var));
                Some(env.clone())
            }
            (None, None) => None,
        }
    }

    /// Notes a list that both code and the environment gave, and the result.
    fn merged_list(&mut self, field: Field, var: &str, code: String, env: String, all: String) {
        self.notes.push(format!(
            "{} merged from the program ({code}) and {var} ({env}): {all}",
            field.human()
        ));
    }
}

/// Merges the three layers by the precedence rule (see the module docs).
pub(crate) fn merge(base: &Config, env: &Settings, code: &Settings) -> Merged {
    let mut m = Merger {
        origins: Origins::default(),
        notes: Vec::new(),
    };
    let mut config = base.clone();

    if let Some(v) = m.pick(
        Field::Cluster,
        "CLUSTER_NAME",
        env.cluster.as_ref(),
        code.cluster.as_ref(),
    ) {
        config.cluster = v;
    }
    if let Some(v) = m.pick(
        Field::NodeName,
        "CLUSTER_NODE_NAME",
        env.node_name.as_ref(),
        code.node_name.as_ref(),
    ) {
        config.node_name = Some(v);
    }

    // Lists: the union of every source.
    if let (Some(c), Some(e)) = (&code.roles, &env.roles) {
        let all: BTreeSet<&Role> = c.iter().chain(e).chain(&base.roles).collect();
        m.merged_list(Field::Roles, "CLUSTER_ROLES", list(c), list(e), list(all));
    }
    for (roles, source) in [
        (&env.roles, Source::Env("CLUSTER_ROLES")),
        (&code.roles, Source::Code),
    ] {
        if let Some(roles) = roles {
            config.roles.extend(roles.iter().cloned());
            m.origins.set(Field::Roles, source);
        }
    }
    if !code.services.is_empty() {
        config.services.extend(code.services.iter().cloned());
        m.origins.set(Field::Services, Source::Code);
    }
    if code.seeds.is_some() || env.seeds.is_some() {
        let mut seeds: Vec<Seed> = Vec::new();
        let from_code = code.seeds.iter().flatten();
        let from_env = env.seeds.iter().flatten();
        for seed in from_code.chain(from_env).chain(&base.seeds) {
            if !seeds.contains(seed) {
                seeds.push(seed.clone());
            }
        }
        if let (Some(c), Some(e)) = (&code.seeds, &env.seeds) {
            m.merged_list(
                Field::Seeds,
                "CLUSTER_SEEDS",
                list(c),
                list(e),
                list(&seeds),
            );
        }
        config.seeds = seeds;
        let source = match code.seeds {
            Some(_) => Source::Code,
            None => Source::Env("CLUSTER_SEEDS"),
        };
        m.origins.set(Field::Seeds, source);
    }

    if let Some(v) = m.pick(
        Field::Listen,
        "CLUSTER_LISTEN",
        env.listen.as_ref(),
        code.listen.as_ref(),
    ) {
        config.listen = v;
    }
    if let Some(v) = m.pick(
        Field::Advertise,
        "CLUSTER_ADVERTISE",
        env.advertise.as_ref(),
        code.advertise.as_ref(),
    ) {
        config.advertise = Some(v);
    }
    if let Some(v) = m.pick(
        Field::RpcListen,
        "CLUSTER_RPC_LISTEN",
        env.rpc_listen.as_ref(),
        code.rpc_listen.as_ref(),
    ) {
        config.rpc_listen = v;
    }
    if let Some(v) = m.pick(
        Field::RpcAdvertise,
        "CLUSTER_RPC_ADVERTISE",
        env.rpc_advertise.as_ref(),
        code.rpc_advertise.as_ref(),
    ) {
        config.rpc_advertise = Some(v);
    }
    let secret_var = env
        .secrets
        .as_ref()
        .map_or("CLUSTER_SECRET", |(_, var)| *var);
    if let Some(v) = m.pick(
        Field::Secrets,
        secret_var,
        env.secrets.as_ref().map(|(s, _)| s),
        code.secrets.as_ref().map(|(s, _)| s),
    ) {
        config.secrets = v;
    }
    if let Some(v) = m.pick(
        Field::Insecure,
        "CLUSTER_INSECURE",
        env.insecure.as_ref(),
        code.insecure.as_ref(),
    ) {
        config.insecure = v;
    }
    if let Some(v) = m.pick(
        Field::GossipMaxPacketAge,
        "CLUSTER_GOSSIP_MAX_PACKET_AGE_MS",
        env.gossip_max_packet_age.as_ref(),
        code.gossip_max_packet_age.as_ref(),
    ) {
        config.gossip_max_packet_age = v;
    }
    // Insecure mode listens on loopback unless told otherwise (by code, the environment, or
    // a base `Config` with another listen address than the default).
    if config.insecure
        && m.origins.source(Field::Listen) == Source::Base
        && config.listen == Config::default().listen
    {
        config.listen = Address::Ip(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)));
    }
    if let Some(v) = m.pick(
        Field::DnsServer,
        "CLUSTER_DNS_SERVER",
        env.dns_server.as_ref(),
        code.dns_server.as_ref(),
    ) {
        config.dns_server = Some(v);
    }
    if let Some(v) = m.pick(
        Field::GossipInterval,
        "CLUSTER_GOSSIP_INTERVAL",
        env.gossip_interval.as_ref(),
        code.gossip_interval.as_ref(),
    ) {
        config.gossip_interval = v;
    }
    if let Some(v) = m.pick(
        Field::LeaveGrace,
        "CLUSTER_LEAVE_GRACE",
        env.leave_grace.as_ref(),
        code.leave_grace.as_ref(),
    ) {
        config.leave_grace = v;
    }
    if let Some(v) = m.pick(
        Field::JoinTimeout,
        "CLUSTER_JOIN_TIMEOUT",
        env.join_timeout.as_ref(),
        code.join_timeout.as_ref(),
    ) {
        config.join_timeout = v;
    }
    if let Some(v) = m.pick(
        Field::DnsMinInterval,
        "CLUSTER_DNS_MIN_INTERVAL",
        env.dns_min_interval.as_ref(),
        code.dns_min_interval.as_ref(),
    ) {
        config.dns_min_interval = v;
    }
    if let Some(v) = m.pick(
        Field::DnsMaxInterval,
        "CLUSTER_DNS_MAX_INTERVAL",
        env.dns_max_interval.as_ref(),
        code.dns_max_interval.as_ref(),
    ) {
        config.dns_max_interval = v;
    }
    if let Some(v) = m.pick(
        Field::PhiThreshold,
        "CLUSTER_PHI_THRESHOLD",
        env.phi_threshold.as_ref(),
        code.phi_threshold.as_ref(),
    ) {
        config.phi_threshold = v;
    }
    if let Some(v) = m.pick(
        Field::GossipFanout,
        "CLUSTER_GOSSIP_FANOUT",
        env.gossip_fanout.as_ref(),
        code.gossip_fanout.as_ref(),
    ) {
        config.gossip_fanout = v;
    }

    Merged {
        config,
        origins: m.origins,
        notes: m.notes,
    }
}
