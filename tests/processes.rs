//! Membership across real OS processes: each node is a `cluster_node` process configured from
//! `CLUSTER_*` variables, stopped with real signals.

use std::time::Duration;

use easy_rpc_tests::cluster::unique_cluster;
use easy_rpc_tests::process::{NodeProcess, table_has};

const EXE: &str = env!("CARGO_BIN_EXE_cluster_node");

fn spawn(cluster: &str, name: &str, roles: &str, seeds: &[&str]) -> NodeProcess {
    NodeProcess::spawn(
        EXE,
        name,
        &[
            ("CLUSTER_NAME", cluster.to_owned()),
            ("CLUSTER_ROLES", roles.to_owned()),
            ("CLUSTER_SEEDS", seeds.join(",")),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sync_roles_leave_gracefully_crash_and_restart() {
    let c = unique_cluster("procs");
    let p1 = spawn(&c, "p1", "billing", &[]);
    let seed = p1.gossip_addr().await;
    let mut p2 = spawn(&c, "p2", "billing", &[&seed]);
    let mut p3 = spawn(&c, "p3", "audit", &[&seed]);
    let s = Duration::from_secs(10);
    for p in [&p1, &p2, &p3] {
        p.wait_for(s, "TABLE", |l| {
            table_has(l, "billing", "p1,p2") && table_has(l, "audit", "p3")
        })
        .await;
        p.wait_for(s, "READY", |_| true).await;
    }

    // A role added at runtime in one process reaches the others.
    p3.command("add billing").await;
    p1.wait_for(s, "TABLE", |l| table_has(l, "billing", "p1,p2,p3"))
        .await;

    // SIGTERM: graceful leave, seen by the others within a second; the process exits 0.
    p2.signal("TERM");
    let took = p1
        .wait_for(Duration::from_secs(1), "TABLE", |l| {
            table_has(l, "billing", "p1,p3")
        })
        .await;
    eprintln!("SIGTERM seen after {took:?}");
    assert_eq!(p2.wait_exit(s).await, Some(0));
    assert!(p2.output().iter().any(|l| l == "LEFT"));

    // SIGKILL: no goodbye; failure detection drops it within 10 s.
    p3.signal("KILL");
    let took = p1
        .wait_for(s, "TABLE", |l| {
            table_has(l, "billing", "p1") && table_has(l, "audit", "")
        })
        .await;
    eprintln!("SIGKILL seen after {took:?}");
    assert_eq!(p3.wait_exit(s).await, None, "killed by a signal");

    // The killed pod comes back: same name, new port, new incarnation.
    let p3b = spawn(&c, "p3", "audit", &[&seed]);
    p1.wait_for(s, "TABLE", |l| table_has(l, "audit", "p3"))
        .await;
    let old = p3.last("STARTED").unwrap();
    let new = p3b.gossip_addr().await;
    assert!(!old.ends_with(&new), "restarted on a new port");
    drop(p3b);
    drop(p1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_a_weak_one_stops_start_up_saying_how_to_make_one() {
    for (value, expect) in [
        // Unset (blank counts as unset).
        ("", "no cluster secret: set CLUSTER_SECRET"),
        (
            "hunter2",
            "invalid CLUSTER_SECRET: it is neither base64 nor hex",
        ),
        (
            "c2hvcnQ=",
            "invalid CLUSTER_SECRET: it decodes to 5 bytes, not 32",
        ),
    ] {
        let mut p = NodeProcess::spawn(EXE, "nosecret", &[("CLUSTER_SECRET", value.to_owned())]);
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).await,
            Some(2),
            "{value:?}"
        );
        let out = p.output().join("\n");
        assert!(
            out.contains(expect) && out.contains("easy-rpc keygen"),
            "{value:?}: {out}"
        );
        assert!(
            value.is_empty() || !out.contains(value),
            "the secret was shown: {out}"
        );
        assert!(!out.contains("STARTED"), "{value:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_environment_stops_start_up_naming_the_variable() {
    for (var, value, expect) in [
        ("CLUSTER_ROLES", "billing,bad role", "CLUSTER_ROLES"),
        ("CLUSTER_SEEDS", "10.0.0.1:notaport", "CLUSTER_SEEDS"),
        ("CLUSTER_LISTEN", "everywhere", "CLUSTER_LISTEN"),
        (
            "CLUSTER_GOSSIP_INTERVAL",
            "often",
            "CLUSTER_GOSSIP_INTERVAL",
        ),
        (
            "CLUSTER_SECRET_FILE",
            "/nonexistent/secret",
            "CLUSTER_SECRET_FILE",
        ),
        ("CLUSTER_DNS_SERVER", "my-dns", "CLUSTER_DNS_SERVER"),
    ] {
        let mut p = NodeProcess::spawn(EXE, "bad", &[(var, value.to_owned())]);
        assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(2), "{var}");
        let out = p.output().join("\n");
        assert!(
            out.contains(expect) && out.contains("expected") || out.contains("cannot read"),
            "{var}: {out}"
        );
        assert!(!out.contains("STARTED"), "{var}: {out}");
    }
}
