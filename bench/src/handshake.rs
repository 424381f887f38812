//! `bench handshake`: how many new connections per second a node accepts through the whole
//! RPC handshake (Noise `NNpsk0`: two X25519 operations on each side), against bare TCP
//! connects to the same listener (accept and close, no handshake) as the baseline. The
//! server is a process of its own; the client makes one connection at a time, alternating
//! rounds of the two.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::procs::Proc;

/// Connections per second over `secs`, one at a time, each made by `connect`.
async fn rate<F, Fut>(secs: f64, mut connect: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        connect().await;
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `bench handshake [--quick]`.
pub fn run(args: &[String]) {
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, secs) = if quick { (3, 0.5) } else { (7, 1.0) };
    let cluster = format!("bench-hs-{}", std::process::id());
    let (_server, addr) = Proc::spawn(
        "handshake server",
        &[],
        &[
            "rpc-server",
            "easy",
            &cluster,
            "hs-server",
            "adder",
            "--quiet",
        ],
    );
    let addr: SocketAddr = addr.trim().parse().expect("server address");
    let secret: cluster_helper::Secret = crate::secret::secret().parse().expect("secret");
    let key = cluster_helper::ClusterKey::derive(
        secret.expose(),
        &cluster,
        easy_rpc::__private::RPC_KEY_PURPOSE,
    );
    let key = *key.as_bytes();
    let (mut tcp, mut noise) = (Vec::new(), Vec::new());
    crate::rpc::rt().block_on(async {
        // Warm up both paths (and check that the handshake is accepted).
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        easy_rpc::__private::handshake_client(&mut s, &key, "Adder")
            .await
            .expect("the handshake is accepted");
        for _ in 0..rounds {
            tcp.push(
                rate(secs, || async {
                    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    drop(s);
                })
                .await,
            );
            // Let the server close what the bare connects left.
            tokio::time::sleep(Duration::from_millis(50)).await;
            noise.push(
                rate(secs, || async {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    easy_rpc::__private::handshake_client(&mut s, &key, "Adder")
                        .await
                        .unwrap();
                })
                .await,
            );
        }
    });
    let (t, n) = (crate::timing::median(tcp), crate::timing::median(noise));
    println!(
        "One connection at a time from one client process to a node in a process of its own \
         (loopback, unpinned), {rounds} alternating rounds of {secs} s, median:\n"
    );
    println!("| figure | value |\n| --- | --- |");
    println!("| bare TCP connects (accepted, closed, no handshake) | {t:.0} /s |");
    println!("| connections through the RPC handshake (Noise NNpsk0) | {n:.0} /s |");
    println!(
        "| handshake cost over a bare connect, per connection | {:.0} us |",
        (1.0 / n - 1.0 / t) * 1e6
    );
}
