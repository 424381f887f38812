//! The accept loop and one connection's life: the handshake (with a time limit), then the
//! service it asked for, until the peer or the node closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use super::state::ServerState;
use crate::codec::framing;
use crate::error::RejectReason;
use crate::handshake::{self, Admission, HandshakeError};

/// How long a peer has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections until `stop` fires. Each connection is handshaken and served in its
/// own task: a bad peer only ever closes its own connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let state = state.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection(stream, peer, state, stop).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let keys = state.keys.current();
    let admit_state = state.clone();
    let handshake = handshake::server(stream, &keys, |service| {
        if admit_state.is_leaving() {
            return Admission::Reject(RejectReason::Leaving);
        }
        match admit_state.services.read() {
            Ok(s) if s.contains_key(service) => Admission::Accept,
            _ => Admission::Reject(RejectReason::UnknownService {
                service: service.to_owned(),
            }),
        }
    });
    let (service, stream) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(HandshakeError::Rejected(reason))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "connection refused: {reason}");
            return;
        }
        Ok(Err(HandshakeError::Io(e))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    let served = match state.services.read() {
        Ok(s) => s.get(service.as_str()).cloned(),
        Err(_) => None,
    };
    let Some(served) = served else { return };
    state.accepted.fetch_add(1, Ordering::Relaxed);
    state.open.fetch_add(1, Ordering::Relaxed);
    let framed = Framed::new(stream, framing());
    let serving = served.conn.serve(framed, state.clone());
    tokio::select! {
        _ = serving => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    state.open.fetch_sub(1, Ordering::Relaxed);
}
