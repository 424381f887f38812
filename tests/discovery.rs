//! Nodes that find each other through a real DNS server (hickory, in-process on 127.0.0.1)
//! whose records change as "pods" come and go: A records of a headless service (every pod on
//! its own loopback IP, one port number, as in Kubernetes) and SRV records.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use cluster_helper::Node;
use easy_rpc_tests::cluster::{all_see, builder, init_logs, unique_cluster, wait_until};
use easy_rpc_tests::dns::TestDns;

const SERVICE: &str = "billing.default.svc.cluster.local";

/// Loopback IPs for "pods", distinct per test process so parallel runs do not collide.
fn pod_ip(k: u8) -> IpAddr {
    let base = (std::process::id() % 200) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 77, base, 10 + k))
}

/// A node on `ip:port` (port 0 for the first pod), seeded with the DNS name.
async fn pod(cluster: &str, name: &str, ip: IpAddr, port: u16, dns: &TestDns) -> Node {
    builder(cluster, name)
        .roles(["billing"])
        .listen(SocketAddr::new(ip, port))
        .seeds([format!("dns:{SERVICE}:{port}")])
        .dns_server(dns.addr())
        .dns_interval(Duration::from_millis(200), Duration::from_secs(2))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_service_whose_pods_come_and_go() {
    init_logs();
    let c = unique_cluster("dns-a");
    let dns = TestDns::start().await;

    // Find a port number free on every pod IP: the first pod picks it.
    let (a, port) = loop {
        let probe = std::net::UdpSocket::bind(SocketAddr::new(pod_ip(0), 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let free = (0..4u8).all(|k| {
            std::net::UdpSocket::bind(SocketAddr::new(pod_ip(k), port)).is_ok()
                && std::net::TcpListener::bind(SocketAddr::new(pod_ip(k), port)).is_ok()
        });
        if free {
            dns.set_a(SERVICE, &[pod_ip(0)], 1);
            break (pod(&c, "billing-a", pod_ip(0), port, &dns).await, port);
        }
    };
    // Alone in DNS (only its own address): ready at once, as the first pod of a new cluster.
    tokio::time::timeout(Duration::from_secs(2), a.ready())
        .await
        .expect("first pod ready");

    // A second pod appears in DNS and starts: the two find each other.
    dns.set_a(SERVICE, &[pod_ip(0), pod_ip(1)], 1);
    let b = pod(&c, "billing-b", pod_ip(1), port, &dns).await;
    wait_until(Duration::from_secs(5), "a and b see each other", || {
        all_see(&[&a, &b], "billing", &["billing-a", "billing-b"])
    })
    .await;

    // Seed loss: the service's records disappear. The formed cluster keeps working...
    dns.remove(SERVICE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(all_see(&[&a, &b], "billing", &["billing-a", "billing-b"]));
    b.add_role("audit").await.unwrap();
    wait_until(Duration::from_secs(3), "a sees b's new role", || {
        all_see(&[&a], "audit", &["billing-b"])
    })
    .await;

    // ...and a pod that starts while DNS lists nobody joins as soon as DNS lists any live
    // member (here only b, not a: gossip does the rest).
    let d = pod(&c, "billing-d", pod_ip(2), port, &dns).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(d.members().len(), 1, "nobody to find yet");
    let queries_before = dns.queries();
    dns.set_a(SERVICE, &[pod_ip(1)], 1);
    wait_until(Duration::from_secs(6), "d joined through DNS", || {
        all_see(
            &[&a, &b, &d],
            "billing",
            &["billing-a", "billing-b", "billing-d"],
        )
    })
    .await;
    assert!(dns.queries() > queries_before, "the name was re-resolved");

    // A pod goes away (crash) and leaves DNS: everyone drops it.
    dns.set_a(SERVICE, &[pod_ip(0), pod_ip(2)], 1);
    b.kill();
    wait_until(Duration::from_secs(10), "b dropped", || {
        all_see(&[&a, &d], "billing", &["billing-a", "billing-d"])
    })
    .await;
    for n in [a, d] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_targets_and_ports() {
    init_logs();
    let c = unique_cluster("dns-srv");
    let dns = TestDns::start().await;
    let srv = "_gossip._udp.billing.test";
    let start = |name: &'static str| {
        builder(&c, name)
            .roles(["billing"])
            .seeds([format!("srv:{srv}")])
            .dns_server(dns.addr())
            .dns_interval(Duration::from_millis(200), Duration::from_secs(2))
            .start()
    };
    let a = start("srv-a").await.unwrap();
    dns.set_a("pod-a.billing.test", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], 1);
    dns.set_srv(srv, &[("pod-a.billing.test", a.gossip_addr().port())], 1);
    let b = start("srv-b").await.unwrap();
    wait_until(Duration::from_secs(5), "b found a through SRV", || {
        all_see(&[&a, &b], "billing", &["srv-a", "srv-b"])
    })
    .await;
    // The SRV record now lists only b; a third node finds b, and through it a.
    dns.set_a("pod-b.billing.test", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], 1);
    dns.set_srv(srv, &[("pod-b.billing.test", b.gossip_addr().port())], 1);
    a.kill();
    let d = start("srv-d").await.unwrap();
    wait_until(Duration::from_secs(10), "d found b; a dropped", || {
        all_see(&[&b, &d], "billing", &["srv-b", "srv-d"])
    })
    .await;
    for n in [b, d] {
        n.shutdown().await;
    }
}
