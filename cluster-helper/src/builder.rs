//! [`NodeBuilder`]: every setting of a node, from code or the environment, checked before
//! anything is bound.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::address::{Address, Resolved};
use crate::config::{Config, RpcListen};
use crate::env::settings_from_env;
use crate::error::{Error, Result};
use crate::id::{Role, ServiceName, check_node_name, parse_cluster_name};
use crate::node::Node;
use crate::secret::{Secret, parse_secret};
use crate::seed::Seed;
use crate::settings::{Field, Merged, Settings, Source, merge};
use crate::transport::Network;

/// Builds and starts a [`Node`]. Every setting has a default; see [`Config`] for each one and the
/// environment variable that sets it.
///
/// # Code, environment and `Config`: one precedence rule
///
/// A value set by a builder method wins over the same setting read by
/// [`from_env`](NodeBuilder::from_env) / [`from_vars`](NodeBuilder::from_vars), **whatever the
/// order of the calls**; both win over the [`Config`] given to [`config`](NodeBuilder::config),
/// which is the base the others apply to. Roles, services and seeds are merged instead of
/// overridden: the node gets the roles of the code and of `CLUSTER_ROLES` (and of the base),
/// the seeds of the code followed by those of `CLUSTER_SEEDS` (duplicates dropped). At
/// [`start`](NodeBuilder::start) the node logs (at `info`) each environment value that the
/// program overrode, e.g. `CLUSTER_LISTEN=0.0.0.0:7946 ignored: the program sets listen =
/// 127.0.0.1:0`, and each list merged from both.
///
/// # Errors
///
/// Setters never block and never fail on the spot: they check their value, and the first
/// invalid one is returned by [`start`](NodeBuilder::start), so a chain of setters needs only
/// one `?`. A variable read by [`from_env`](NodeBuilder::from_env) that does not parse is an
/// error at once, naming the variable. Host names in addresses are resolved by `start`,
/// without blocking.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cluster_helper::Error> {
/// let node = cluster_helper::Node::builder()
///     .cluster("docs")
///     .name("billing-1")
///     .roles(["billing"])
///     .listen("127.0.0.1:0")
///     // Every node of the cluster has the same secret, e.g. made by `easy-rpc keygen` and
///     // read from CLUSTER_SECRET by `.from_env()?`.
///     .secret_key(cluster_helper::Secret::generate())
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
    /// The base, from [`NodeBuilder::config`].
    base: Config,
    /// What the environment set, from [`NodeBuilder::from_env`].
    env: Settings,
    /// What the builder's methods set.
    code: Settings,
    /// The RPC listener when no source sets one (see [`NodeBuilder::default_rpc_listen`]).
    default_rpc_listen: Option<RpcListen>,
    /// The first invalid value given to a setter.
    error: Option<Error>,
    /// The network gossip runs over: UDP, or an in-process one for benchmarks and tests.
    network: Network,
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

    /// Reads the `CLUSTER_*` environment variables (see [`Config`] and [`ENV_VARS`]).
    ///
    /// They override the base [`Config`]; values set by the builder's methods override them,
    /// whether those methods are called before or after this one; roles and seeds are merged
    /// (see [`NodeBuilder`]). Calling it again reads the variables again, the later values
    /// replacing the earlier ones. Nothing is looked up here: host names are resolved by
    /// [`start`](NodeBuilder::start).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first variable that does not parse and what was
    /// expected; [`Error::SecretFile`] if `CLUSTER_SECRET_FILE` cannot be read.
    ///
    /// [`ENV_VARS`]: crate::ENV_VARS
    pub fn from_env(self) -> Result<Self> {
        self.from_vars(cluster_vars(std::env::vars_os())?)
    }

    /// Like [`from_env`](NodeBuilder::from_env), from the given variables instead of the
    /// process environment.
    ///
    /// ```
    /// use cluster_helper::Node;
    ///
    /// // The program's roles and CLUSTER_ROLES are merged; its listen address wins.
    /// let builder = Node::builder()
    ///     .listen("127.0.0.1:0")
    ///     .roles(["billing"])
    ///     .from_vars([("CLUSTER_ROLES", "audit"), ("CLUSTER_LISTEN", "0.0.0.0:7946")])?;
    /// # Ok::<(), cluster_helper::Error>(())
    /// ```
    pub fn from_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let read = settings_from_env(|k| vars.get(k).cloned())?;
        self.env.overlay(read);
        Ok(self)
    }

    /// Sets the base configuration, which the environment and the other builder methods
    /// override (whatever the order of the calls); replaces a base given before.
    pub fn config(mut self, config: Config) -> Self {
        self.base = config;
        self
    }

    /// The cluster's name.
    pub fn cluster(mut self, name: impl AsRef<str>) -> Self {
        match parse_cluster_name(Field::Cluster.human(), name.as_ref()) {
            Ok(n) => {
                self.code.cluster = Some(n);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The node's name (default: derived from the hostname, see [`Config::node_name`]).
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        match check_node_name(name.as_ref()) {
            Ok(()) => {
                self.code.node_name = Some(name.as_ref().to_owned());
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The roles the node starts with (replacing those of an earlier call; merged with
    /// `CLUSTER_ROLES`).
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
        self.code.roles = Some(set);
        self
    }

    /// Adds RPC services the node advertises from the start (used by the RPC layer).
    pub fn services<S: AsRef<str>>(mut self, services: impl IntoIterator<Item = S>) -> Self {
        for s in services {
            match ServiceName::new(s) {
                Ok(s) => {
                    self.code.services.insert(s);
                }
                Err(e) => return self.fail(e),
            }
        }
        self
    }

    /// Where peers might be: `host:port`, `dns:name:port` or `srv:_service._proto.name`
    /// (replacing those of an earlier call; `CLUSTER_SEEDS` are added after them).
    pub fn seeds<S: AsRef<str>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        let mut list = Vec::new();
        for s in seeds {
            match s.as_ref().parse::<Seed>() {
                Ok(seed) => list.push(seed),
                Err(e) => return self.fail(e),
            }
        }
        self.code.seeds = Some(list);
        self
    }

    /// The gossip (UDP) listen address: `ip:port` (port 0 picks a free port) or `host:port`,
    /// e.g. `"0.0.0.0:7946"`, a `SocketAddr`, or `"localhost:0"` (resolved by
    /// [`start`](NodeBuilder::start)).
    pub fn listen(self, addr: impl ToString) -> Self {
        self.address(Field::Listen, addr.to_string(), None, |c| &mut c.listen)
    }

    /// The gossip address peers use to reach this node (e.g. the pod IP): `ip:port`,
    /// `host:port` (resolved by [`start`](NodeBuilder::start)) or a bare IP (the gossip port
    /// is used, as with port 0).
    pub fn advertise(self, addr: impl ToString) -> Self {
        self.address(Field::Advertise, addr.to_string(), Some(0), |c| {
            &mut c.advertise
        })
    }

    /// Where the node accepts RPC connections. Without it (and without `CLUSTER_RPC_LISTEN`
    /// or a base [`Config`] that sets it) a node binds no TCP port, unless the layer above
    /// changed that default ([`default_rpc_listen`](NodeBuilder::default_rpc_listen)). A
    /// program that serves RPC itself asks for a listener here and takes it with
    /// [`Node::take_rpc_listener`].
    pub fn rpc_listen(mut self, rpc: RpcListen) -> Self {
        self.code.rpc_listen = Some(rpc);
        self
    }

    /// Runs the node's gossip over `network`, an in-process datagram network, instead of a UDP
    /// socket: for benchmarks and tests (many nodes in one process); **not a production
    /// transport**. Packets are sealed and checked as over UDP. The listen address is bound in
    /// the network (port 0: a free port of the network); an RPC listener, if any, is still a
    /// TCP socket of the host. See [`MemoryNetwork`](crate::MemoryNetwork).
    #[cfg(feature = "memory-transport")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory-transport")))]
    pub fn memory_network(mut self, network: &crate::MemoryNetwork) -> Self {
        self.network = Network::Memory(network.clone());
        self
    }

    /// The RPC listener the node gets when neither code, the environment nor the base
    /// [`Config`] set one (a base whose `rpc_listen` is the default,
    /// [`RpcListen::Disabled`], counts as unset). For an RPC layer built on this crate: it
    /// makes [`RpcListen::SamePort`] the default of its nodes (easy-rpc does), while a
    /// cluster-helper node alone binds no TCP port that nothing would accept on.
    ///
    /// ```
    /// use cluster_helper::{NodeBuilder, RpcListen};
    /// let layer = || NodeBuilder::new().default_rpc_listen(RpcListen::SamePort);
    /// assert!(layer().has_rpc_listener());
    /// assert!(!layer().rpc_listen(RpcListen::Disabled).has_rpc_listener());
    /// let off = layer().from_vars([("CLUSTER_RPC_LISTEN", "off")]).unwrap();
    /// assert!(!off.has_rpc_listener());
    /// ```
    pub fn default_rpc_listen(mut self, rpc: RpcListen) -> Self {
        self.default_rpc_listen = Some(rpc);
        self
    }

    /// The cluster secret, as `easy-rpc keygen` prints it: 32 random bytes in base64 or hex
    /// (see [`Secret::parse`]). Every gossip packet and RPC handshake is authenticated with
    /// keys derived from it; it is never printed. Replaces the keyring given before (by this
    /// method, [`secret_key`](NodeBuilder::secret_key) or [`secrets`](NodeBuilder::secrets)).
    /// A text that is not a secret is an [`Error::InvalidSecret`] returned by
    /// [`start`](NodeBuilder::start).
    pub fn secret(self, secret: impl AsRef<str>) -> Self {
        match parse_secret("secret (NodeBuilder::secret)", secret.as_ref()) {
            Ok(secret) => self.secret_key(secret),
            Err(e) => self.fail(e),
        }
    }

    /// The cluster secret, already parsed or generated: like [`secret`](NodeBuilder::secret).
    pub fn secret_key(self, secret: Secret) -> Self {
        self.secrets([secret])
    }

    /// The keyring: several secrets, in order. The first one seals what the node sends and
    /// proves it in handshakes; every one is accepted on receipt. To rotate a key without
    /// downtime, add the new key (second) on every node, then make it first everywhere, then
    /// remove the old one (see [`Node::set_secrets`]). An empty list is an error at
    /// [`start`](NodeBuilder::start).
    pub fn secrets(mut self, secrets: impl IntoIterator<Item = Secret>) -> Self {
        let secrets: Vec<Secret> = secrets.into_iter().collect();
        if secrets.is_empty() {
            return self.fail(Error::config(
                "secrets (NodeBuilder::secrets)",
                "an empty list",
                "at least one secret",
            ));
        }
        self.code.secrets = Some((secrets, ""));
        self
    }

    /// Runs without a secret: gossip and RPC keys derive from a fixed, public value and the
    /// cluster name, so anyone who can reach the node can join the cluster, read its gossip
    /// and call its services. For local experiments only (`CLUSTER_INSECURE=1` does the
    /// same): the node logs a warning at start, and listens on `127.0.0.1:7946` unless a
    /// listen address is set. Combined with a secret, [`start`](NodeBuilder::start) fails.
    pub fn insecure(mut self) -> Self {
        self.code.insecure = Some(true);
        self
    }

    /// How old (or how far ahead, by the sender's clock) a gossip packet may be and still be
    /// accepted: the clock-skew allowance between nodes (default 10 s, from 100 ms to 1 h;
    /// see [`Config::gossip_max_packet_age`]).
    pub fn gossip_max_packet_age(mut self, age: Duration) -> Self {
        self.code.gossip_max_packet_age = Some(age);
        self
    }

    /// The DNS server for DNS seeds, instead of the system's: `ip:port`, a bare IP (port 53)
    /// or `host:port` (resolved by [`start`](NodeBuilder::start) with the system's resolver).
    pub fn dns_server(self, addr: impl ToString) -> Self {
        self.address(Field::DnsServer, addr.to_string(), Some(53), |c| {
            &mut c.dns_server
        })
    }

    /// Parses an address setting (`bare_ip_port`: the port a bare IP means, if one may be
    /// given) into its slot of the code layer, or keeps the error for `start`.
    fn address(
        mut self,
        field: Field,
        text: String,
        bare_ip_port: Option<u16>,
        slot: fn(&mut Settings) -> &mut Option<Address>,
    ) -> Self {
        match Address::parse(field.human(), &text, bare_ip_port) {
            Ok(a) => {
                *slot(&mut self.code) = Some(a);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// How often the node gossips (from 10 ms to 60 s).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.code.gossip_interval = Some(interval);
        self
    }

    /// The phi-accrual threshold of the failure detector (at least 1).
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.code.phi_threshold = Some(phi);
        self
    }

    /// How many live peers each gossip round sends its digest to (1 to 16), instead of
    /// adapting it to the cluster's size ([`Config::gossip_fanout`]).
    pub fn gossip_fanout(mut self, fanout: u32) -> Self {
        self.code.gossip_fanout = Some(Some(fanout));
        self
    }

    /// How long a leaving node keeps gossiping after announcing it leaves.
    pub fn leave_grace(mut self, grace: Duration) -> Self {
        self.code.leave_grace = Some(grace);
        self
    }

    /// How long to wait for a peer before declaring this node ready on its own
    /// (`Duration::MAX`: never).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.code.join_timeout = Some(timeout);
        self
    }

    /// Bounds on DNS re-resolution (the records' TTL decides within them; `min` more than 0
    /// and at most `max`).
    pub fn dns_interval(mut self, min: Duration, max: Duration) -> Self {
        self.code.dns_min_interval = Some(min);
        self.code.dns_max_interval = Some(max);
        self
    }

    /// Whether the node this builder starts will accept RPC connections: `false` when the
    /// settings (by the precedence rule, then
    /// [`default_rpc_listen`](NodeBuilder::default_rpc_listen)) say [`RpcListen::Disabled`]
    /// (`CLUSTER_RPC_LISTEN=off`, or nothing set on a cluster-helper node). An RPC layer
    /// checks this before starting a node that must serve.
    ///
    /// ```
    /// use cluster_helper::{NodeBuilder, RpcListen};
    /// assert!(!NodeBuilder::new().has_rpc_listener());
    /// assert!(NodeBuilder::new().rpc_listen(RpcListen::SamePort).has_rpc_listener());
    /// let b = NodeBuilder::new().from_vars([("CLUSTER_RPC_LISTEN", "same")]).unwrap();
    /// assert!(b.has_rpc_listener());
    /// ```
    pub fn has_rpc_listener(&self) -> bool {
        !matches!(self.merged().config.rpc_listen, RpcListen::Disabled)
    }

    /// The configuration the node would start with, by the precedence rule.
    fn merged(&self) -> Merged {
        let mut m = merge(&self.base, &self.env, &self.code);
        if let Some(rpc) = &self.default_rpc_listen
            && m.origins.source(Field::RpcListen) == Source::Base
            && m.config.rpc_listen == RpcListen::default()
        {
            m.config.rpc_listen = rpc.clone();
        }
        m
    }

    /// Merges the settings (see [`NodeBuilder`]), resolves host names in addresses (without
    /// blocking), binds the sockets, starts gossip and discovery, and returns the running node.
    /// The node is [ready](Node::ready) once it has seen the cluster.
    ///
    /// # Errors
    ///
    /// The first invalid value given to a setter; [`Error::InvalidConfig`] for a value out of
    /// range (named as it was given: the environment variable, or the setting);
    /// [`Error::Resolve`] for a host name that does not resolve; [`Error::Bind`],
    /// [`Error::Resolver`] or [`Error::Membership`] if the node cannot start.
    pub async fn start(self) -> Result<Node> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Merged {
            config,
            origins,
            notes,
        } = self.merged();
        for note in &notes {
            tracing::info!("{note}");
        }
        config.validate(&origins)?;
        let addrs = Resolved::resolve(&config, &origins).await?;
        Node::start(config, addrs, self.network).await
    }
}

/// The `CLUSTER_*` variables of `vars`, as text. Other variables are skipped whatever they
/// hold (`std::env::vars` would panic on one that is not UTF-8); a `CLUSTER_*` value that is
/// not UTF-8 is an error naming the variable.
fn cluster_vars(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in vars {
        let Some(key) = key.to_str().filter(|k| k.starts_with("CLUSTER_")) else {
            continue;
        };
        let value = value.into_string().map_err(|v| {
            let shown = if key == "CLUSTER_SECRET" {
                "<redacted>".into()
            } else {
                v.to_string_lossy()
            };
            Error::config(key, shown, "UTF-8 text (the value has bytes that are not)")
        })?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::settings::Origins;

    fn merged(b: &NodeBuilder) -> (Config, Origins, Vec<String>) {
        let m = b.merged();
        (m.config, m.origins, m.notes)
    }

    fn roles(c: &Config) -> Vec<&str> {
        c.roles.iter().map(Role::as_str).collect()
    }

    fn seeds(c: &Config) -> Vec<String> {
        c.seeds.iter().map(Seed::to_string).collect()
    }

    /// Secrets made with `openssl rand -base64 32`, for these tests only.
    const CODE_SECRET: &str = "0ZQkIkBmjy/L70cLhhI1PctBR36j4GBmY2f4t5Bq99c=";
    const ENV_SECRET: &str = "kJMlVGokI8OS0NxCZheIGH+/WDqMdYVLdu5SqHQtB1Y=";

    fn secret() -> Secret {
        Secret::parse(CODE_SECRET).unwrap()
    }

    const OVERRIDDEN: &str =
        "CLUSTER_LISTEN=0.0.0.0:7946 ignored: the program sets listen = 127.0.0.1:0";

    #[test]
    fn code_before_env_wins() {
        let b = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .cluster("from-code")
            .from_vars([
                ("CLUSTER_LISTEN", "0.0.0.0:7946"),
                ("CLUSTER_NAME", "from-env"),
                ("CLUSTER_NODE_NAME", "env-name"),
            ])
            .unwrap();
        let (c, origins, notes) = merged(&b);
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.cluster, "from-code");
        // What code did not set comes from the environment.
        assert_eq!(c.node_name.as_deref(), Some("env-name"));
        assert_eq!(origins.source(Field::Listen), Source::Code);
        assert_eq!(
            origins.source(Field::NodeName),
            Source::Env("CLUSTER_NODE_NAME")
        );
        assert!(notes.iter().any(|n| n == OVERRIDDEN), "{notes:?}");
        assert!(
            notes.iter().any(|n| n
                == "CLUSTER_NAME=from-env ignored: the program sets cluster = from-code"),
            "{notes:?}"
        );
    }

    #[test]
    fn env_before_code_still_loses() {
        let b = NodeBuilder::new()
            .from_vars([
                ("CLUSTER_LISTEN", "0.0.0.0:7946"),
                ("CLUSTER_JOIN_TIMEOUT", "9s"),
            ])
            .unwrap()
            .listen("127.0.0.1:0")
            .join_timeout(Duration::from_secs(1));
        let (c, _, notes) = merged(&b);
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.join_timeout, Duration::from_secs(1));
        assert!(notes.iter().any(|n| n == OVERRIDDEN), "{notes:?}");
        assert!(
            notes.iter().any(|n| n
                == "CLUSTER_JOIN_TIMEOUT=9s ignored: the program sets join_timeout = 1s"),
            "{notes:?}"
        );
    }

    #[test]
    fn roles_merge_in_either_order() {
        let env = [("CLUSTER_ROLES", "audit,billing")];
        let before = NodeBuilder::new()
            .roles(["billing", "gateway"])
            .from_vars(env)
            .unwrap();
        let after = NodeBuilder::new()
            .from_vars(env)
            .unwrap()
            .roles(["billing", "gateway"]);
        for b in [before, after] {
            let (c, _, notes) = merged(&b);
            assert_eq!(roles(&c), ["audit", "billing", "gateway"]);
            assert!(
                notes.iter().any(|n| n
                    == "roles merged from the program (billing,gateway) and CLUSTER_ROLES \
                        (audit,billing): audit,billing,gateway"),
                "{notes:?}"
            );
        }
        // Only one source: no note.
        let (c, _, notes) = merged(&NodeBuilder::new().from_vars(env).unwrap());
        assert_eq!(roles(&c), ["audit", "billing"]);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn seeds_merge_code_first_without_duplicates() {
        let b = NodeBuilder::new()
            .from_vars([("CLUSTER_SEEDS", "10.0.0.2:7946, 10.0.0.1:7946")])
            .unwrap()
            .seeds(["10.0.0.1:7946", "dns:billing.test:7946"]);
        let (c, _, notes) = merged(&b);
        assert_eq!(
            seeds(&c),
            ["10.0.0.1:7946", "dns:billing.test:7946", "10.0.0.2:7946"]
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("seeds merged from the program")),
            "{notes:?}"
        );
    }

    #[test]
    fn config_is_the_base_whatever_the_order() {
        let base = Config {
            cluster: "base".into(),
            join_timeout: Duration::from_secs(7),
            leave_grace: Duration::from_secs(3),
            roles: [Role::new("base-role").unwrap()].into(),
            ..Config::default()
        };
        let b = NodeBuilder::new()
            .cluster("code")
            .from_vars([
                ("CLUSTER_JOIN_TIMEOUT", "2s"),
                ("CLUSTER_ROLES", "env-role"),
            ])
            .unwrap()
            .config(base);
        let (c, origins, _) = merged(&b);
        assert_eq!(c.cluster, "code");
        assert_eq!(c.join_timeout, Duration::from_secs(2));
        assert_eq!(c.leave_grace, Duration::from_secs(3));
        assert_eq!(origins.source(Field::LeaveGrace), Source::Base);
        assert_eq!(roles(&c), ["base-role", "env-role"]);
    }

    #[tokio::test]
    async fn a_bad_env_value_fails_with_the_variable_name() {
        // Does not parse: refused at once.
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_LISTEN", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLUSTER_LISTEN") && e.contains("\"localhost\""),
            "{e}"
        );
        // Parses but out of range: refused by start, still naming the variable.
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_GOSSIP_INTERVAL", "5ms")])
            .unwrap()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLUSTER_GOSSIP_INTERVAL") && e.contains("10ms to 60s"),
            "{e}"
        );
        // The same value set in code is named as a setting.
        let e = NodeBuilder::new()
            .gossip_interval(Duration::from_millis(5))
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gossip interval") && !e.contains("CLUSTER_"),
            "{e}"
        );
        let e = NodeBuilder::new()
            .gossip_fanout(0)
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("gossip fanout") && e.contains("1 to 16"), "{e}");
    }

    /// A `tracing` writer that keeps everything written to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn start_logs_each_overridden_env_value() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        // The current-thread runtime runs the whole start-up on this thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        let node = NodeBuilder::new()
            .from_vars([
                ("CLUSTER_LISTEN", "0.0.0.0:7946"),
                ("CLUSTER_ROLES", "audit"),
                ("CLUSTER_SECRET", ENV_SECRET),
            ])
            .unwrap()
            .cluster("log-test")
            .listen("127.0.0.1:0")
            .roles(["billing"])
            .secret(CODE_SECRET)
            .start()
            .await
            .unwrap();
        node.shutdown().await;
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains(OVERRIDDEN), "{logs}");
        assert!(
            logs.contains(
                "roles merged from the program (billing) and CLUSTER_ROLES (audit): audit,billing"
            ),
            "{logs}"
        );
        assert!(
            logs.contains(
                "CLUSTER_SECRET=<redacted> ignored: the program sets secrets = <redacted>"
            ),
            "{logs}"
        );
        assert!(
            !logs.contains(ENV_SECRET) && !logs.contains(CODE_SECRET),
            "a secret was logged: {logs}"
        );
    }

    #[test]
    fn address_setters_take_anything_printable() {
        let sa: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let port = 9;
        let dns = String::from("10.0.0.53");
        let b = NodeBuilder::new()
            .listen(sa)
            .advertise(format!("10.0.0.1:{port}"))
            .dns_server(&dns);
        assert!(!dns.is_empty());
        let (c, _, _) = merged(&b);
        assert_eq!(c.listen, Address::Ip(sa));
        assert_eq!(
            c.advertise,
            Some(Address::Ip("10.0.0.1:9".parse().unwrap()))
        );
        assert_eq!(
            c.dns_server,
            Some(Address::Ip("10.0.0.53:53".parse().unwrap()))
        );
        let b = NodeBuilder::new().listen(String::from("node-0.test:7946"));
        assert_eq!(
            merged(&b).0.listen,
            Address::Host {
                host: "node-0.test".into(),
                port: 7946
            }
        );
    }

    #[tokio::test]
    async fn malformed_and_unresolvable_addresses_fail_at_start() {
        let e = NodeBuilder::new()
            .listen("nowhere")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listen address") && e.contains("\"nowhere\""),
            "{e}"
        );
        let e = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .advertise("pod:http")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("advertise address") && e.contains("not a number"),
            "{e}"
        );
        // `.invalid` never resolves (RFC 6761).
        let e = NodeBuilder::new()
            .secret_key(secret())
            .listen("nowhere.invalid:0")
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Resolve { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("listen address") && e.contains("nowhere.invalid:0"),
            "{e}"
        );
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_ADVERTISE", "nowhere.invalid:7946")])
            .unwrap()
            .listen("127.0.0.1:0")
            .secret_key(secret())
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("CLUSTER_ADVERTISE"), "{e}");
    }

    #[tokio::test]
    async fn host_names_are_resolved_at_start() {
        let node = NodeBuilder::new()
            .cluster("resolve-test")
            .listen("localhost:0")
            .secret_key(secret())
            .start()
            .await
            .unwrap();
        assert!(node.gossip_addr().ip().is_loopback(), "{node:?}");
        assert_ne!(node.gossip_addr().port(), 0);
        assert_eq!(node.config().listen.to_string(), "localhost:0");
        node.shutdown().await;
    }

    #[tokio::test]
    async fn secrets_are_never_printed() {
        let b = NodeBuilder::new()
            .cluster("secret-test")
            .listen("127.0.0.1:0")
            .secret(CODE_SECRET);
        let shown = format!("{b:?}");
        assert!(
            !shown.contains(CODE_SECRET) && shown.contains("<redacted>"),
            "{shown}"
        );
        let from_env = NodeBuilder::new()
            .from_vars([("CLUSTER_SECRET", ENV_SECRET)])
            .unwrap();
        let shown = format!("{from_env:?}");
        assert!(
            !shown.contains(ENV_SECRET) && shown.contains("<redacted>"),
            "{shown}"
        );

        let config = Config {
            secrets: vec![secret()],
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(shown.contains(r#"secrets: ["<redacted>"]"#), "{shown}");
        assert!(!shown.contains(CODE_SECRET), "{shown}");
        assert!(format!("{:?}", Config::default()).contains("secrets: []"));

        let node = b.start().await.unwrap();
        let shown = format!("{:?} {:?}", node.config(), node);
        assert!(
            !shown.contains(CODE_SECRET) && shown.contains(r#"secrets: ["<redacted>"]"#),
            "{shown}"
        );
        assert_eq!(node.config().secrets, vec![secret()]);
        node.shutdown().await;
    }

    #[tokio::test]
    async fn bad_secrets_and_bad_phi_are_refused() {
        for (text, reason) in [
            ("", "empty"),
            ("hunter2", "neither base64 nor hex"),
            ("AAA=", "2 bytes"),
        ] {
            let e = NodeBuilder::new()
                .listen("127.0.0.1:0")
                .secret(text)
                .start()
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidSecret { .. }), "{e:?}");
            let e = e.to_string();
            assert!(
                e.starts_with("invalid secret (NodeBuilder::secret): ")
                    && e.contains(reason)
                    && e.contains("easy-rpc keygen"),
                "{e}"
            );
        }
        let e = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .secrets([])
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one secret"), "{e}");
        for phi in [f64::NAN, 0.5, f64::INFINITY] {
            let e = NodeBuilder::new()
                .listen("127.0.0.1:0")
                .secret_key(secret())
                .phi_threshold(phi)
                .start()
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("phi threshold"), "{e}");
        }
    }

    #[tokio::test]
    async fn no_secret_no_node() {
        let e = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::MissingSecret), "{e:?}");
        let e = e.to_string();
        for part in [
            "CLUSTER_SECRET",
            "CLUSTER_SECRET_FILE",
            "32 random bytes in base64 or hex",
            "easy-rpc keygen",
            "openssl rand -base64 32",
            "CLUSTER_INSECURE=1",
        ] {
            assert!(e.contains(part), "{part:?} missing from: {e}");
        }
        // A blank variable is no secret either.
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_SECRET", " ")])
            .unwrap()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::MissingSecret), "{e:?}");
    }

    #[test]
    fn insecure_mode_listens_on_loopback_by_default() {
        let (c, _, _) = merged(&NodeBuilder::new().insecure());
        assert!(c.insecure);
        assert_eq!(c.listen.to_string(), "127.0.0.1:7946");
        let b = NodeBuilder::new()
            .from_vars([("CLUSTER_INSECURE", "yes")])
            .unwrap();
        assert_eq!(merged(&b).0.listen.to_string(), "127.0.0.1:7946");
        // A listen address given anywhere wins.
        let b = NodeBuilder::new().insecure().listen("0.0.0.0:9000");
        assert_eq!(merged(&b).0.listen.to_string(), "0.0.0.0:9000");
        let b = NodeBuilder::new()
            .from_vars([
                ("CLUSTER_INSECURE", "1"),
                ("CLUSTER_LISTEN", "10.0.0.1:7946"),
            ])
            .unwrap();
        assert_eq!(merged(&b).0.listen.to_string(), "10.0.0.1:7946");
        let base = Config {
            listen: Address::Ip("0.0.0.0:9001".parse().unwrap()),
            ..Config::default()
        };
        let b = NodeBuilder::new().config(base).insecure();
        assert_eq!(merged(&b).0.listen.to_string(), "0.0.0.0:9001");
        // Not insecure: the usual default.
        let (c, _, _) = merged(&NodeBuilder::new());
        assert!(!c.insecure);
        assert_eq!(c.listen.to_string(), "0.0.0.0:7946");
        let b = NodeBuilder::new()
            .from_vars([("CLUSTER_INSECURE", "false")])
            .unwrap();
        assert_eq!(merged(&b).0.listen.to_string(), "0.0.0.0:7946");
    }

    #[tokio::test]
    async fn insecure_nodes_start_warn_and_gossip_with_each_other() {
        let a = NodeBuilder::new()
            .cluster("insecure-test")
            .insecure()
            .listen("127.0.0.1:0")
            .name("a")
            .roles(["x"])
            .start()
            .await
            .unwrap();
        assert!(a.is_insecure());
        let b = NodeBuilder::new()
            .cluster("insecure-test")
            .from_vars([("CLUSTER_INSECURE", "true")])
            .unwrap()
            .listen("127.0.0.1:0")
            .name("b")
            .seeds([a.gossip_addr().to_string()])
            .gossip_interval(Duration::from_millis(50))
            .start()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b.nodes_with_role("x").is_empty() {
            assert!(std::time::Instant::now() < deadline, "b never saw a");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.cluster_keys("rpc").len(), 1);
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn insecure_with_a_secret_is_refused() {
        let e = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .insecure()
            .secret(CODE_SECRET)
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("insecure mode and secret") && e.contains("not both"),
            "{e}"
        );
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_INSECURE", "1"), ("CLUSTER_SECRET", ENV_SECRET)])
            .unwrap()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLUSTER_INSECURE and CLUSTER_SECRET") && e.contains("not both"),
            "{e}"
        );
        let e = NodeBuilder::new()
            .from_vars([("CLUSTER_INSECURE", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLUSTER_INSECURE") && e.contains("1, true or yes"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn max_packet_age_is_checked() {
        let e = NodeBuilder::new()
            .listen("127.0.0.1:0")
            .secret_key(secret())
            .gossip_max_packet_age(Duration::from_millis(10))
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gossip max packet age") && e.contains("100ms to 1h"),
            "{e}"
        );
        let b = NodeBuilder::new()
            .from_vars([("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS", "2500")])
            .unwrap();
        assert_eq!(
            merged(&b).0.gossip_max_packet_age,
            Duration::from_millis(2500)
        );
        assert_eq!(
            Config::default().gossip_max_packet_age,
            Duration::from_secs(10)
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_cluster_variables_are_read_and_non_utf8_values_are_named() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0x66, 0x6f, 0xff]);
        let vars = vec![
            (OsString::from("HOME_OF_BYTES"), bad.clone()),
            (OsString::from("CLUSTER_NAME"), OsString::from("c1")),
        ];
        let read = cluster_vars(vars).expect("a non-UTF-8 variable of someone else is skipped");
        assert_eq!(read, vec![("CLUSTER_NAME".to_owned(), "c1".to_owned())]);
        let err = cluster_vars(vec![(OsString::from("CLUSTER_ROLES"), bad)])
            .expect_err("a non-UTF-8 CLUSTER_ value is refused")
            .to_string();
        assert!(
            err.contains("CLUSTER_ROLES") && err.contains("UTF-8"),
            "{err}"
        );
        // A secret that is not UTF-8: named, never shown.
        let secret = OsString::from_vec(b"k\xffSECRETBYTES".to_vec());
        let err = cluster_vars(vec![(OsString::from("CLUSTER_SECRET"), secret)])
            .expect_err("a non-UTF-8 secret is refused")
            .to_string();
        assert!(
            err.contains("CLUSTER_SECRET") && err.contains("UTF-8") && !err.contains("SECRETBYTES"),
            "{err}"
        );
    }
}
