//! The test DNS server ([`easy_rpc_test_dns::TestDns`]) answers real DNS queries: checked with a
//! plain hickory resolver pointed at it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use easy_rpc_test_dns::{NEGATIVE_TTL, TestDns};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::time::timeout;

/// Bound on every lookup in these tests.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// A resolver that asks only `server`, over UDP (`tcp == false`) or TCP, with its cache on
/// (so the tests also show that TTLs bound caching).
fn resolver(server: SocketAddr, tcp: bool) -> TokioResolver {
    let mut connection = if tcp {
        ConnectionConfig::tcp()
    } else {
        ConnectionConfig::udp()
    };
    connection.port = server.port();
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
        server.ip(),
        true,
        vec![connection],
    )]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().timeout = Duration::from_millis(500);
    builder.options_mut().attempts = 0;
    builder.build().expect("build resolver")
}

async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
) -> Result<Lookup, NetError> {
    let name = Name::from_ascii(name).expect("valid name");
    timeout(LOOKUP_DEADLINE, resolver.lookup(name, record_type))
        .await
        .expect("lookup finished in time")
}

fn ips(records: &[Record]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = records
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP")
}

fn no_records(result: Result<Lookup, NetError>) -> NoRecords {
    match result {
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => no_records,
        other => panic!("expected no records, got {other:?}"),
    }
}

#[tokio::test]
async fn a_and_aaaa_over_udp_and_tcp() {
    let dns = TestDns::start().await;
    dns.set_a(
        "billing.test",
        &[ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1")],
        30,
    );
    for tcp in [false, true] {
        let resolver = resolver(dns.addr(), tcp);
        let v4 = lookup(&resolver, "billing.test.", RecordType::A)
            .await
            .expect("A");
        assert_eq!(
            ips(v4.answers()),
            [ip("10.0.0.1"), ip("10.0.0.2")],
            "tcp={tcp}"
        );
        assert!(v4.answers().iter().all(|r| r.ttl == 30));
        let v6 = lookup(&resolver, "Billing.Test.", RecordType::AAAA)
            .await
            .expect("AAAA");
        assert_eq!(ips(v6.answers()), [ip("fd00::1")], "tcp={tcp}");
    }
    assert_eq!(dns.queries(), 4);
}

#[tokio::test]
async fn unknown_name_is_nxdomain_and_missing_type_is_nodata() {
    let dns = TestDns::start().await;
    dns.set_a("v4only.test", &[ip("10.0.0.1")], 30);
    let resolver = resolver(dns.addr(), false);

    let nx = no_records(lookup(&resolver, "nobody.test.", RecordType::A).await);
    assert_eq!(nx.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.negative_ttl, Some(NEGATIVE_TTL));

    let nodata = no_records(lookup(&resolver, "v4only.test.", RecordType::AAAA).await);
    assert_eq!(nodata.response_code, ResponseCode::NoError);
    let nodata = no_records(lookup(&resolver, "v4only.test.", RecordType::SRV).await);
    assert_eq!(nodata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn srv_with_additionals_for_known_targets() {
    let dns = TestDns::start().await;
    dns.set_srv(
        "_gossip._udp.billing.test",
        &[("pod-0.billing.test", 7000), ("pod-1.billing.test", 7001)],
        30,
    );
    dns.set_a("pod-0.billing.test", &[ip("10.0.0.1"), ip("fd00::1")], 30);
    let resolver = resolver(dns.addr(), false);

    let srv = lookup(&resolver, "_gossip._udp.billing.test.", RecordType::SRV)
        .await
        .expect("SRV");
    let mut targets: Vec<(String, u16, u16, u16)> = srv
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.target.to_ascii(), srv.port, srv.priority, srv.weight)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("pod-0.billing.test.".to_string(), 7000, 0, 10),
            ("pod-1.billing.test.".to_string(), 7001, 0, 10),
        ]
    );
    // Only pod-0's addresses are known, so only they come as additionals.
    let pod0 = Name::from_ascii("pod-0.billing.test.").expect("valid name");
    assert!(srv.additionals().iter().all(|r| r.name == pod0));
    assert_eq!(ips(srv.additionals()), [ip("10.0.0.1"), ip("fd00::1")]);

    dns.set_srv_additionals(false);
    let resolver = self::resolver(dns.addr(), false); // a new one: nothing cached

    let srv = lookup(&resolver, "_gossip._udp.billing.test.", RecordType::SRV)
        .await
        .expect("SRV");
    assert_eq!(srv.answers().len(), 2);
    assert!(srv.additionals().is_empty());

    // Removing the SRV records while the name has no other records: NXDOMAIN.
    dns.set_srv("_gossip._udp.billing.test", &[], 30);
    let resolver = self::resolver(dns.addr(), false);
    let nx = no_records(lookup(&resolver, "_gossip._udp.billing.test.", RecordType::SRV).await);
    assert_eq!(nx.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn changes_are_seen_once_the_ttl_runs_out() {
    let dns = TestDns::start().await;
    dns.set_a("billing.test", &[ip("10.0.0.1"), ip("10.0.0.2")], 1);
    let resolver = resolver(dns.addr(), false);

    let first = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect("A");
    assert_eq!(ips(first.answers()), [ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(dns.queries(), 1);

    // Pod 10.0.0.2 replaced by 10.0.0.3: cached until the TTL (1 s) runs out, then seen.
    dns.set_a("billing.test", &[ip("10.0.0.1"), ip("10.0.0.3")], 1);
    let cached = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect("A");
    assert_eq!(ips(cached.answers()), [ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(dns.queries(), 1, "answered from the resolver's cache");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect("A");
    assert_eq!(ips(fresh.answers()), [ip("10.0.0.1"), ip("10.0.0.3")]);
    assert_eq!(dns.queries(), 2, "the resolver asked again");

    // The name disappears.
    dns.remove("billing.test");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let gone = no_records(lookup(&resolver, "billing.test.", RecordType::A).await);
    assert_eq!(gone.response_code, ResponseCode::NXDomain);

    // set_a with no addresses also removes a name without other records.
    dns.set_a("orders.test", &[ip("10.0.1.1")], 1);
    dns.set_a("orders.test", &[], 1);
    let gone = no_records(lookup(&resolver, "orders.test.", RecordType::A).await);
    assert_eq!(gone.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn failure_modes_servfail_silence_and_stop() {
    let dns = TestDns::start().await;
    dns.set_a("billing.test", &[ip("10.0.0.1")], 0);
    let resolver = resolver(dns.addr(), false);

    dns.set_servfail(true);
    match lookup(&resolver, "billing.test.", RecordType::A).await {
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => {}
        other => panic!("expected SERVFAIL, got {other:?}"),
    }
    dns.set_servfail(false);

    dns.set_silent(true);
    let before = dns.queries();
    let err = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect_err("no answer while silent");
    assert!(!err.is_no_records_found(), "{err:?}");
    assert_eq!(
        dns.queries(),
        before,
        "silently dropped queries are not counted"
    );
    dns.set_silent(false);

    let ok = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect("A");
    assert_eq!(ips(ok.answers()), [ip("10.0.0.1")]);

    let addr = dns.addr();
    drop(dns);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resolver = self::resolver(addr, false);
    let err = lookup(&resolver, "billing.test.", RecordType::A)
        .await
        .expect_err("the server is gone");
    assert!(!err.is_no_records_found(), "{err:?}");
}
