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
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut admitted: Admitted,
) {
    let _ = stream.set_nodelay(true);
    let keys = state.keys.current();
    let admit_state = state.clone();
    let handshake = handshake::server(stream, &keys, state.encryption, |service| {
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
    let (service, stream) = match handshaken {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(HandshakeError::Rejected(reason))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            // Strangers are counted, not logged one by one: a flood must not flood the log.
            if matches!(
                reason,
                RejectReason::Unauthenticated | RejectReason::Malformed
            ) {
                tracing::debug!(%peer, "connection refused: {reason}");
            } else if matches!(reason, RejectReason::EncryptionDiffers { .. }) {
                // A node of the cluster set differently: a misconfiguration to fix.
                tracing::warn!(%peer, "connection refused: {reason}");
            } else {
                tracing::info!(%peer, "connection refused: {reason}");
            }
            return;
        }
        Ok(Err(HandshakeError::Io(e))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "handshake timed out");
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
    // The connection runs as a task of its own: this one wakes only when it ends or the node
    // stops, so the stop signal is not polled on every request (as a `select!` over the
    // connection's future would: about 1,100 instructions a request).
    let mut serving = tokio::spawn(served.conn.serve(framed, state.clone(), peer));
    let stopped = tokio::select! {
        _ = &mut serving => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    if stopped {
        serving.abort();
        // Until it is gone (dropped at its next poll), it is still open.
        let _ = serving.await;
    }
    state.open.fetch_sub(1, Ordering::Relaxed);
    drop(admitted);
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tarpc::context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::super::ServerLimits;
    use super::super::served::tests::{EchoReq, KEY, echo_client, echo_server};
    use crate::reply::Reply;

    /// A connection to `addr` from source address `from`.
    async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// Whether the server closed `stream` within `within` (reads nothing but the end).
    async fn closed_within(
        stream: &mut (impl tokio::io::AsyncRead + Unpin),
        within: Duration,
    ) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(within, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    async fn echo_works(addr: SocketAddr) {
        let client = echo_client(TcpStream::connect(addr).await.unwrap()).await;
        let reply = client.call(context::current(), EchoReq::Echo(7)).await;
        assert!(matches!(reply, Ok(Reply::Ok(7))), "{reply:?}");
    }

    #[tokio::test]
    async fn pending_handshakes_are_capped_per_address_and_in_all() {
        let limits = ServerLimits::default()
            .max_pending_handshakes(4)
            .max_pending_per_ip(2)
            .handshake_timeout(Duration::from_millis(800));
        let (addr, state, _stop) = echo_server(limits).await;
        let short = Duration::from_millis(300);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(connect_from("127.0.0.2", addr).await);
        }
        let mut over = connect_from("127.0.0.2", addr).await;
        assert!(
            closed_within(&mut over, short).await,
            "third from one address"
        );
        held.push(connect_from("127.0.0.3", addr).await);
        held.push(connect_from("127.0.0.3", addr).await);
        let mut over = connect_from("127.0.0.4", addr).await;
        assert!(closed_within(&mut over, short).await, "fifth in all");
        for s in &mut held {
            assert!(!closed_within(s, Duration::from_millis(10)).await);
        }
        let stats = state.stats();
        assert_eq!(stats.pending_handshakes, 4, "{stats:?}");
        assert_eq!(stats.refused.pending_per_ip, 1, "{stats:?}");
        assert_eq!(stats.refused.pending_handshakes, 1, "{stats:?}");
        // The idle ones time out, and their places are free again.
        for s in &mut held {
            assert!(closed_within(s, Duration::from_secs(3)).await);
        }
        echo_works(addr).await;
        let stats = state.stats();
        assert_eq!(stats.pending_handshakes, 0, "{stats:?}");
        // At most the last call's connection, which may not have closed yet.
        assert_eq!(stats.connections, stats.open, "{stats:?}");
        assert!(stats.rejected >= 4, "{stats:?}");
    }

    #[tokio::test]
    async fn a_peer_trickling_its_handshake_is_cut_off_at_the_timeout() {
        let limits = ServerLimits::default().handshake_timeout(Duration::from_millis(500));
        let (addr, state, _stop) = echo_server(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        // The preamble, a byte at a time, slower than the timeout allows.
        for b in b"ERPC\x00\x02" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(closed_within(&mut s, Duration::from_secs(3)).await);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(state.stats().rejected, 1);
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_whatever_their_address() {
        let limits = ServerLimits::default().max_connections(2);
        let (addr, state, _stop) = echo_server(limits).await;
        let a = echo_client(TcpStream::connect(addr).await.unwrap()).await;
        let mut idle = connect_from("127.0.0.5", addr).await;
        let mut over = connect_from("127.0.0.6", addr).await;
        assert!(closed_within(&mut over, Duration::from_millis(300)).await);
        assert_eq!(state.stats().refused.max_connections, 1);
        assert_eq!(state.stats().connections, 2);
        let reply = a.call(context::current(), EchoReq::Echo(1)).await;
        assert!(matches!(reply, Ok(Reply::Ok(1))), "{reply:?}");
        // A place frees when a connection ends.
        idle.shutdown().await.unwrap();
        drop(idle);
        for _ in 0..100 {
            if state.stats().connections < 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state.stats().connections, 1);
        let b = echo_client(TcpStream::connect(addr).await.unwrap()).await;
        let reply = b.call(context::current(), EchoReq::Echo(2)).await;
        assert!(matches!(reply, Ok(Reply::Ok(2))), "{reply:?}");
    }

    /// A handshaken connection on which the test writes raw frames.
    async fn authenticated(addr: SocketAddr) -> crate::link::Link<TcpStream> {
        let s = TcpStream::connect(addr).await.unwrap();
        crate::handshake::client(s, &KEY, "Echo", crate::link::Encryption::On)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_closes_its_connection_only() {
        let limits = ServerLimits::default().max_frame(64 * 1024);
        let (addr, state, _stop) = echo_server(limits).await;
        let mut s = authenticated(addr).await;
        s.write_all(&(64 * 1024 + 1u32).to_be_bytes())
            .await
            .unwrap();
        s.flush().await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(3)).await);
        assert_eq!(state.stats().frames_too_large, 1);
        echo_works(addr).await;
    }

    #[tokio::test]
    async fn partial_frames_share_the_budget_and_the_one_over_it_is_closed() {
        let limits = ServerLimits::default()
            .max_frame(64 * 1024)
            .max_buffered_bytes(150 * 1024);
        let (addr, state, _stop) = echo_server(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = authenticated(addr).await;
            s.write_all(&(64 * 1024u32).to_be_bytes()).await.unwrap();
            s.write_all(&[0u8; 1000]).await.unwrap();
            s.flush().await.unwrap();
            held.push(s);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Two fit in 150 KiB, the third does not.
        let mut third = held.pop().unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(3)).await);
        for s in &mut held {
            assert!(!closed_within(s, Duration::from_millis(50)).await);
        }
        let stats = state.stats();
        assert_eq!(stats.frames_over_budget, 1, "{stats:?}");
        assert_eq!(stats.buffered_bytes, 128 * 1024, "{stats:?}");
        // Small frames (received whole) do not need the budget.
        echo_works(addr).await;
        // Closing a connection gives its share back.
        drop(held.pop());
        for _ in 0..100 {
            if state.stats().buffered_bytes == 64 * 1024 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(state.stats().buffered_bytes, 64 * 1024);
        let mut again = authenticated(addr).await;
        again
            .write_all(&(64 * 1024u32).to_be_bytes())
            .await
            .unwrap();
        again.write_all(&[0u8; 1000]).await.unwrap();
        again.flush().await.unwrap();
        assert!(!closed_within(&mut again, Duration::from_millis(200)).await);
        assert_eq!(state.stats().buffered_bytes, 128 * 1024);
    }
}
