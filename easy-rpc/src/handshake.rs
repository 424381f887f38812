//! The connection handshake: protocol version, cluster name, mutual proof of the cluster
//! secret, and the service the connection will carry.
//!
//! ```text
//! client                                   server
//!   "ERPC" version ───────────────────────►  (a different version: both close;
//!   Hello{cluster, service, c_nonce} ─────►    the client reports WrongVersion)
//!                 ◄───────── "ERPC" version
//!                 ◄───── Challenge{s_nonce, s_proof} | Reject(WrongCluster)
//!   (checks s_proof: else WrongSecret)
//!   Proof{c_proof} ───────────────────────►  (checks c_proof, then the service)
//!                 ◄───── Accept | Reject(WrongSecret | UnknownService | Leaving)
//! ```
//!
//! Proofs are HMAC-SHA256 under a key derived from the cluster secret and name, over a label,
//! both nonces and the service name, so neither side can replay the other's proof. Frames are
//! a u16 length and a postcard message, at most 1 KiB. A peer that sends anything else is
//! disconnected.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::RejectReason;

/// The protocol version this build speaks: the framing, the handshake and the envelopes
/// around a service's messages (not a service's own shape, see ARCHITECTURE.md). Nodes of
/// different versions refuse each other's connections ([`RejectReason::WrongVersion`]).
///
/// - 1: the first release.
/// - 2: responses are an envelope that says whether the method ran ("not run: leaving" is a
///   typed answer, no longer a tarpc error with a marker string).
pub const PROTOCOL_VERSION: u16 = 2;
const MAGIC: [u8; 4] = *b"ERPC";
const MAX_HANDSHAKE_FRAME: usize = 1024;

#[derive(Serialize, Deserialize)]
enum Msg {
    Hello {
        cluster: String,
        service: String,
        nonce: [u8; 32],
    },
    Challenge {
        nonce: [u8; 32],
        proof: [u8; 32],
    },
    Proof {
        proof: [u8; 32],
    },
    Accept,
    Reject(RejectReason),
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The peer refused us, or (client side) proved it is not of our cluster.
    Rejected(RejectReason),
    /// I/O failed or the peer hung up.
    Io(std::io::Error),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn malformed() -> HandshakeError {
    HandshakeError::Rejected(RejectReason::Malformed)
}

async fn write_msg(io: &mut (impl AsyncWrite + Unpin), msg: &Msg) -> Result<(), HandshakeError> {
    let body = postcard::to_stdvec(msg).map_err(|_| malformed())?;
    let mut frame = Vec::with_capacity(2 + body.len());
    frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    io.write_all(&frame).await?;
    Ok(())
}

async fn read_msg(io: &mut (impl AsyncRead + Unpin)) -> Result<Msg, HandshakeError> {
    let len = io.read_u16().await? as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(malformed());
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf).map_err(|_| malformed())
}

async fn write_preamble(io: &mut (impl AsyncWrite + Unpin)) -> Result<(), HandshakeError> {
    let mut p = [0u8; 6];
    p[..4].copy_from_slice(&MAGIC);
    p[4..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    io.write_all(&p).await?;
    Ok(())
}

/// Reads the peer's preamble; returns its version.
async fn read_preamble(io: &mut (impl AsyncRead + Unpin)) -> Result<u16, HandshakeError> {
    let mut p = [0u8; 6];
    io.read_exact(&mut p).await?;
    if p[..4] != MAGIC {
        return Err(malformed());
    }
    Ok(u16::from_be_bytes([p[4], p[5]]))
}

/// The MAC over a proof's transcript: a label, both nonces, the service.
fn transcript(
    key: &[u8; 32],
    label: &[u8],
    c: &[u8; 32],
    s: &[u8; 32],
    service: &str,
) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(c);
    mac.update(s);
    mac.update(service.as_bytes());
    mac
}

fn proof(key: &[u8; 32], label: &[u8], c: &[u8; 32], s: &[u8; 32], service: &str) -> [u8; 32] {
    transcript(key, label, c, s, service)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a proof in constant time.
fn verify(
    key: &[u8; 32],
    label: &[u8],
    c: &[u8; 32],
    s: &[u8; 32],
    service: &str,
    got: &[u8; 32],
) -> bool {
    transcript(key, label, c, s, service)
        .verify_slice(got)
        .is_ok()
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::fill(&mut n[..]);
    n
}

/// The client side: asks for `service`. Ok means the server accepted and the stream now
/// carries that service.
pub(crate) async fn client(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    key: &[u8; 32],
    cluster: &str,
    service: &str,
) -> Result<(), HandshakeError> {
    let c_nonce = nonce();
    write_preamble(io).await?;
    write_msg(
        io,
        &Msg::Hello {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            nonce: c_nonce,
        },
    )
    .await?;
    io.flush().await?;
    let theirs = read_preamble(io).await?;
    if theirs != PROTOCOL_VERSION {
        return Err(HandshakeError::Rejected(RejectReason::WrongVersion {
            ours: PROTOCOL_VERSION,
            theirs,
        }));
    }
    let s_nonce = match read_msg(io).await? {
        Msg::Challenge { nonce, proof: p } => {
            if !verify(key, b"easy-rpc server", &c_nonce, &nonce, service, &p) {
                return Err(HandshakeError::Rejected(RejectReason::WrongSecret));
            }
            nonce
        }
        Msg::Reject(r) => return Err(HandshakeError::Rejected(r)),
        _ => return Err(malformed()),
    };
    write_msg(
        io,
        &Msg::Proof {
            proof: proof(key, b"easy-rpc client", &c_nonce, &s_nonce, service),
        },
    )
    .await?;
    io.flush().await?;
    match read_msg(io).await? {
        Msg::Accept => Ok(()),
        Msg::Reject(r) => Err(HandshakeError::Rejected(r)),
        _ => Err(malformed()),
    }
}

/// What the server decides about an authenticated peer's service.
pub(crate) enum Admission {
    /// Serve it.
    Accept,
    /// Refuse, with this reason.
    Reject(RejectReason),
}

/// The server side. `admit` is asked about the service once the client has proved the secret.
/// Returns the service name on success; on failure the client has been told why (when it
/// speaks the protocol) and the caller closes the stream.
pub(crate) async fn server(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    key: &[u8; 32],
    cluster: &str,
    admit: impl FnOnce(&str) -> Admission,
) -> Result<String, HandshakeError> {
    let theirs = read_preamble(io).await?;
    write_preamble(io).await?;
    if theirs != PROTOCOL_VERSION {
        io.flush().await?;
        return Err(HandshakeError::Rejected(RejectReason::WrongVersion {
            ours: PROTOCOL_VERSION,
            theirs,
        }));
    }
    let (their_cluster, service, c_nonce) = match read_msg(io).await? {
        Msg::Hello {
            cluster,
            service,
            nonce,
        } => (cluster, service, nonce),
        _ => return Err(malformed()),
    };
    if their_cluster != cluster {
        write_msg(
            io,
            &Msg::Reject(RejectReason::WrongCluster {
                theirs: cluster.to_owned(),
            }),
        )
        .await?;
        io.flush().await?;
        return Err(HandshakeError::Rejected(RejectReason::WrongCluster {
            theirs: their_cluster,
        }));
    }
    let s_nonce = nonce();
    write_msg(
        io,
        &Msg::Challenge {
            nonce: s_nonce,
            proof: proof(key, b"easy-rpc server", &c_nonce, &s_nonce, &service),
        },
    )
    .await?;
    io.flush().await?;
    let ok = match read_msg(io).await? {
        Msg::Proof { proof: p } => {
            verify(key, b"easy-rpc client", &c_nonce, &s_nonce, &service, &p)
        }
        _ => return Err(malformed()),
    };
    let verdict = if ok {
        admit(&service)
    } else {
        Admission::Reject(RejectReason::WrongSecret)
    };
    match verdict {
        Admission::Accept => {
            write_msg(io, &Msg::Accept).await?;
            io.flush().await?;
            Ok(service)
        }
        Admission::Reject(r) => {
            write_msg(io, &Msg::Reject(r.clone())).await?;
            io.flush().await?;
            Err(HandshakeError::Rejected(r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        ckey: [u8; 32],
        skey: [u8; 32],
        ccluster: &str,
        service: &str,
    ) -> (Result<(), HandshakeError>, Result<String, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let service = service.to_owned();
        let ccluster = ccluster.to_owned();
        let c = tokio::spawn(async move { client(&mut a, &ckey, &ccluster, &service).await });
        let s = server(&mut b, &skey, "prod", |svc| {
            if svc == "Billing" {
                Admission::Accept
            } else {
                Admission::Reject(RejectReason::UnknownService {
                    service: svc.to_owned(),
                })
            }
        })
        .await;
        (c.await.unwrap(), s)
    }

    #[tokio::test]
    async fn accepts_the_same_secret_and_cluster() {
        let (c, s) = run([1; 32], [1; 32], "prod", "Billing").await;
        assert!(c.is_ok());
        assert_eq!(s.unwrap(), "Billing");
    }

    #[tokio::test]
    async fn wrong_secret_is_caught_by_both_sides() {
        let (c, s) = run([1; 32], [2; 32], "prod", "Billing").await;
        // The client sees the server's proof fail first and gives up.
        assert!(matches!(
            c,
            Err(HandshakeError::Rejected(RejectReason::WrongSecret))
        ));
        assert!(s.is_err());
    }

    #[tokio::test]
    async fn wrong_cluster_and_unknown_service_are_told_to_the_client() {
        let (c, _) = run([1; 32], [1; 32], "staging", "Billing").await;
        assert!(
            matches!(c, Err(HandshakeError::Rejected(RejectReason::WrongCluster { ref theirs })) if theirs == "prod")
        );
        let (c, _) = run([1; 32], [1; 32], "prod", "Nope").await;
        assert!(
            matches!(c, Err(HandshakeError::Rejected(RejectReason::UnknownService { ref service })) if service == "Nope")
        );
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let s = server(&mut b, &[1; 32], "prod", |_| Admission::Accept).await;
        assert!(matches!(
            s,
            Err(HandshakeError::Rejected(RejectReason::Malformed))
        ));
    }
}
