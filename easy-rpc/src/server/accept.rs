//! The accept loop and one connection's life: admission (the connection caps of
//! [`ServerLimits`](super::ServerLimits)), the handshake (with a time limit), then the
//! service it asked for, until the peer or the node closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use super::limits::{Admitted, Refusal};
use super::state::ServerState;
use crate::codec::FrameCodec;
use crate::error::RejectReason;
use crate::handshake::{self, Admission, HandshakeError};

/// How long the loop waits after an accept error it cannot do anything about (e.g. out of
/// kernel memory), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one warning about refused connections per this long (a flood would otherwise
/// log one line per connection).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections until `stop` fires. Each admitted connection is handshaken and served
/// in its own task: a bad peer only ever closes its own connection. A connection over a cap
/// is closed at once (not left in the backlog, where it would hold up those behind it).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut spare = Spare::open();
    let mut last_warning: Option<Instant> = None;
    let mut warn = |why: Refusal, peer: Option<SocketAddr>| {
        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            let s = state.stats();
            tracing::warn!(
                ?peer,
                refused = s.refused.total(),
                connections = s.connections,
                pending = s.pending_handshakes,
                "refusing connections: {why} (more are logged at debug level)"
            );
        } else {
            tracing::debug!(?peer, "connection refused: {why}");
        }
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => match state.bounds.admit(peer.ip()) {
                Ok(admitted) => {
                    let state = state.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        connection(stream, peer, state, stop, admitted).await;
                    });
                }
                Err(why) => {
                    drop(stream);
                    warn(why, Some(peer));
                }
            },
            Err(e) if out_of_descriptors(&e) => {
                // Close the spare descriptor, take the pending connection on it and close
                // it, then reopen the spare: the backlog drains and the loop never spins.
                if spare.shed(&listener) {
                    state.bounds.refuse_descriptors();
                    warn(Refusal::Descriptors, None);
                } else {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
            Err(e) if per_connection(&e) => {
                tracing::debug!("accept failed: {e}");
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Whether an accept error says the process or the system is out of file descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Whether an accept error concerns only the connection it was about (accept again at once).
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// A file descriptor kept in reserve (an open `/dev/null`), so that the accept loop can
/// still take a pending connection off the backlog (and close it) when the process is out of
/// descriptors. Nothing elsewhere than unix.
struct Spare(Option<std::fs::File>);

impl Spare {
    fn open() -> Spare {
        if cfg!(unix) {
            Spare(std::fs::File::open("/dev/null").ok())
        } else {
            Spare(None)
        }
    }

    /// Frees the spare descriptor, accepts and closes one pending connection, reopens the
    /// spare. Returns whether a connection was shed.
    fn shed(&mut self, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            // Lost earlier (reopening failed): try to get it back for next time.
            *self = Spare::open();
            return false;
        }
        let shed = matches!(listener.accept().now_or_never(), Some(Ok(_)));
        *self = Spare::open();
        shed
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut admitted: Admitted,
) {
    let _ = stream.set_nodelay(true);
    let key = state.key;
    let cluster = state.cluster.clone();
    let admit_state = state.clone();
    let handshake = handshake::server(&mut stream, &key, &cluster, |service| {
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
    let limits = &state.bounds.limits;
    let handshaken = tokio::time::timeout(limits.handshake_timeout, handshake).await;
    admitted.handshaken();
    let service = match handshaken {
        Ok(Ok(service)) => service,
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
    let codec = FrameCodec::new(limits.max_frame, state.bounds.budget.clone());
    let framed = Framed::new(stream, codec);
    let serving = served.conn.serve(framed, state.clone());
    tokio::select! {
        _ = serving => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    state.open.fetch_sub(1, Ordering::Relaxed);
    drop(admitted);
}
