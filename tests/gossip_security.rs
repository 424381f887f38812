//! Gossip security against real nodes on loopback: a recorded gossip packet sent again is
//! dropped and counted, and gets no answer; a recording replayed to a node started after the
//! recorded nodes died shows no ghost member; the cluster key rotates across a running cluster
//! without a single packet refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_helper::{Node, Secret};
use easy_rpc_tests::cluster::{
    all_see, builder, init_logs, start, test_secret, unique_cluster, wait_until,
};
use tokio::net::UdpSocket;

/// Receives the next datagram on `socket` that comes from `from`, within `within`.
async fn recv_from(socket: &UdpSocket, from: SocketAddr, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, sender))) if sender == from => return Some(buf[..n].to_vec()),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_packet_is_dropped_counted_and_unanswered() {
    init_logs();
    let c = unique_cluster("replay");
    let a = start(&c, "a", &["billing"], &[]).await;
    // A socket of ours is B's only seed: B sends its gossip there, where we record it.
    let sniffer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = builder(&c, "b")
        .seeds([sniffer.local_addr().unwrap().to_string()])
        .start()
        .await
        .unwrap();
    let packet = recv_from(&sniffer, b.gossip_addr(), Duration::from_secs(10))
        .await
        .expect("b gossips to its seed");

    // Delivered once (as a router would relay it), it is genuine: A answers it.
    sniffer.send_to(&packet, a.gossip_addr()).await.unwrap();
    assert!(
        recv_from(&sniffer, a.gossip_addr(), Duration::from_secs(5))
            .await
            .is_some(),
        "a answers the first delivery"
    );
    let before = a.gossip_stats();
    assert_eq!(before.packets_replayed, 0, "{before:?}");

    // Sent again, from another address and from the same one: dropped, counted, unanswered.
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..3 {
        attacker.send_to(&packet, a.gossip_addr()).await.unwrap();
    }
    sniffer.send_to(&packet, a.gossip_addr()).await.unwrap();
    wait_until(Duration::from_secs(5), "a counts 4 replays", || {
        a.gossip_stats().packets_replayed == 4
    })
    .await;
    assert!(
        recv_from(&attacker, a.gossip_addr(), Duration::from_secs(1))
            .await
            .is_none(),
        "a answered a replayed packet"
    );
    assert!(
        recv_from(&sniffer, a.gossip_addr(), Duration::from_millis(300))
            .await
            .is_none(),
        "a answered a replayed packet"
    );
    let after = a.gossip_stats();
    assert_eq!(after.packets_rejected, before.packets_rejected, "{after:?}");
    assert_eq!(after.packets_stale, 0, "{after:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_replayed_to_a_new_node_shows_no_ghost() {
    init_logs();
    let c = unique_cluster("ghost");
    let a = start(&c, "a", &["billing"], &[]).await;
    // A relay of ours is B's only seed: it passes every packet between A and B on, and keeps
    // a copy, as a capture on the network would.
    let relay = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let b = builder(&c, "b")
        .roles(["audit"])
        .seeds([relay.local_addr().unwrap().to_string()])
        .start()
        .await
        .unwrap();
    let recording: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let relaying = {
        let (relay, recording) = (relay.clone(), recording.clone());
        let (a_addr, b_addr) = (a.gossip_addr(), b.gossip_addr());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = relay.recv_from(&mut buf).await else {
                    return;
                };
                let to = if from == b_addr { a_addr } else { b_addr };
                recording.lock().unwrap().push(buf[..n].to_vec());
                let _ = relay.send_to(&buf[..n], to).await;
            }
        })
    };
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        a.nodes_with_role("audit").len() == 1 && b.nodes_with_role("billing").len() == 1
    })
    .await;
    // Keep recording for a few gossip rounds, with both nodes serving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    relaying.abort();
    let recording = std::mem::take(&mut *recording.lock().unwrap());
    assert!(recording.len() >= 2, "recorded {} packets", recording.len());
    a.kill();
    b.kill();

    // Later than the new node's maximum packet age.
    let max_age = Duration::from_secs(1);
    tokio::time::sleep(max_age + Duration::from_millis(500)).await;
    let new = builder(&c, "new")
        .gossip_max_packet_age(max_age)
        .start()
        .await
        .unwrap();
    for packet in &recording {
        relay.send_to(packet, new.gossip_addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every recorded packet reaches the new node and is authentic, but stale.
    let sent = recording.len() as u64;
    wait_until(
        Duration::from_secs(5),
        "the new node counts every packet",
        || new.gossip_stats().packets_stale == sent,
    )
    .await;
    // No ghost, ever: poll for a while.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let names: Vec<String> = new
            .members()
            .iter()
            .map(|m| m.id.name().to_owned())
            .collect();
        assert_eq!(names, ["new"], "a ghost member appeared");
        assert!(new.nodes_with_role("billing").is_empty());
        assert!(new.nodes_with_role("audit").is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = new.gossip_stats();
    assert_eq!(stats.packets_received, 0, "{stats:?}");
    assert_eq!(stats.packets_rejected, 0, "{stats:?}");
    new.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_rotates_across_a_running_cluster_without_a_refused_packet() {
    init_logs();
    let c = unique_cluster("rotate");
    let a = start(&c, "a", &["r"], &[]).await;
    let b = start(&c, "b", &["r"], &[&a]).await;
    let d = start(&c, "d", &["r"], &[&a]).await;
    let nodes = [&a, &b, &d];
    wait_until(Duration::from_secs(10), "all see all", || {
        all_see(&nodes, "r", &["a", "b", "d"])
    })
    .await;
    let (old, new) = (test_secret(), Secret::generate());
    // Watch every node's view, every 10 ms, for the whole rotation.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let watcher = {
        let nodes: Vec<Node> = nodes.iter().map(|n| (*n).clone()).collect();
        tokio::spawn(async move {
            let mut gaps = Vec::new();
            while !*stopped.borrow() {
                for n in &nodes {
                    if n.nodes_with_role("r").len() != 3 {
                        gaps.push(n.id().name().to_owned());
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(10), stopped.changed()).await;
            }
            gaps
        })
    };
    let rounds_before: Vec<u64> = nodes
        .iter()
        .map(|n| n.gossip_stats().packets_received)
        .collect();
    for ring in [
        vec![old.clone(), new.clone()],
        vec![new.clone(), old.clone()],
        vec![new.clone()],
    ] {
        for n in nodes {
            n.set_secrets(ring.clone()).unwrap();
            assert_eq!(n.cluster_keys("rpc-handshake").len(), ring.len());
        }
        // A few gossip rounds under this keyring.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    stop.send_replace(true);
    let gaps = watcher.await.unwrap();
    assert!(
        gaps.is_empty(),
        "nodes missed a peer during the rotation: {gaps:?}"
    );
    for (n, before) in nodes.iter().zip(rounds_before) {
        let stats = n.gossip_stats();
        assert_eq!(stats.packets_rejected, 0, "{}: {stats:?}", n.id());
        assert!(stats.packets_received > before + 5, "{}: {stats:?}", n.id());
    }
    // A node that still has only the old key is refused by all.
    let late = builder(&c, "late")
        .roles(["r"])
        .secret_key(old)
        .seeds([a.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "a refuses the old key", || {
        a.gossip_stats().packets_rejected > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(all_see(&nodes, "r", &["a", "b", "d"]));
    let seen: Vec<String> = late
        .members()
        .iter()
        .map(|m| m.id.name().to_owned())
        .collect();
    assert_eq!(seen, ["late"], "the node with the old key got in");
    for n in [a, b, d, late] {
        n.shutdown().await;
    }
}
