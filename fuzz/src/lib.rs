//! What the fuzz targets share: a service (a real `#[easy_rpc::service]` request and response
//! type), the chunked input format, an executor, and the encoders of the seed corpus
//! (`examples/seeds.rs`).
//!
//! Most targets read their input as chunks: `[kind u8][length u16, big-endian][body]`, the
//! last chunk's body running to the end of the input when it is shorter than announced. The
//! kind is taken modulo the number of kinds the target knows.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use serde::{Deserialize, Serialize};

/// A receipt (a struct in a response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The account charged.
    pub account: String,
    /// The amount, in cents.
    pub cents: u64,
    /// Tags of the charge.
    pub tags: Vec<String>,
}

/// Why a charge was refused (an enum in a response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BillingError {
    /// The amount must be positive.
    ZeroAmount,
    /// The account would go over its limit.
    OverLimit {
        /// The limit.
        limit: u64,
    },
}

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for BillingError {}

/// The service whose requests and responses the targets decode.
#[easy_rpc::service]
pub trait Billing {
    /// Strings and numbers.
    #[easy_rpc(idempotent)]
    async fn balance(account: String) -> u64;
    /// Several arguments of several kinds, a typed error.
    async fn charge(
        account: String,
        cents: u64,
        tags: Vec<String>,
        memo: Option<String>,
    ) -> Result<Receipt, BillingError>;
    /// Bytes and a tuple.
    async fn upload(name: String, data: Vec<u8>) -> (u32, Vec<u8>);
    /// No arguments.
    async fn ping();
}

/// The service name a client asks for.
pub const SERVICE: &str = "Billing";

/// One chunk of a chunked input.
#[derive(Debug)]
pub struct Chunk<'a> {
    /// The kind, modulo the kinds the target knows.
    pub kind: u8,
    /// The body.
    pub body: &'a [u8],
}

/// The chunks of `data`, with kinds modulo `kinds`.
pub fn chunks(mut data: &[u8], kinds: u8) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < 256 {
        let kind = data[0] % kinds;
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        let rest = &data[3..];
        let len = len.min(rest.len());
        out.push(Chunk {
            kind,
            body: &rest[..len],
        });
        data = &rest[len..];
    }
    out
}

/// What follows a handshake in the `*_key` targets: `wire` (bytes already on the wire), then
/// each chunk of kind 1 as a record sealed with `keys`, each chunk of kind 2 as raw bytes, in
/// input order. Returns the bytes to write to the peer.
pub async fn sealed_tail(
    wire: Vec<u8>,
    keys: snow::TransportState,
    chunks: &[Chunk<'_>],
) -> Vec<u8> {
    use easy_rpc::__fuzz as f;
    use tokio::io::AsyncWriteExt;
    let mut out = f::sealed(wire, keys);
    for c in chunks {
        match c.kind {
            1 => {
                out.write_all(c.body).await.unwrap();
                out.flush().await.unwrap();
            }
            2 => {
                let (mut wire, keys) = f::unseal(out);
                wire.extend_from_slice(c.body);
                out = f::sealed(wire, keys);
            }
            _ => {}
        }
    }
    f::unseal(out).0
}

/// Appends a chunk (for the seeds).
pub fn push_chunk(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A big-endian integer from the start of `b`, zero-padded.
pub fn be_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[8 - n..].copy_from_slice(&b[..n]);
    u64::from_be_bytes(w)
}

struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// Runs `fut` to completion on this thread, polling it until it is ready: the targets' I/O
/// is in memory, so it is always ready again after the other side moved. Panics if it is
/// still pending after many polls (a hang is a finding too).
pub fn run<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the future did not complete: stuck");
}

/// The bytes of a request frame as a client sends it: a u32 length and the postcard of a
/// tarpc `ClientMessage` (for the seeds).
pub fn request_frame(id: u64, req: BillingRequest) -> Vec<u8> {
    use easy_rpc::__private::tarpc::{ClientMessage, Request, context};
    let msg = ClientMessage::Request(Request {
        context: context::current(),
        id,
        message: req,
    });
    frame(&postcard::to_stdvec(&msg).expect("encodes"))
}

/// A u32 length and `body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}
