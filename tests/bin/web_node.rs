//! A cluster node that serves HTTP, as its own OS process: a cluster-helper node (no easy-rpc)
//! that serves HTTP/1 with hyper on the TCP listener cluster-helper binds for it
//! (`RpcListen::SamePort`), so its HTTP address is its member's `rpc_addr`. It also gossips the
//! service `http`. Configured from `CLUSTER_*`; `WEB_DELAY_MS` delays every answer (default
//! 5 ms), so that requests are in flight when it leaves.
//!
//! Every `GET` is answered with the node's id (`name#incarnation`).
//!
//! Out: `STARTED <node-id> <gossip-addr>`, `HTTP <addr>`, `READY <node-id>`; on SIGTERM:
//! `LEAVING` (the node announces `leaving` and keeps serving HTTP during its leave grace),
//! then, once gossip has stopped, it stops accepting, finishes the requests in flight and
//! prints `SERVED <requests>` and `LEFT`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_helper::{Node, RpcListen, shutdown_signal};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    easy_rpc_tests::cluster::init_logs();
    let node = match Node::builder().from_env() {
        Ok(b) => {
            b.rpc_listen(RpcListen::SamePort)
                .services(["http"])
                .start()
                .await
        }
        Err(e) => Err(e),
    };
    let node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("web_node: {e}");
            std::process::exit(2);
        }
    };
    let delay = Duration::from_millis(
        std::env::var("WEB_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    let listener = node
        .take_rpc_listener()
        .expect("an RPC listener was asked for");
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    println!("STARTED {} {}", node.id(), node.gossip_addr());
    println!(
        "HTTP {}",
        node.rpc_addr().expect("an advertised TCP address")
    );

    let id: Arc<str> = node.id().to_string().into();
    let served = Arc::new(AtomicU64::new(0));
    let graceful = GracefulShutdown::new();
    let serve = |stream: tokio::net::TcpStream| {
        let (id, served) = (id.clone(), served.clone());
        let answer = service_fn(move |_: Request<Incoming>| {
            let (id, served) = (id.clone(), served.clone());
            async move {
                tokio::time::sleep(delay).await;
                served.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(id.to_string()))))
            }
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), answer);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    };

    // Serving, until SIGTERM.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut ready_printed = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Ok((stream, _)) = accepted { serve(stream) },
            _ = node.ready(), if !ready_printed => {
                println!("READY {}", node.id());
                ready_printed = true;
            }
            _ = &mut signal => break,
        }
    }
    // Leaving: peers drop the node from the role at once; it keeps serving whatever still
    // arrives until its leave grace is over.
    println!("LEAVING");
    let shutdown = node.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Ok((stream, _)) = accepted { serve(stream) },
            _ = &mut shutdown => break,
        }
    }
    // Gone from every registry: stop accepting, finish the requests in flight.
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("web_node: connections still open after 10 s");
    }
    println!("SERVED {}", served.load(Ordering::Relaxed));
    println!("LEFT");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}
