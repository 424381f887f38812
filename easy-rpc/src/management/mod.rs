//! The management HTTP endpoint: health (`/livez`, `/readyz`), the cluster as this node sees it
//! (`/cluster`, JSON; `/cluster?wait=<version>` waits up to [`LONG_POLL`] for a change from that
//! version, so that the page shows a change as soon as the registry has it) and a live page
//! (`/`), on a port of its own, off by default
//! (`CLUSTER_HTTP_LISTEN` or [`NodeBuilder::http_listen`](crate::NodeBuilder::http_listen)).
//!
//! It is hyper's HTTP/1 server, bounded so that no client can hurt the node: at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed as soon as they are accepted), each
//! with [`HEADER_TIMEOUT`] to send its request head (also the idle time allowed between
//! requests), heads of at most [`MAX_HEAD`] bytes, no request bodies, and at most
//! [`CONNECTION_LIFETIME`] per connection. A slow or hostile client holds only its own
//! connection. The endpoint is not authenticated: it shows membership to whoever reaches it.

mod cluster;
mod routes;

pub(crate) use routes::readiness;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::node::WeakNode;

/// Connections served at once; more are closed at accept.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request head, and stay idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's read buffer; its minimum is 8 KiB).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long `/cluster?wait=<version>` holds its answer while the registry stays at that
/// version (it answers at once when the version differs, and with the unchanged document
/// after this long, so that "last heard" times still refresh).
pub(crate) const LONG_POLL: Duration = Duration::from_secs(1);
/// How long one connection may stay open, however busy.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves the management endpoint on `listener` until `stop` turns true (the node stopped) or
/// the node is gone.
pub(crate) fn spawn(listener: TcpListener, node: WeakNode, stop: watch::Receiver<bool>) {
    tokio::spawn(accept_loop(listener, node, stop));
}

async fn accept_loop(listener: TcpListener, node: WeakNode, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let node = Arc::new(node);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: keep the loop alive
                // without spinning.
                tracing::debug!("management endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "management endpoint: {MAX_CONNECTIONS} connections open; closing a new one");
            drop(stream);
            continue;
        };
        let node = node.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(routes::respond(&node, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}
