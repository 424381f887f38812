//! Entry points for the fuzz targets in `fuzz/` at the repository root (feature `fuzzing`):
//! thin wrappers that hand fuzzed bytes to the handshake, the sealed records and the framing
//! and codecs of both sides. Not part of the API: hidden, and only built with the feature.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::client::Outgoing;
use crate::codec::{ClientCodec, FrameCodec, ServerCodec, framing};
use crate::deadline::MAX_TIMEOUT;
use crate::error::RejectReason;
use crate::handshake::{self, Admission, HandshakeError};
use crate::link::{Encryption, Link};
use crate::reply::Reply;
use crate::server::{FrameBudget, ServerLimits};
use crate::service::ServiceDef;

pub use crate::sealed::Sealed;

/// The handshake's pre-shared key of the fixed session.
pub const PSK: [u8; 32] = [0x5a; 32];

/// How a handshake ended, for the fuzz targets.
fn outcome<T>(r: Result<T, HandshakeError>) -> Result<T, Option<RejectReason>> {
    r.map_err(|e| match e {
        HandshakeError::Rejected(r) => Some(r),
        HandshakeError::Io(_) => None,
    })
}

/// The server side of the handshake on `io` with the keys `keys`, admitting the services
/// `services`: the service and the sealed stream, or why it failed (`None`: I/O).
pub async fn handshake_server<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    keys: &[[u8; 32]],
    services: &[&str],
) -> Result<(String, Sealed<S>), Option<RejectReason>> {
    outcome(
        handshake::server(io, keys, Encryption::On, |service| {
            if services.contains(&service) {
                Admission::Accept
            } else {
                Admission::Reject(RejectReason::UnknownService {
                    service: service.to_owned(),
                })
            }
        })
        .await
        .map(|(service, link)| (service, link.into_sealed())),
    )
}

/// The client side of the handshake on `io` with `key`, for `service`.
pub async fn handshake_client<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    key: &[u8; 32],
    service: &str,
) -> Result<Sealed<S>, Option<RejectReason>> {
    outcome(
        handshake::client(io, key, service, Encryption::On)
            .await
            .map(Link::into_sealed),
    )
}

/// A Noise handshake state of the protocol with `psk` (the other side of a handshake).
pub fn noise(psk: &[u8; 32], initiator: bool) -> snow::HandshakeState {
    crate::noise::handshake_state(psk, initiator, Encryption::On)
}

/// The preamble each side sends first: magic and this build's protocol version.
pub fn preamble() -> [u8; 6] {
    handshake::preamble()
}

/// The server's answer accepting the client, as its msg2 carries it.
pub fn accept_verdict() -> Vec<u8> {
    postcard::to_stdvec(&handshake::Verdict::Accept).expect("a verdict encodes")
}

/// Both ends of a completed handshake with [`PSK`]: (initiator, responder).
pub fn session() -> (snow::TransportState, snow::TransportState) {
    let mut i = noise(&PSK, true);
    let mut r = noise(&PSK, false);
    let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(b"", &mut m).expect("msg1");
    r.read_message(&m[..n], &mut p).expect("msg1 opens");
    let n = r.write_message(b"", &mut m).expect("msg2");
    i.read_message(&m[..n], &mut p).expect("msg2 opens");
    (
        i.into_transport_mode().expect("a complete handshake"),
        r.into_transport_mode().expect("a complete handshake"),
    )
}

/// `io` sealed with `keys`.
pub fn sealed<S>(io: S, keys: snow::TransportState) -> Sealed<S> {
    Sealed::new(io, keys)
}

/// The stream and the keys of a sealed stream, back.
pub fn unseal<S>(sealed: Sealed<S>) -> (S, snow::TransportState) {
    sealed.into_parts()
}

/// Reads requests of service `S` from `io` as a server connection does: the server's framing
/// (frame limit `max_frame`, a budget of `budget` bytes for partial frames) and its codec.
/// Returns how many requests were read before the stream ended or failed. Checks what the
/// codec promises: no request's deadline is further than [`MAX_TIMEOUT`].
pub async fn read_requests<S: ServiceDef>(
    io: impl AsyncRead + AsyncWrite + Unpin,
    max_frame: usize,
    budget: usize,
) -> (usize, Option<io::Error>) {
    let budget = Arc::new(FrameBudget::new(budget));
    let framed = Framed::new(io, FrameCodec::new(max_frame, budget.clone()));
    let mut transport =
        tokio_serde::Framed::<_, ClientMessage<S::Req>, Response<Reply<S::Resp>>, _>::new(
            framed,
            ServerCodec::<S::Req, Reply<S::Resp>>::new(
                max_frame,
                crate::ServerLimits::default().max_clock_skew,
            ),
        );
    let mut n = 0;
    let end = loop {
        match transport.next().await {
            None => break None,
            Some(Err(e)) => break Some(e),
            Some(Ok(ClientMessage::Request(req))) => {
                let limit = Instant::now() + MAX_TIMEOUT;
                assert!(req.context.deadline <= limit, "a deadline over the cap");
                let _method = S::method(&req.message);
                n += 1;
            }
            Some(Ok(_)) => n += 1,
        }
    };
    drop(transport);
    assert_eq!(
        budget.used(),
        0,
        "a closed connection gives its budget back"
    );
    (n, end)
}

/// Reads responses of service `S` from `io` as a client connection does (its framing with
/// the frame limit `max_frame`, and its codec). Returns how many were read before the
/// stream ended or failed.
pub async fn read_responses<S: ServiceDef>(
    io: impl AsyncRead + AsyncWrite + Unpin,
    max_frame: usize,
) -> (usize, Option<io::Error>) {
    let framed = Framed::new(io, framing(max_frame));
    let mut transport = tokio_serde::Framed::<
        _,
        Response<Reply<S::Resp>>,
        ClientMessage<Arc<Outgoing<S::Req>>>,
        _,
    >::new(
        framed,
        ClientCodec::<Reply<S::Resp>, Arc<Outgoing<S::Req>>>::default(),
    );
    let mut n = 0;
    loop {
        match transport.next().await {
            None => return (n, None),
            Some(Err(e)) => return (n, Some(e)),
            Some(Ok(_)) => n += 1,
        }
    }
}

/// The server limits' environment reader over the variables `get` gives.
pub fn limits_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<ServerLimits>, crate::Error> {
    ServerLimits::from_vars(get)
}
