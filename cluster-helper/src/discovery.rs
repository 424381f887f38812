//! Discovery: turns the seeds into candidate peer addresses, re-resolving DNS seeds as the
//! records' TTLs run out.
//!
//! Discovery only proposes addresses; membership decides who is a peer. The published set is the
//! union over all seeds:
//!
//! - a literal address ([`Seed::Addr`]) is always in it;
//! - a name that does not exist (`NXDOMAIN`) or has no records of the asked type contributes
//!   nothing (the pods are gone);
//! - a name whose lookup fails transiently (timeout, `SERVFAIL`, connection error) keeps the
//!   addresses it had, and is retried after the minimum interval. When only part of a seed's
//!   lookups fail (say AAAA times out but A answers), the seed keeps its previous addresses plus
//!   the new ones: a transient failure never removes an address.
//!
//! The next round starts when the smallest TTL seen in the last round has run out, clamped to
//! `[min_interval, max_interval]`. The resolver's cache is cleared before every round, so it
//! never hides a change; within a round it only saves looking up the same name twice.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join, join_all};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};

use crate::error::Error;
use crate::seed::Seed;

/// The set of candidate peer addresses published by discovery.
pub(crate) type Peers = Arc<BTreeSet<SocketAddr>>;

/// How long one DNS query may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Retries after a failed query (so each query is tried twice).
const QUERY_RETRIES: usize = 1;

/// Upper bound on resolving one seed (SRV, then its targets), whatever the resolver does.
const SEED_DEADLINE: Duration = Duration::from_secs(8);

/// Resolver cache entries; the cache only serves one round (it is cleared before each).
const CACHE_SIZE: u64 = 256;

/// The shortest interval between rounds, whatever the configuration says.
const MIN_INTERVAL_FLOOR: Duration = Duration::from_millis(100);

/// What to resolve and how often.
#[derive(Clone, Debug)]
pub(crate) struct DiscoveryConfig {
    /// Where peers might be.
    pub seeds: Vec<Seed>,
    /// `Some(ip:port)`: use only this DNS server (UDP and TCP), treat every seed name as fully
    /// qualified and ignore the hosts file; tests point it at a server on 127.0.0.1.
    /// `None`: the system's resolver configuration (`/etc/resolv.conf`: servers, search domains,
    /// `ndots`) and the hosts file.
    pub dns_server: Option<SocketAddr>,
    /// Lower bound on the re-resolution interval (also the retry delay after a failure).
    pub min_interval: Duration,
    /// Upper bound on the re-resolution interval; within the bounds it follows the smallest
    /// TTL seen.
    pub max_interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            seeds: Vec::new(),
            dns_server: None,
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
        }
    }
}

/// Resolves the seeds once (awaited, so start-up has addresses), then spawns a task that keeps
/// re-resolving them and publishes the set whenever it changes.
///
/// The task stops when every receiver is dropped. Literal [`Seed::Addr`] seeds are always in the
/// set and need no DNS; with no other seeds no resolver is built at all. A failed first round is
/// not an error (the seeds that failed contribute nothing until they resolve).
///
/// # Errors
///
/// [`Error::Resolver`] when there are DNS seeds and the resolver cannot be set up (e.g. the
/// system configuration cannot be read).
pub(crate) async fn spawn_discovery(
    config: DiscoveryConfig,
) -> Result<watch::Receiver<Peers>, Error> {
    let DiscoveryConfig {
        seeds,
        dns_server,
        min_interval,
        max_interval,
    } = config;
    let (min_interval, max_interval) = interval_bounds(min_interval, max_interval);

    let mut literals = BTreeSet::new();
    let mut dns_seeds: Vec<Seed> = Vec::new();
    for seed in seeds {
        match seed {
            Seed::Addr(addr) => {
                literals.insert(addr);
            }
            seed if !dns_seeds.contains(&seed) => dns_seeds.push(seed),
            _ => {}
        }
    }

    if dns_seeds.is_empty() {
        debug!(
            peers = literals.len(),
            "discovery: literal seeds only, no DNS"
        );
        let (tx, rx) = watch::channel(Arc::new(literals));
        // Keep the sender while anyone listens, so that receivers see "no change" rather than
        // "closed".
        tokio::spawn(async move { tx.closed().await });
        return Ok(rx);
    }

    let resolver = build_resolver(dns_server, min_interval, max_interval)?;
    let mut discovery = Discovery {
        resolver,
        force_fqdn: dns_server.is_some(),
        seeds: dns_seeds
            .into_iter()
            .map(|seed| SeedState {
                seed,
                addrs: BTreeSet::new(),
                failing: false,
            })
            .collect(),
        literals,
        min_interval,
        max_interval,
    };
    let delay = discovery.round().await;
    let peers = discovery.peers();
    info!(peers = ?peers, next_round = ?delay, "discovery: first round done");
    let (tx, rx) = watch::channel(Arc::new(peers));
    tokio::spawn(
        discovery
            .run(tx, delay)
            .instrument(tracing::debug_span!("discovery")),
    );
    Ok(rx)
}

/// `(min, max)` made usable: `min` at least [`MIN_INTERVAL_FLOOR`], `max` at least `min`.
fn interval_bounds(min: Duration, max: Duration) -> (Duration, Duration) {
    let min = min.max(MIN_INTERVAL_FLOOR);
    (min, max.max(min))
}

/// The delay before the next round: after `min_interval` if anything failed, otherwise after
/// the smallest TTL seen (`max_interval` if none was seen), clamped to the bounds.
fn next_delay(ttl: Option<Duration>, failed: bool, min: Duration, max: Duration) -> Duration {
    if failed {
        return min;
    }
    ttl.unwrap_or(max).clamp(min, max)
}

/// Builds the resolver: the given server only, or the system configuration.
fn build_resolver(
    dns_server: Option<SocketAddr>,
    min_interval: Duration,
    max_interval: Duration,
) -> Result<TokioResolver, Error> {
    let mut builder = match dns_server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| {
            Error::Resolver(format!(
                "cannot read the system DNS configuration (needed by dns:, srv: and host:port \
                 seeds; set CLUSTER_DNS_SERVER to use a given server): {e}"
            ))
        })?,
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_RETRIES;
    options.cache_size = CACHE_SIZE;
    // The cache is cleared before every round; these bounds only matter within a round.
    options.positive_max_ttl = Some(max_interval);
    options.negative_max_ttl = Some(min_interval);
    if dns_server.is_some() {
        options.use_hosts_file = ResolveHosts::Never;
    }
    builder
        .build()
        .map_err(|e| Error::Resolver(format!("cannot build the DNS resolver: {e}")))
}

/// The resolving task's state.
struct Discovery {
    resolver: TokioResolver,
    /// Treat every seed name as fully qualified (no search domains).
    force_fqdn: bool,
    seeds: Vec<SeedState>,
    literals: BTreeSet<SocketAddr>,
    min_interval: Duration,
    max_interval: Duration,
}

/// One DNS seed and what it resolved to last.
struct SeedState {
    seed: Seed,
    addrs: BTreeSet<SocketAddr>,
    /// Whether the last round failed for this seed (to log a failure once, and the recovery).
    failing: bool,
}

impl Discovery {
    /// Re-resolves until every receiver is gone, publishing changes.
    async fn run(mut self, tx: watch::Sender<Peers>, mut delay: Duration) {
        loop {
            tokio::select! {
                () = tx.closed() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = tokio::select! {
                () = tx.closed() => break,
                delay = self.round() => delay,
            };
            let peers = self.peers();
            tx.send_if_modified(|current| {
                if **current == peers {
                    return false;
                }
                let added: Vec<&SocketAddr> = peers.difference(current).collect();
                let removed: Vec<&SocketAddr> = current.difference(&peers).collect();
                info!(
                    ?added,
                    ?removed,
                    total = peers.len(),
                    "discovered addresses changed"
                );
                *current = Arc::new(peers);
                true
            });
            debug!(next_round = ?delay, "discovery round done");
        }
        debug!("discovery stopped: no receivers left");
    }

    /// The published set: literal seeds and every DNS seed's addresses.
    fn peers(&self) -> BTreeSet<SocketAddr> {
        let mut peers = self.literals.clone();
        for seed in &self.seeds {
            peers.extend(seed.addrs.iter().copied());
        }
        peers
    }

    /// Resolves every DNS seed once, updates their addresses, returns the delay until the next
    /// round.
    async fn round(&mut self) -> Duration {
        self.resolver.clear_cache();
        let resolver = &self.resolver;
        let force_fqdn = self.force_fqdn;
        let results = join_all(self.seeds.iter().map(|state| async move {
            match tokio::time::timeout(
                SEED_DEADLINE,
                resolve_seed(resolver, &state.seed, force_fqdn),
            )
            .await
            {
                Ok(observed) => observed,
                Err(_) => Observed::failed(format!("no answer within {SEED_DEADLINE:?}")),
            }
        }))
        .await;

        let mut ttl = None;
        let mut failed = false;
        for (state, observed) in self.seeds.iter_mut().zip(results) {
            ttl = min_ttl(ttl, observed.ttl);
            match observed.error {
                None => {
                    if state.failing {
                        info!(seed = %state.seed, addresses = observed.addrs.len(), "seed resolves again");
                    }
                    state.failing = false;
                    debug!(seed = %state.seed, addresses = ?observed.addrs, "seed resolved");
                    state.addrs = observed.addrs;
                }
                Some(error) => {
                    failed = true;
                    if state.failing {
                        debug!(seed = %state.seed, %error, kept = state.addrs.len(), "seed still fails to resolve");
                    } else {
                        warn!(
                            seed = %state.seed,
                            %error,
                            kept = state.addrs.len(),
                            "cannot resolve seed; keeping its previous addresses and retrying"
                        );
                    }
                    state.failing = true;
                    state.addrs.extend(observed.addrs);
                }
            }
        }
        next_delay(ttl, failed, self.min_interval, self.max_interval)
    }
}

/// What resolving (part of) a seed found.
#[derive(Debug, Default, PartialEq)]
struct Observed {
    addrs: BTreeSet<SocketAddr>,
    /// The smallest TTL seen (records, or negative answers), if any.
    ttl: Option<Duration>,
    /// A transient failure of some lookup, if any.
    error: Option<String>,
}

impl Observed {
    fn failed(error: String) -> Self {
        Observed {
            error: Some(error),
            ..Observed::default()
        }
    }

    fn observe_ttl(&mut self, ttl: Duration) {
        self.ttl = min_ttl(self.ttl, Some(ttl));
    }

    fn merge(&mut self, other: Observed) {
        self.addrs.extend(other.addrs);
        self.ttl = min_ttl(self.ttl, other.ttl);
        if self.error.is_none() {
            self.error = other.error;
        }
    }

    /// Takes in one lookup's outcome: its A/AAAA answers (with `port`) and their TTLs.
    fn absorb(&mut self, outcome: Outcome, port: u16) {
        match outcome {
            Outcome::Records(lookup) => {
                self.absorb_records(lookup.answers(), port);
            }
            Outcome::NoRecords { negative_ttl } => self.observe_negative(negative_ttl),
            Outcome::Failed(error) => self.merge(Observed::failed(error)),
        }
    }

    /// A/AAAA records into addresses with `port`; every record's TTL counts (CNAMEs too).
    fn absorb_records(&mut self, records: &[Record], port: u16) {
        for record in records {
            if let Some(ip) = record_ip(record) {
                self.addrs.insert(SocketAddr::new(ip, port));
            }
            self.observe_ttl(Duration::from_secs(u64::from(record.ttl)));
        }
    }

    /// A negative answer: look again after its TTL (at the minimum interval without one).
    fn observe_negative(&mut self, negative_ttl: Option<u32>) {
        self.observe_ttl(
            negative_ttl.map_or(Duration::ZERO, |ttl| Duration::from_secs(u64::from(ttl))),
        );
    }
}

/// The smaller of two optional TTLs.
fn min_ttl(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The address in an A or AAAA record.
fn record_ip(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// One lookup's outcome, sorted into what discovery cares about.
enum Outcome {
    /// The name has records of the asked type.
    Records(Lookup),
    /// `NXDOMAIN`, or the name exists without records of the asked type: nothing to contribute.
    NoRecords { negative_ttl: Option<u32> },
    /// Timeout, `SERVFAIL`, `REFUSED`, connection error...: keep what we had.
    Failed(String),
}

impl From<Result<Lookup, NetError>> for Outcome {
    fn from(result: Result<Lookup, NetError>) -> Self {
        match result {
            Ok(lookup) => Outcome::Records(lookup),
            Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => Outcome::NoRecords {
                negative_ttl: no_records.negative_ttl,
            },
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }
}

/// The name to query for a seed's name: absolute when `force_fqdn`, otherwise as written (so
/// that the system's search domains apply unless it ends with a dot).
fn query_name(name: &str, force_fqdn: bool) -> Result<Name, String> {
    let mut query =
        Name::from_ascii(name).map_err(|e| format!("invalid DNS name {name:?}: {e}"))?;
    if force_fqdn {
        query.set_fqdn(true);
    }
    Ok(query)
}

/// Resolves one seed.
async fn resolve_seed(resolver: &TokioResolver, seed: &Seed, force_fqdn: bool) -> Observed {
    match seed {
        Seed::Addr(addr) => Observed {
            addrs: BTreeSet::from([*addr]),
            ..Observed::default()
        },
        Seed::Host { host: name, port } | Seed::Dns { name, port } => {
            match query_name(name, force_fqdn) {
                Ok(name) => resolve_host(resolver, name, *port).await,
                Err(error) => Observed::failed(error),
            }
        }
        Seed::Srv { name } => match query_name(name, force_fqdn) {
            Ok(name) => resolve_srv(resolver, name).await,
            Err(error) => Observed::failed(error),
        },
    }
}

/// Every A and AAAA record of `name`, with `port`.
async fn resolve_host(resolver: &TokioResolver, name: Name, port: u16) -> Observed {
    let (v4, v6) = join(
        resolver.lookup(name.clone(), RecordType::A),
        resolver.lookup(name, RecordType::AAAA),
    )
    .await;
    let mut observed = Observed::default();
    observed.absorb(Outcome::from(v4), port);
    observed.absorb(Outcome::from(v6), port);
    observed
}

/// Every SRV target's addresses, with the SRV port: from the additional records when the server
/// sent them, otherwise by looking the target up.
async fn resolve_srv(resolver: &TokioResolver, name: Name) -> Observed {
    let lookup = match Outcome::from(resolver.lookup(name, RecordType::SRV).await) {
        Outcome::Records(lookup) => lookup,
        Outcome::NoRecords { negative_ttl } => {
            let mut observed = Observed::default();
            observed.observe_negative(negative_ttl);
            return observed;
        }
        Outcome::Failed(error) => return Observed::failed(error),
    };
    let (mut observed, to_look_up) = srv_targets(lookup.answers(), lookup.additionals());
    let looked_up = join_all(
        to_look_up
            .into_iter()
            .map(|(target, port)| resolve_host(resolver, target, port)),
    )
    .await;
    for target in looked_up {
        observed.merge(target);
    }
    observed
}

/// From an SRV answer: the addresses found in `additionals` (with their TTLs and the SRV TTLs),
/// and the `(target, port)` pairs that have no additional records and must be looked up.
///
/// A target of `.` ("no service here") and port 0 are skipped.
fn srv_targets(answers: &[Record], additionals: &[Record]) -> (Observed, Vec<(Name, u16)>) {
    let mut observed = Observed::default();
    let mut to_look_up: Vec<(Name, u16)> = Vec::new();
    for record in answers {
        observed.observe_ttl(Duration::from_secs(u64::from(record.ttl)));
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        if srv.target.is_root() || srv.port == 0 {
            debug!(record = %record, "skipping SRV record without a service");
            continue;
        }
        let glue: Vec<Record> = additionals
            .iter()
            .filter(|extra| extra.name == srv.target && record_ip(extra).is_some())
            .cloned()
            .collect();
        if glue.is_empty() {
            let target = (srv.target.clone(), srv.port);
            if !to_look_up.contains(&target) {
                to_look_up.push(target);
            }
        } else {
            observed.absorb_records(&glue, srv.port);
        }
    }
    (observed, to_look_up)
}

#[cfg(test)]
mod tests {
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::{Query, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use tokio::time::{Instant, timeout};

    use super::*;
    use easy_rpc_test_dns::TestDns;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn seeds(list: &str) -> Vec<Seed> {
        crate::seed::parse_seed_list(list).unwrap()
    }

    fn set(addrs: &[&str]) -> BTreeSet<SocketAddr> {
        addrs.iter().map(|a| sa(a)).collect()
    }

    fn a(owner: &str, addr: &str, ttl: u32) -> Record {
        let data = match ip(addr) {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(name(owner), ttl, data)
    }

    fn srv(owner: &str, target: &str, port: u16, ttl: u32) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::SRV(SRV::new(0, 10, port, name(target))),
        )
    }

    // ---- pure parts ----

    #[test]
    fn interval_bounds_are_made_usable() {
        let s = Duration::from_secs;
        assert_eq!(interval_bounds(s(1), s(30)), (s(1), s(30)));
        assert_eq!(interval_bounds(s(5), s(2)), (s(5), s(5)));
        assert_eq!(
            interval_bounds(Duration::ZERO, Duration::ZERO),
            (MIN_INTERVAL_FLOOR, MIN_INTERVAL_FLOOR)
        );
    }

    #[test]
    fn next_delay_follows_smallest_ttl_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(next_delay(Some(s(7)), false, s(1), s(30)), s(7));
        assert_eq!(next_delay(Some(s(0)), false, s(1), s(30)), s(1));
        assert_eq!(next_delay(Some(s(3600)), false, s(1), s(30)), s(30));
        assert_eq!(next_delay(None, false, s(1), s(30)), s(30));
        assert_eq!(next_delay(Some(s(7)), true, s(1), s(30)), s(1));
    }

    #[test]
    fn min_ttl_of_options() {
        let s = Duration::from_secs;
        assert_eq!(min_ttl(None, None), None);
        assert_eq!(min_ttl(Some(s(3)), None), Some(s(3)));
        assert_eq!(min_ttl(None, Some(s(3))), Some(s(3)));
        assert_eq!(min_ttl(Some(s(3)), Some(s(2))), Some(s(2)));
    }

    #[test]
    fn query_names() {
        assert!(query_name("billing.default.svc", true).unwrap().is_fqdn());
        assert!(!query_name("billing.default.svc", false).unwrap().is_fqdn());
        assert!(query_name("billing.", false).unwrap().is_fqdn());
        assert!(query_name("bad..name", false).is_err());
    }

    #[test]
    fn outcomes_sort_errors() {
        let query = Query::query(name("x.test."), RecordType::A);
        let nx = NetError::from(NoRecords::new(query.clone(), ResponseCode::NXDomain));
        assert!(matches!(
            Outcome::from(Err(nx)),
            Outcome::NoRecords { negative_ttl: None }
        ));
        let mut nodata = NoRecords::new(query, ResponseCode::NoError);
        nodata.negative_ttl = Some(4);
        assert!(matches!(
            Outcome::from(Err(NetError::from(nodata))),
            Outcome::NoRecords {
                negative_ttl: Some(4)
            }
        ));
        for transient in [
            NetError::Timeout,
            NetError::from(DnsError::ResponseCode(ResponseCode::ServFail)),
            NetError::from(DnsError::ResponseCode(ResponseCode::Refused)),
            NetError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            assert!(matches!(Outcome::from(Err(transient)), Outcome::Failed(_)));
        }
    }

    #[test]
    fn absorbing_answers() {
        let mut observed = Observed::default();
        let cname = Record::from_rdata(
            name("alias.test."),
            3,
            RData::CNAME(CNAME(name("real.test."))),
        );
        observed.absorb_records(
            &[
                cname,
                a("real.test.", "10.0.0.1", 9),
                a("real.test.", "fd00::1", 5),
            ],
            80,
        );
        assert_eq!(observed.addrs, set(&["10.0.0.1:80", "[fd00::1]:80"]));
        assert_eq!(observed.ttl, Some(Duration::from_secs(3)));
        assert_eq!(observed.error, None);

        observed.absorb(
            Outcome::NoRecords {
                negative_ttl: Some(1),
            },
            80,
        );
        assert_eq!(observed.ttl, Some(Duration::from_secs(1)));
        observed.absorb(Outcome::NoRecords { negative_ttl: None }, 80);
        assert_eq!(observed.ttl, Some(Duration::ZERO));
        observed.absorb(Outcome::Failed("boom".into()), 80);
        assert_eq!(observed.error.as_deref(), Some("boom"));
        assert_eq!(observed.addrs.len(), 2);
    }

    #[test]
    fn srv_targets_use_additionals_or_ask_for_lookups() {
        let answers = [
            srv("_g._udp.b.test.", "pod-0.b.test.", 7000, 30),
            srv("_g._udp.b.test.", "pod-1.b.test.", 7001, 20),
            srv("_g._udp.b.test.", "pod-1.b.test.", 7001, 20),
            srv("_g._udp.b.test.", ".", 7002, 20),
            srv("_g._udp.b.test.", "pod-2.b.test.", 0, 20),
        ];
        let additionals = [
            a("pod-0.b.test.", "10.0.0.1", 10),
            a("pod-0.b.test.", "fd00::1", 10),
            a("other.b.test.", "10.9.9.9", 1),
        ];
        let (observed, to_look_up) = srv_targets(&answers, &additionals);
        assert_eq!(observed.addrs, set(&["10.0.0.1:7000", "[fd00::1]:7000"]));
        assert_eq!(observed.ttl, Some(Duration::from_secs(10)));
        assert_eq!(to_look_up, vec![(name("pod-1.b.test."), 7001)]);
    }

    #[tokio::test]
    async fn literal_seeds_need_no_dns() {
        // No resolver is built: this works whatever the system configuration.
        let rx = spawn_discovery(DiscoveryConfig {
            seeds: seeds("10.0.0.1:7946, [fd00::1]:7946, 10.0.0.1:7946"),
            ..DiscoveryConfig::default()
        })
        .await
        .unwrap();
        assert_eq!(**rx.borrow(), set(&["10.0.0.1:7946", "[fd00::1]:7946"]));
        assert!(!rx.has_changed().unwrap(), "the sender stays alive");

        let rx = spawn_discovery(DiscoveryConfig::default()).await.unwrap();
        assert!(rx.borrow().is_empty());
    }

    // ---- against a real DNS server on loopback ----

    /// Discovery pointed at `dns`, TTL-driven from 1 s up to 30 s (or `min` for retries).
    fn config(dns: &TestDns, seed_list: &str, min: Duration) -> DiscoveryConfig {
        DiscoveryConfig {
            seeds: seeds(seed_list),
            dns_server: Some(dns.addr()),
            min_interval: min,
            max_interval: Duration::from_secs(30),
        }
    }

    /// Waits (at most `within`) until the published set equals `want`.
    async fn wait_for(
        rx: &mut watch::Receiver<Peers>,
        want: &BTreeSet<SocketAddr>,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        let outcome = timeout(within, rx.wait_for(|peers| **peers == *want))
            .await
            .map(|waited| waited.is_ok());
        match outcome {
            Ok(true) => start.elapsed(),
            Ok(false) => panic!("discovery stopped"),
            Err(_) => panic!(
                "wanted {want:?} within {within:?}, still {:?}",
                **rx.borrow()
            ),
        }
    }

    /// Asserts that the published set does not change for `period`.
    async fn assert_unchanged(rx: &mut watch::Receiver<Peers>, period: Duration) {
        let before = rx.borrow_and_update().clone();
        if let Ok(changed) = timeout(period, rx.changed()).await {
            panic!(
                "set changed ({changed:?}) from {before:?} to {:?}",
                **rx.borrow()
            );
        }
    }

    #[tokio::test]
    async fn a_records_of_several_pods() {
        let dns = TestDns::start().await;
        dns.set_a(
            "billing.test",
            &[ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")],
            30,
        );
        let rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(
            **rx.borrow(),
            set(&["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"])
        );
    }

    #[tokio::test]
    async fn aaaa_records_and_host_seeds() {
        let dns = TestDns::start().await;
        dns.set_a("v6.test", &[ip("fd00::1"), ip("fd00::2")], 30);
        dns.set_a("dual.test", &[ip("10.0.0.9"), ip("fd00::9")], 30);
        let rx = spawn_discovery(config(
            &dns,
            "dns:v6.test:7946, dual.test:80",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(
            **rx.borrow(),
            set(&[
                "[fd00::1]:7946",
                "[fd00::2]:7946",
                "10.0.0.9:80",
                "[fd00::9]:80"
            ])
        );
    }

    #[tokio::test]
    async fn srv_targets_with_and_without_additionals() {
        let dns = TestDns::start().await;
        dns.set_srv(
            "_gossip._udp.billing.test",
            &[("pod-0.billing.test", 7000), ("pod-1.billing.test", 7001)],
            30,
        );
        dns.set_a("pod-0.billing.test", &[ip("10.0.0.1")], 30);
        dns.set_a("pod-1.billing.test", &[ip("10.0.0.2"), ip("fd00::2")], 30);
        let want = set(&["10.0.0.1:7000", "10.0.0.2:7001", "[fd00::2]:7001"]);

        let rx = spawn_discovery(config(
            &dns,
            "srv:_gossip._udp.billing.test",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(**rx.borrow(), want);
        let with_additionals = dns.queries();
        assert_eq!(with_additionals, 1, "the SRV answer's additionals suffice");

        dns.set_srv_additionals(false);
        let rx = spawn_discovery(config(
            &dns,
            "srv:_gossip._udp.billing.test",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(**rx.borrow(), want);
        // SRV, then A and AAAA for each of the two targets.
        assert_eq!(dns.queries() - with_additionals, 5);
    }

    #[tokio::test]
    async fn record_change_is_seen_after_the_ttl() {
        let dns = TestDns::start().await;
        dns.set_a("billing.test", &[ip("10.0.0.1"), ip("10.0.0.2")], 1);
        let mut rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(**rx.borrow(), set(&["10.0.0.1:7946", "10.0.0.2:7946"]));
        let first_round = dns.queries();

        // Pod 10.0.0.2 is replaced by 10.0.0.3.
        dns.set_a("billing.test", &[ip("10.0.0.1"), ip("10.0.0.3")], 1);
        let took = wait_for(
            &mut rx,
            &set(&["10.0.0.1:7946", "10.0.0.3:7946"]),
            Duration::from_secs(4),
        )
        .await;
        assert!(took <= Duration::from_millis(2500), "took {took:?}");
        assert!(dns.queries() > first_round, "the resolver asked again");

        // Unchanged records: rounds go on, nothing is published.
        let before = dns.queries();
        assert_unchanged(&mut rx, Duration::from_millis(2500)).await;
        assert!(dns.queries() >= before + 2, "kept re-resolving");
    }

    #[tokio::test]
    async fn vanished_name_removes_its_addresses_only() {
        let dns = TestDns::start().await;
        dns.set_a("billing.test", &[ip("10.0.0.1")], 1);
        dns.set_a("orders.test", &[ip("10.0.1.1")], 1);
        let mut rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946, dns:orders.test:7946, 192.168.1.1:7946",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        assert_eq!(
            **rx.borrow(),
            set(&["10.0.0.1:7946", "10.0.1.1:7946", "192.168.1.1:7946"])
        );

        dns.remove("billing.test"); // NXDOMAIN from now on
        wait_for(
            &mut rx,
            &set(&["10.0.1.1:7946", "192.168.1.1:7946"]),
            Duration::from_secs(4),
        )
        .await;

        dns.set_a("orders.test", &[], 1); // the last pod goes too
        wait_for(&mut rx, &set(&["192.168.1.1:7946"]), Duration::from_secs(4)).await;

        // And comes back.
        dns.set_a("billing.test", &[ip("10.0.0.5")], 1);
        wait_for(
            &mut rx,
            &set(&["10.0.0.5:7946", "192.168.1.1:7946"]),
            Duration::from_secs(4),
        )
        .await;
    }

    #[tokio::test]
    async fn timeouts_and_servfail_keep_previous_addresses() {
        let dns = TestDns::start().await;
        dns.set_a("billing.test", &[ip("10.0.0.1"), ip("10.0.0.2")], 1);
        let min = Duration::from_millis(200);
        let mut rx = spawn_discovery(config(&dns, "dns:billing.test:7946, 10.9.9.9:1", min))
            .await
            .unwrap();
        let want = set(&["10.0.0.1:7946", "10.0.0.2:7946", "10.9.9.9:1"]);
        assert_eq!(**rx.borrow(), want);

        // The server stops answering and the pods change meanwhile: queries time out, the old
        // addresses stay.
        dns.set_silent(true);
        dns.set_a("billing.test", &[ip("10.0.0.3")], 1);
        assert_unchanged(&mut rx, Duration::from_secs(4)).await;

        // SERVFAIL: the same.
        dns.set_silent(false);
        dns.set_servfail(true);
        let before = dns.queries();
        assert_unchanged(&mut rx, Duration::from_millis(1500)).await;
        assert!(dns.queries() > before, "retried");

        // The server recovers: the change shows up, retried after the short min interval.
        dns.set_servfail(false);
        wait_for(
            &mut rx,
            &set(&["10.0.0.3:7946", "10.9.9.9:1"]),
            Duration::from_secs(2),
        )
        .await;
    }

    #[tokio::test]
    async fn server_gone_keeps_previous_addresses() {
        let dns = TestDns::start().await;
        dns.set_a("billing.test", &[ip("10.0.0.1")], 1);
        dns.set_srv("_g._udp.billing.test", &[("pod-0.billing.test", 7000)], 1);
        dns.set_a("pod-0.billing.test", &[ip("10.0.0.7")], 1);
        let mut rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946, srv:_g._udp.billing.test, [::1]:7946",
            Duration::from_millis(200),
        ))
        .await
        .unwrap();
        let want = set(&["10.0.0.1:7946", "10.0.0.7:7000", "[::1]:7946"]);
        assert_eq!(**rx.borrow(), want);

        drop(dns);
        assert_unchanged(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(**rx.borrow(), want);
    }

    #[tokio::test]
    async fn first_round_failure_is_not_fatal() {
        let dns = TestDns::start().await;
        dns.set_servfail(true);
        dns.set_a("billing.test", &[ip("10.0.0.1")], 1);
        let mut rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946, 10.9.9.9:1",
            Duration::from_millis(200),
        ))
        .await
        .unwrap();
        assert_eq!(**rx.borrow(), set(&["10.9.9.9:1"]));
        dns.set_servfail(false);
        wait_for(
            &mut rx,
            &set(&["10.0.0.1:7946", "10.9.9.9:1"]),
            Duration::from_secs(2),
        )
        .await;
    }

    #[tokio::test]
    async fn task_stops_when_receivers_are_dropped() {
        let dns = TestDns::start().await;
        dns.set_a("billing.test", &[ip("10.0.0.1")], 1);
        let rx = spawn_discovery(config(
            &dns,
            "dns:billing.test:7946",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
        let rx2 = rx.clone();
        drop(rx);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let while_listening = dns.queries();
        assert!(while_listening >= 4, "re-resolved while a receiver lived");

        drop(rx2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopped_at = dns.queries();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            dns.queries(),
            stopped_at,
            "no queries after the last receiver went"
        );
    }
}
