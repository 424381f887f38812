//! The connection handshake: protocol version, then a Noise `NNpsk0` handshake whose
//! pre-shared key is the cluster's RPC key (derived from the cluster secret and the cluster
//! name), then the service the connection will carry. It leaves both sides with fresh
//! transport keys that seal every later byte ([`Sealed`]), or, between nodes that both opted
//! out of call encryption ([`Encryption::Off`]), with the TCP stream itself ([`Link::Plain`]).
//!
//! ```text
//! client                                     server
//!   "ERPC" version ─────────────────────────►  (a different version: it answers its own
//!   msg1 (psk, e) {service} ────────────────►   version and closes; the client reports
//!                 ◄─────────── "ERPC" version   WrongVersion)
//!                                              (no key of its ring opens msg1: it closes,
//!                                               nothing more sent)
//!                 ◄── msg2 (e, ee) {Accept | Reject(UnknownService | Leaving | Malformed
//!                                                   | EncryptionDiffers)}
//!   ═══════════ sealed records, both ways (see sealed.rs) ═══════════
//!   (both sides unencrypted: tarpc's frames on the stream as they are)
//! ```
//!
//! The Noise protocol is `Noise_NNpsk0_25519_AESGCM_BLAKE2s`, with the prologue
//! `"easy-rpc"`, the protocol version and, for unencrypted calls, one more byte (see
//! noise.rs). A server tries its ring's keys with its own prologue, then with the other
//! one: a msg1 that opens only with the other is a peer that holds the key but disagrees on
//! encryption, and is refused ([`RejectReason::EncryptionDiffers`], in a msg2 only that peer
//! opens). Whatever either side is set to, a connection is never carried in a mode it was
//! not set to. Only a peer holding a key of the server's ring can
//! make a msg1 the server opens, and only the server that opened it can make a msg2 the
//! client opens: a stranger, whatever it sends (a wrong secret, a wrong cluster name,
//! garbage), sees the server's preamble and then the connection close, the same bytes every
//! time; it learns neither the cluster name nor which check failed. A recorded msg1 replayed
//! gets a msg2 that only the original client could open. The Diffie-Hellman of the
//! ephemeral keys makes each connection's keys fresh and forward secret.
//!
//! Noise messages travel as a u16 length and the message, at most 1 KiB each.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::RejectReason;
use crate::keyring::Psk;
use crate::link::{Encryption, Link};
use crate::noise::handshake_state;
use crate::sealed::Sealed;

/// The protocol version this build speaks: the framing, the handshake and the envelopes
/// around a service's messages (not a service's own shape, see ARCHITECTURE.md). Nodes of
/// different versions refuse each other's connections ([`RejectReason::WrongVersion`]).
///
/// - 1: the first release.
/// - 2: responses are an envelope that says whether the method ran ("not run: leaving" is a
///   typed answer, no longer a tarpc error with a marker string).
/// - 3: a Noise `NNpsk0` handshake with the cluster key as pre-shared key replaces the
///   HMAC challenge and proof; the cluster name is no longer sent; every byte after the
///   handshake is sealed (AES-256-GCM records with keys fresh to the connection).
pub const PROTOCOL_VERSION: u16 = 3;
const MAGIC: [u8; 4] = *b"ERPC";
const MAX_HANDSHAKE_FRAME: usize = 1024;

/// The server's answer, inside msg2 (so only an authenticated client reads it).
#[derive(Serialize, Deserialize)]
pub(crate) enum Verdict {
    Accept,
    Reject(RejectReason),
}

/// The length a verdict is padded to, for a first message whose payload (the service name)
/// has `service_len` bytes: the longest verdict (`UnknownService` naming that service: two
/// variant tags, a length of at most 3 bytes, the name) fits. At most what msg2 can carry
/// (the frame limit less the ephemeral key and the tag).
fn padded_verdict_len(service_len: usize) -> usize {
    (service_len + 5).min(MAX_HANDSHAKE_FRAME - 32 - 16)
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The peer refused us, or (client side) did not prove that it holds our key.
    Rejected(RejectReason),
    /// I/O failed or the peer hung up (before a stranger could have been told anything).
    Io(std::io::Error),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn rejected(r: RejectReason) -> HandshakeError {
    HandshakeError::Rejected(r)
}

/// Appends a handshake frame (u16 length, then `msg`) to `out`.
fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Reads a handshake frame into `buf`; `None` if its length is over the limit.
async fn read_frame(
    io: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8; MAX_HANDSHAKE_FRAME],
) -> std::io::Result<Option<usize>> {
    let len = usize::from(io.read_u16().await?);
    if len > MAX_HANDSHAKE_FRAME {
        return Ok(None);
    }
    io.read_exact(&mut buf[..len]).await?;
    Ok(Some(len))
}

pub(crate) fn preamble() -> [u8; 6] {
    let mut p = [0u8; 6];
    p[..4].copy_from_slice(&MAGIC);
    p[4..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    p
}

/// Reads the peer's preamble; returns its version, or `None` if it is not ours at all.
async fn read_preamble(io: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<u16>> {
    let mut p = [0u8; 6];
    io.read_exact(&mut p).await?;
    if p[..4] != MAGIC {
        return Ok(None);
    }
    Ok(Some(u16::from_be_bytes([p[4], p[5]])))
}

/// Whether an I/O error during the client's wait for msg2 is the server closing on it (what a
/// server that could not authenticate us does).
fn closed_on_us(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe)
}

/// The stream after a completed handshake: sealed with its transport keys, or itself.
fn link<S>(io: S, keys: snow::TransportState, encryption: Encryption) -> Link<S> {
    match encryption {
        Encryption::On => Link::Sealed(Sealed::new(io, keys)),
        Encryption::Off => Link::Plain(io),
    }
}

/// The client side: asks for `service`, proving `key`, with calls sealed or not as
/// `encryption` says (the server must say the same). On success the stream now carries that
/// service.
pub(crate) async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    key: &Psk,
    service: &str,
    encryption: Encryption,
) -> Result<Link<S>, HandshakeError> {
    let mut hs = handshake_state(key, true, encryption);
    let mut msg = [0u8; MAX_HANDSHAKE_FRAME];
    let n = hs
        .write_message(service.as_bytes(), &mut msg)
        .map_err(|_| rejected(RejectReason::Malformed))?;
    let mut out = Vec::with_capacity(6 + 2 + n);
    out.extend_from_slice(&preamble());
    frame(&mut out, &msg[..n]);
    io.write_all(&out).await?;
    io.flush().await?;

    let unauthenticated = || rejected(RejectReason::Unauthenticated);
    let theirs = match read_preamble(&mut io).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(unauthenticated()),
        Err(e) => return Err(e.into()),
    };
    if theirs != PROTOCOL_VERSION {
        return Err(rejected(RejectReason::WrongVersion {
            ours: PROTOCOL_VERSION,
            theirs,
        }));
    }
    let len = match read_frame(&mut io, &mut msg).await {
        Ok(Some(len)) => len,
        Ok(None) => return Err(unauthenticated()),
        Err(e) if closed_on_us(&e) => return Err(unauthenticated()),
        Err(e) => return Err(e.into()),
    };
    let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
    let n = hs
        .read_message(&msg[..len], &mut payload)
        .map_err(|_| unauthenticated())?;
    match postcard::from_bytes(&payload[..n]) {
        Ok(Verdict::Accept) => {
            let keys = hs.into_transport_mode().map_err(|_| unauthenticated())?;
            Ok(link(io, keys, encryption))
        }
        Ok(Verdict::Reject(r)) => Err(rejected(r)),
        Err(_) => Err(rejected(RejectReason::Malformed)),
    }
}

/// What the server decides about an authenticated peer's service.
pub(crate) enum Admission {
    /// Serve it.
    Accept,
    /// Refuse, with this reason.
    Reject(RejectReason),
}

#[cfg(test)]
impl Admission {
    fn is_accept(&self) -> bool {
        matches!(self, Admission::Accept)
    }
}

/// The server side. `keys` are tried in order on the client's first message, with the
/// prologue of `encryption`, then with the other one (to tell a client that holds the key but
/// disagrees on encryption why it is refused); `admit` is asked about the service once the
/// client has proved one of them in agreement. Returns the service name and the stream
/// (sealed or not, as `encryption` says) on success. On failure an authenticated client has
/// been told why; a stranger has been told nothing (only the preamble); the caller closes the
/// stream.
pub(crate) async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    keys: &[Psk],
    encryption: Encryption,
    admit: impl FnOnce(&str) -> Admission,
) -> Result<(String, Link<S>), HandshakeError> {
    let Some(theirs) = read_preamble(&mut io).await? else {
        return Err(rejected(RejectReason::Malformed));
    };
    io.write_all(&preamble()).await?;
    io.flush().await?;
    if theirs != PROTOCOL_VERSION {
        return Err(rejected(RejectReason::WrongVersion {
            ours: PROTOCOL_VERSION,
            theirs,
        }));
    }
    let mut msg = [0u8; MAX_HANDSHAKE_FRAME];
    let Some(len) = read_frame(&mut io, &mut msg).await? else {
        return Err(rejected(RejectReason::Malformed));
    };
    let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
    let mut open = |mode: Encryption| {
        keys.iter().find_map(|key| {
            let mut hs = handshake_state(key, false, mode);
            hs.read_message(&msg[..len], &mut payload)
                .ok()
                .map(|n| (hs, n))
        })
    };
    let (mut hs, n, agreed) = match open(encryption) {
        Some((hs, n)) => (hs, n, true),
        None => match open(encryption.other()) {
            Some((hs, n)) => (hs, n, false),
            None => return Err(rejected(RejectReason::Unauthenticated)),
        },
    };
    // Authenticated from here on: the client may be told why it is refused.
    let verdict = if !agreed {
        Err(RejectReason::EncryptionDiffers {
            server_encrypts: encryption == Encryption::On,
        })
    } else {
        match std::str::from_utf8(&payload[..n]) {
            Ok(service) => match admit(service) {
                Admission::Accept => Ok(service.to_owned()),
                Admission::Reject(r) => Err(r),
            },
            Err(_) => Err(RejectReason::Malformed),
        }
    };
    let answer = match &verdict {
        Ok(_) => Verdict::Accept,
        Err(r) => Verdict::Reject(r.clone()),
    };
    let mut body = postcard::to_stdvec(&answer).map_err(|_| rejected(RejectReason::Malformed))?;
    // Every verdict to the same first message has the same length (the client's decoder
    // ignores the zeros after it): whoever replays a recorded first message cannot tell an
    // accept from a refusal, or one refusal from another, by msg2's size.
    body.resize(body.len().max(padded_verdict_len(n)), 0);
    let n = hs
        .write_message(&body, &mut msg)
        .map_err(|_| rejected(RejectReason::Malformed))?;
    let mut out = Vec::with_capacity(2 + n);
    frame(&mut out, &msg[..n]);
    io.write_all(&out).await?;
    io.flush().await?;
    match verdict {
        Ok(service) => {
            let keys = hs
                .into_transport_mode()
                .map_err(|_| rejected(RejectReason::Malformed))?;
            Ok((service, link(io, keys, encryption)))
        }
        Err(r) => Err(rejected(r)),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;

    use super::*;

    type ClientEnd = Result<Link<DuplexStream>, HandshakeError>;
    type ServerEnd = Result<(String, Link<DuplexStream>), HandshakeError>;

    async fn run(ckey: Psk, skeys: &[Psk], service: &str) -> (ClientEnd, ServerEnd) {
        run_in(ckey, Encryption::On, skeys, Encryption::On, service).await
    }

    /// A handshake between a client of `cmode` and a server of `smode`.
    async fn run_in(
        ckey: Psk,
        cmode: Encryption,
        skeys: &[Psk],
        smode: Encryption,
        service: &str,
    ) -> (ClientEnd, ServerEnd) {
        let (a, b) = tokio::io::duplex(4096);
        let service = service.to_owned();
        let c = tokio::spawn(async move { client(a, &ckey, &service, cmode).await });
        let s = server(b, skeys, smode, |svc| {
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
    async fn the_same_key_opens_a_sealed_connection() {
        let (c, s) = run([1; 32], &[[1; 32]], "Billing").await;
        let mut c = c.unwrap();
        let (service, mut s) = s.unwrap();
        assert_eq!(service, "Billing");
        c.write_all(b"ping").await.unwrap();
        c.flush().await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        s.write_all(b"pong").await.unwrap();
        s.flush().await.unwrap();
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    /// Reads `b"ping"` sent on `c`, answers `b"pong"`, and returns what a capture of the
    /// client's bytes shows: whether the ping crossed in clear.
    async fn ping_in_clear(mode: Encryption) -> bool {
        let (a, raw_server) = tokio::io::duplex(4096);
        let (tap_in, b) = tokio::io::duplex(4096);
        // A tap between the client and the server that keeps what the client sends.
        let tap = tokio::spawn(async move {
            let (mut from_client, mut to_client) = tokio::io::split(raw_server);
            let (mut from_server, mut to_server) = tokio::io::split(tap_in);
            let up = async {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let n = from_client.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown().await;
                seen
            };
            let down = async {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                let _ = to_client.shutdown().await;
            };
            let (seen, ()) = tokio::join!(up, down);
            seen
        });
        let c = tokio::spawn(async move { client(a, &[1; 32], "Billing", mode).await });
        let (service, mut s) = server(b, &[[1; 32]], mode, |_| Admission::Accept)
            .await
            .unwrap();
        assert_eq!(service, "Billing");
        let mut c = c.await.unwrap().unwrap();
        assert_eq!(c.is_sealed(), mode == Encryption::On);
        assert_eq!(s.is_sealed(), mode == Encryption::On);
        c.write_all(b"ping-0123456789").await.unwrap();
        c.flush().await.unwrap();
        let mut got = [0u8; 15];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping-0123456789");
        s.write_all(b"pong").await.unwrap();
        s.flush().await.unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
        drop((c, s));
        let seen = tap.await.unwrap();
        seen.windows(15).any(|w| w == b"ping-0123456789")
    }

    #[tokio::test]
    async fn unencrypted_calls_cross_in_clear_and_sealed_ones_do_not() {
        assert!(ping_in_clear(Encryption::Off).await);
        assert!(!ping_in_clear(Encryption::On).await);
    }

    #[tokio::test]
    async fn a_disagreement_on_encryption_is_refused_and_told_only_to_a_key_holder() {
        for (cmode, smode) in [
            (Encryption::Off, Encryption::On),
            (Encryption::On, Encryption::Off),
        ] {
            let (c, s) = run_in([1; 32], cmode, &[[2; 32], [1; 32]], smode, "Billing").await;
            let told = RejectReason::EncryptionDiffers {
                server_encrypts: smode == Encryption::On,
            };
            match (c, s) {
                (Err(HandshakeError::Rejected(theirs)), Err(HandshakeError::Rejected(ours))) => {
                    assert_eq!(theirs, told, "client {cmode:?}");
                    assert_eq!(ours, told, "server {smode:?}");
                }
                (c, s) => panic!("client {cmode:?} server {smode:?}: {c:?} / {s:?}"),
            }
            // Without the key it is a stranger like any other: told nothing.
            let (c, s) = run_in([7; 32], cmode, &[[1; 32]], smode, "Billing").await;
            assert!(matches!(
                c,
                Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
            ));
            assert!(matches!(
                s,
                Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
            ));
        }
    }

    #[tokio::test]
    async fn every_key_of_the_ring_is_accepted() {
        let ring = [[2; 32], [1; 32]];
        for key in ring {
            let (c, s) = run(key, &ring, "Billing").await;
            assert!(c.is_ok());
            assert_eq!(s.unwrap().0, "Billing");
        }
    }

    #[tokio::test]
    async fn a_wrong_key_is_unauthenticated_on_both_sides() {
        let (c, s) = run([1; 32], &[[2; 32], [3; 32]], "Billing").await;
        assert!(matches!(
            c,
            Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
        ));
        assert!(matches!(
            s,
            Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
        ));
    }

    /// What a stranger receives from the server, whatever it sent after a valid preamble.
    async fn server_bytes_for(first: Vec<u8>) -> Vec<u8> {
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(&first).await.unwrap();
        let s = tokio::spawn(async move {
            let r = server(b, &[[1; 32]], Encryption::On, |_| Admission::Accept).await;
            assert!(r.is_err());
        });
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        s.await.unwrap();
        got
    }

    #[tokio::test]
    async fn strangers_all_get_the_same_bytes() {
        let msg1 = |key: Psk| {
            let mut hs = handshake_state(&key, true, Encryption::On);
            let mut m = [0u8; 256];
            let n = hs.write_message(b"Billing", &mut m).unwrap();
            let mut out = preamble().to_vec();
            frame(&mut out, &m[..n]);
            out
        };
        let wrong_key = server_bytes_for(msg1([9; 32])).await;
        let other_wrong_key = server_bytes_for(msg1([8; 32])).await;
        let mut garbage = preamble().to_vec();
        frame(&mut garbage, &[0x55; 60]);
        let garbage = server_bytes_for(garbage).await;
        assert_eq!(wrong_key, preamble());
        assert_eq!(other_wrong_key, wrong_key);
        assert_eq!(garbage, wrong_key);
    }

    #[tokio::test]
    async fn unknown_service_is_told_only_to_an_authenticated_client() {
        let (c, _) = run([1; 32], &[[1; 32]], "Nope").await;
        assert!(
            matches!(c, Err(HandshakeError::Rejected(RejectReason::UnknownService { ref service })) if service == "Nope")
        );
        let (c, _) = run([7; 32], &[[1; 32]], "Nope").await;
        assert!(matches!(
            c,
            Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
        ));
    }

    /// The server's msg2 for `service`, with `admission`, as bytes on the wire (after the
    /// preamble): what anyone who replays a recorded first message sees.
    async fn msg2_for(service: &str, admission: Admission) -> Vec<u8> {
        msg2_of(service, admission, Encryption::On).await
    }

    /// [`msg2_for`] from a server whose calls are sealed or not as `smode` says (the client's
    /// are).
    async fn msg2_of(service: &str, admission: Admission, smode: Encryption) -> Vec<u8> {
        let mut hs = handshake_state(&[1; 32], true, Encryption::On);
        let mut m = [0u8; 1024];
        let n = hs.write_message(service.as_bytes(), &mut m).unwrap();
        let mut first = preamble().to_vec();
        frame(&mut first, &m[..n]);
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(&first).await.unwrap();
        let accepted = admission.is_accept() && smode == Encryption::On;
        let s = tokio::spawn(async move { server(b, &[[1; 32]], smode, |_| admission).await });
        let mut got = Vec::new();
        if accepted {
            // An accepted connection stays open: read the preamble and msg2's frame.
            let mut head = [0u8; 8];
            a.read_exact(&mut head).await.unwrap();
            let len = usize::from(u16::from_be_bytes([head[6], head[7]]));
            got.resize(len, 0);
            a.read_exact(&mut got).await.unwrap();
            got.splice(0..0, head[6..].iter().copied());
        } else {
            a.read_to_end(&mut got).await.unwrap();
            got.drain(..6);
        }
        drop(a);
        let _ = s.await.unwrap();
        got
    }

    #[tokio::test]
    async fn every_verdict_to_one_first_message_has_the_same_length() {
        for service in ["Billing", "S", "a-rather-long-service-name:with/separators"] {
            let accept = msg2_for(service, Admission::Accept).await;
            let leaving = msg2_for(service, Admission::Reject(RejectReason::Leaving)).await;
            let unknown = msg2_for(
                service,
                Admission::Reject(RejectReason::UnknownService {
                    service: service.to_owned(),
                }),
            )
            .await;
            let differs = msg2_of(service, Admission::Accept, Encryption::Off).await;
            assert_eq!(accept.len(), leaving.len(), "{service}");
            assert_eq!(accept.len(), unknown.len(), "{service}");
            assert_eq!(accept.len(), differs.len(), "{service}");
            assert_ne!(accept, leaving, "sealed differently");
        }
        // The longest verdict still fits: a refusal naming the service it was asked for.
        let (c, _) = run([1; 32], &[[1; 32]], &"n".repeat(900)).await;
        assert!(matches!(
            c,
            Err(HandshakeError::Rejected(RejectReason::UnknownService { ref service })) if service.len() == 900
        ));
    }

    #[tokio::test]
    async fn another_version_is_reported_to_the_client() {
        let (mut a, b) = tokio::io::duplex(4096);
        let s = tokio::spawn(async move {
            server(b, &[[1; 32]], Encryption::On, |_| Admission::Accept).await
        });
        a.write_all(b"ERPC\x00\x02").await.unwrap();
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, preamble());
        assert!(matches!(
            s.await.unwrap(),
            Err(HandshakeError::Rejected(RejectReason::WrongVersion {
                theirs: 2,
                ..
            }))
        ));
        // The client side: a server of another version answers its preamble and closes.
        let (a, mut b) = tokio::io::duplex(4096);
        let c = tokio::spawn(async move { client(a, &[1; 32], "Billing", Encryption::On).await });
        let mut theirs = [0u8; 6];
        b.read_exact(&mut theirs).await.unwrap();
        b.write_all(b"ERPC\x00\x09").await.unwrap();
        drop(b);
        assert!(matches!(
            c.await.unwrap(),
            Err(HandshakeError::Rejected(RejectReason::WrongVersion {
                theirs: 9,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn garbage_is_malformed_and_gets_nothing() {
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let s = server(b, &[[1; 32]], Encryption::On, |_| Admission::Accept).await;
        assert!(matches!(
            s,
            Err(HandshakeError::Rejected(RejectReason::Malformed))
        ));
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        // A frame over the limit.
        let (mut a, b) = tokio::io::duplex(4096);
        let mut bytes = preamble().to_vec();
        bytes.extend_from_slice(&u16::MAX.to_be_bytes());
        a.write_all(&bytes).await.unwrap();
        let s = server(b, &[[1; 32]], Encryption::On, |_| Admission::Accept).await;
        assert!(matches!(
            s,
            Err(HandshakeError::Rejected(RejectReason::Malformed))
        ));
    }

    #[tokio::test]
    async fn a_client_facing_a_non_easy_rpc_server_is_unauthenticated() {
        let (a, mut b) = tokio::io::duplex(4096);
        let c = tokio::spawn(async move { client(a, &[1; 32], "Billing", Encryption::On).await });
        let mut theirs = [0u8; 6];
        b.read_exact(&mut theirs).await.unwrap();
        b.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        drop(b);
        assert!(matches!(
            c.await.unwrap(),
            Err(HandshakeError::Rejected(RejectReason::Unauthenticated))
        ));
    }
}
