//! The message codec: postcard (a maintained, compact serde format) inside length-delimited
//! frames, and the server's framing ([`FrameCodec`]), which bounds each frame and the memory
//! that partially received frames hold across the node's connections.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tarpc::{ClientMessage, Response};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::deadline::MAX_TIMEOUT;
use crate::reply::Reply;
use crate::server::FrameBudget;

/// The bytes of a frame's header: its length, a big-endian u32 (tokio-util's
/// `LengthDelimitedCodec` defaults, which the client side uses).
const HEAD: usize = 4;

/// The read buffer a connection keeps between frames; a larger one (grown for a large frame)
/// is dropped with that frame.
const KEEP_BUFFER: usize = 64 * 1024;

/// Marks the item types without owning them (and keeps the codec `Send + Sync`).
type Items<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;

/// Room a codec's [`WriteBuffer`] makes before each message (most messages are smaller; a
/// larger one grows the buffer as it is written).
const WRITE_ROOM: usize = 256;

/// The messages a codec writes, serialized into one buffer that the codec keeps, each handed
/// out as a `Bytes` view of it: no allocation per message once the buffer is large enough.
///
/// A message serialized into a fresh `Vec` (postcard's `to_stdvec`) grows it two or three
/// times, and `Bytes::from` such a `Vec` allocates once more, about 1,300 instructions per
/// message; the framing copies the bytes into the connection's write buffer and drops them at
/// once, so the next message finds this buffer unshared and writes over the same memory.
#[derive(Debug, Default)]
struct WriteBuffer(BytesMut);

/// Postcard's output, appended to a [`WriteBuffer`]'s bytes.
struct Append<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.put_u8(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl WriteBuffer {
    /// Appends `item` in postcard to the message being written; on an error, drops what the
    /// message had.
    fn put<T: Serialize + ?Sized>(&mut self, item: &T) -> io::Result<()> {
        self.0.reserve(WRITE_ROOM);
        postcard::serialize_with_flavor(item, Append(&mut self.0)).map_err(|e| {
            self.clear();
            io::Error::new(io::ErrorKind::InvalidData, e)
        })
    }

    /// Appends raw bytes to the message being written.
    fn extend(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// The length of the message being written.
    fn len(&self) -> usize {
        self.0.len()
    }

    /// Drops the message being written, and the buffer with it if the message grew it past
    /// [`KEEP_BUFFER`] (a response over the frame limit is dropped this way).
    fn clear(&mut self) {
        if self.0.capacity() > KEEP_BUFFER {
            self.0 = BytesMut::new();
        } else {
            self.0.clear();
        }
    }

    /// The message written, as `Bytes`; the buffer then starts the next one. A buffer that
    /// grew past [`KEEP_BUFFER`] for a large message goes with it.
    fn take(&mut self) -> Bytes {
        let message = if self.0.len() > KEEP_BUFFER {
            std::mem::take(&mut self.0)
        } else {
            self.0.split()
        };
        message.freeze()
    }
}

/// The client's codec: writes requests (`ClientMessage<Req>`) with postcard, each followed by
/// the wall-clock time it is written at ([`SENT_AT`] bytes), and reads responses
/// (`Response<Resp>`).
///
/// tarpc sends a request's deadline as the time left when it is written, which the server
/// turns into `arrival + time left`: a request that waited in a stopped server's socket would
/// get its whole time again on arrival. The time it was sent lets the server take the time in
/// transit off (see [`ServerCodec`]). A server of an earlier version reads the message and
/// ignores the bytes after it (postcard reads a message by its own lengths).
pub(crate) struct ClientCodec<Resp, Req> {
    out: WriteBuffer,
    items: Items<Response<Resp>, ClientMessage<Req>>,
}

impl<Resp, Req> Default for ClientCodec<Resp, Req> {
    fn default() -> Self {
        ClientCodec {
            out: WriteBuffer::default(),
            items: PhantomData,
        }
    }
}

/// The bytes after a request: when the client wrote it, in microseconds since the Unix
/// epoch, little-endian.
pub(crate) const SENT_AT: usize = 8;

/// The wall clock in microseconds since the Unix epoch (0 before it).
fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl<Resp: DeserializeOwned, Req> tokio_serde::Deserializer<Response<Resp>>
    for ClientCodec<Resp, Req>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Response<Resp>, io::Error> {
        postcard::from_bytes(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Resp, Req: Serialize> tokio_serde::Serializer<ClientMessage<Req>> for ClientCodec<Resp, Req> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &ClientMessage<Req>) -> Result<Bytes, io::Error> {
        let out = &mut self.get_mut().out;
        out.put(item)?;
        if matches!(item, ClientMessage::Request(_)) {
            out.extend(&wall_micros().to_le_bytes());
        }
        Ok(out.take())
    }
}

/// A request as the server reads it: the request, and the trace context its caller sent.
///
/// tarpc hands the server's `Serve` a context whose span id it replaced: with the id of its
/// own span of the request, or, when that span is off, of a child it made up. The caller's
/// span, the parent of the request's `serve` span, would be lost; the codec keeps it here.
/// Decodes as the request alone: nothing more travels.
///
/// Boxed, and only when the caller sent one (a trace id, or "sampled"): inline, the context
/// (a `u128` and more) made every request's future on the server larger and more aligned, and
/// cost about 900 instructions per request in copies and in the allocator. Even boxed it costs
/// about 500, so only the connections opened while a subscriber wants the spans of requests
/// read their requests this way (`served.rs`, `TracedServe`); the others read the request
/// alone.
#[derive(Debug)]
pub(crate) struct Incoming<R> {
    pub(crate) req: R,
    /// The trace context of the request as the caller sent it, if it sent one.
    pub(crate) caller: Option<Box<tarpc::trace::Context>>,
}

impl<'de, R: Deserialize<'de>> Deserialize<'de> for Incoming<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        R::deserialize(deserializer).map(|req| Incoming { req, caller: None })
    }
}

/// What [`Incoming::caller`] keeps of a request's trace context `sent`: nothing when it
/// carries no trace (a zero trace id, unsampled: the caller traces nothing).
fn caller_of(sent: tarpc::trace::Context) -> Option<Box<tarpc::trace::Context>> {
    let untraced = sent.trace_id.is_none()
        && sent.sampling_decision == tarpc::trace::SamplingDecision::Unsampled;
    (!untraced).then(|| Box::new(sent))
}

impl<R: tarpc::RequestName> tarpc::RequestName for Incoming<R> {
    fn name(&self) -> &str {
        self.req.name()
    }
}

/// The server's codec: reads requests (`ClientMessage<Req>`), writes responses
/// (`Response<Reply<R>>`) with postcard, but
/// - first caps the deadline a request carries at [`MAX_TIMEOUT`]: tarpc turns it into
///   `Instant::now() + deadline` and puts it in a timer wheel that holds about two years, both
///   of which would panic on a peer's huge value;
/// - takes the time a request spent in transit, beyond `max_clock_skew`, off its deadline,
///   from the time the client wrote it ([`ClientCodec`]): a request that reached the node after
///   its caller's deadline gets a deadline in the past, and is not started;
/// - answers a response that would not fit the frame limit with [`Reply::Failed`] saying so,
///   for that request only: the framing would refuse it, which would end the connection and
///   every call on it;
/// - keeps the trace context the caller sent with each request ([`Incoming`]).
pub(crate) struct ServerCodec<Req, Resp> {
    max_frame: usize,
    max_clock_skew: Duration,
    out: WriteBuffer,
    items: Items<ClientMessage<Req>, Response<Resp>>,
}

impl<Req, Resp> ServerCodec<Req, Resp> {
    /// A codec whose responses fit frames of `max_frame` bytes, allowing clocks ahead of a
    /// caller's by `max_clock_skew`.
    pub(crate) fn new(max_frame: usize, max_clock_skew: Duration) -> Self {
        // Fixed before any request is decoded (see `expired_mark`).
        let _ = expired_mark();
        ServerCodec {
            max_frame,
            max_clock_skew,
            out: WriteBuffer::default(),
            items: PhantomData,
        }
    }
}

impl<Req: DeserializeOwned, Resp> tokio_serde::Deserializer<ClientMessage<Incoming<Req>>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;

    fn deserialize(
        self: Pin<&mut Self>,
        src: &BytesMut,
    ) -> Result<ClientMessage<Incoming<Req>>, io::Error> {
        let mut message = self.read::<Incoming<Req>>(src)?;
        if let ClientMessage::Request(request) = &mut message {
            request.message.caller = caller_of(request.context.trace_context);
        }
        Ok(message)
    }
}

impl<Req: DeserializeOwned, Resp> tokio_serde::Deserializer<ClientMessage<Req>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<ClientMessage<Req>, io::Error> {
        self.read::<Req>(src)
    }
}

impl<Req, Resp> ServerCodec<Req, Resp> {
    /// Reads a client message whose requests decode as `R` (the request, or an [`Incoming`]
    /// one): its deadline capped and shortened by the time in transit.
    fn read<R: DeserializeOwned>(&self, src: &BytesMut) -> Result<ClientMessage<R>, io::Error> {
        let frame = clamp_deadline(src);
        let (mut message, rest) = postcard::take_from_bytes::<ClientMessage<R>>(&frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let ClientMessage::Request(request) = &mut message
            && let Ok(sent) = <[u8; SENT_AT]>::try_from(rest)
        {
            let transit =
                Duration::from_micros(wall_micros().saturating_sub(u64::from_le_bytes(sent)));
            if let Some(late) = transit
                .checked_sub(self.max_clock_skew)
                .filter(|late| !late.is_zero())
            {
                request.context.deadline = late_deadline(&frame, request.context.deadline, late);
            }
        }
        Ok(message)
    }
}

/// A request's deadline (`arrival + time left`, `frame` being the request) with the time it
/// spent in transit beyond the clock-skew allowance, `late`, taken off; [`expired_mark`] if
/// that leaves no time.
fn late_deadline(frame: &[u8], deadline: Instant, late: Duration) -> Instant {
    let left = match postcard::take_from_bytes::<Head>(frame) {
        Ok((Head::Request(left), _)) => left,
        _ => Duration::ZERO,
    };
    if late >= left {
        return expired_mark();
    }
    deadline.checked_sub(late).unwrap_or_else(expired_mark)
}

/// The deadline the server codec gives a request that reached this node after its caller's
/// deadline: an instant taken when the first server codec was made, earlier than any deadline
/// a request decoded since can have, so that checking for it needs no clock read.
pub(crate) fn expired_mark() -> Instant {
    static MARK: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *MARK.get_or_init(Instant::now)
}

/// Whether the server codec found `deadline`'s request expired on arrival ([`expired_mark`]).
#[inline]
pub(crate) fn is_expired(deadline: Instant) -> bool {
    deadline <= expired_mark()
}

impl<Req, R: Serialize> tokio_serde::Serializer<Response<Reply<R>>> for ServerCodec<Req, Reply<R>> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &Response<Reply<R>>) -> Result<Bytes, io::Error> {
        let this = self.get_mut();
        this.out.put(item)?;
        let len = this.out.len();
        if len <= this.max_frame {
            return Ok(this.out.take());
        }
        this.out.clear();
        let failed = Response::<Reply<R>> {
            request_id: item.request_id,
            message: Ok(Reply::Failed(format!(
                "the response ({len} bytes) is over the frame limit ({} bytes)",
                this.max_frame
            ))),
        };
        this.out.put(&failed)?;
        Ok(this.out.take())
    }
}

/// The start of a `ClientMessage` in postcard: the variant, then (for a request) its
/// context's first field, the deadline as time left.
#[derive(Deserialize)]
enum Head {
    Request(Duration),
    Cancel,
}

/// `frame` with a request's deadline capped at [`MAX_TIMEOUT`] (a copy only when it was
/// over).
fn clamp_deadline(frame: &[u8]) -> Cow<'_, [u8]> {
    match postcard::take_from_bytes::<Head>(frame) {
        Ok((Head::Request(left), rest)) if left > MAX_TIMEOUT => {
            // Variant 0 is one byte; the capped deadline, then the rest as it was.
            let mut capped = vec![0u8];
            capped.extend_from_slice(
                &postcard::to_stdvec(&MAX_TIMEOUT).expect("a Duration always encodes"),
            );
            capped.extend_from_slice(rest);
            Cow::Owned(capped)
        }
        _ => Cow::Borrowed(frame),
    }
}

/// Length-delimited framing with the frame limit `max_frame` (the client side of a
/// connection: tarpc's transport takes this codec).
pub(crate) fn framing(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

/// The server side's framing: the same frames as [`framing`], read with two bounds.
///
/// - A frame whose header announces more than `max_frame` bytes closes the connection (an
///   `InvalidData` error), before anything is allocated for it.
/// - A frame that is not received whole in one read takes its announced length from the
///   node's [`FrameBudget`] until it is complete (or the connection closes); if the budget
///   cannot cover it, the connection is closed at once (an `OutOfMemory` error). Closing
///   rather than waiting keeps the memory bound without letting peers that hold partial
///   frames stall the others, and never leaves a connection stuck; the caller sees its
///   connection lost, as when the node restarts.
///
/// Frames received whole (the common case for small calls) never touch the budget: no atomic
/// operation, no lock, no allocation beyond tokio-util's own.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    max_frame: usize,
    budget: Arc<FrameBudget>,
    /// The length of the frame being read, once its header is in.
    want: Option<usize>,
    /// What this connection holds of the budget now (the frame being read, or 0).
    held: usize,
    /// Writes frames (tokio-util's codec, with the same limit).
    encoder: LengthDelimitedCodec,
}

impl FrameCodec {
    pub(crate) fn new(max_frame: usize, budget: Arc<FrameBudget>) -> Self {
        FrameCodec {
            max_frame,
            budget,
            want: None,
            held: 0,
            encoder: framing(max_frame),
        }
    }

    fn release(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
            self.held = 0;
        }
    }
}

impl Drop for FrameCodec {
    fn drop(&mut self) {
        self.release();
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let n = match self.want {
            Some(n) => n,
            None => {
                let Some(head) = src.get(..HEAD) else {
                    return Ok(None);
                };
                let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                if n > self.max_frame {
                    self.budget.count_too_large();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a frame of {n} bytes is over the limit of {} bytes",
                            self.max_frame
                        ),
                    ));
                }
                src.advance(HEAD);
                self.want = Some(n);
                n
            }
        };
        if src.len() >= n {
            self.want = None;
            self.release();
            let frame = src.split_to(n);
            if src.capacity() > KEEP_BUFFER {
                // The buffer grew for a large frame: let it go with the frame instead of
                // keeping it (unaccounted) for the connection's life.
                *src = BytesMut::from(&src[..]);
            }
            return Ok(Some(frame));
        }
        if self.held == 0 && n > 0 {
            if !self.budget.try_take(n) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "a frame of {n} bytes does not fit in what is left of the node's budget \
                         for partially received frames"
                    ),
                ));
            }
            self.held = n;
            src.reserve(n - src.len());
        }
        Ok(None)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        self.encoder.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tarpc::{Request, context};

    use super::*;

    fn request(message: u32) -> Vec<u8> {
        let msg = ClientMessage::Request(Request {
            context: context::current(),
            id: 9,
            message,
        });
        postcard::to_stdvec(&msg).unwrap()
    }

    /// `frame` with its deadline replaced by `left`.
    fn with_deadline(frame: &[u8], left: Duration) -> Vec<u8> {
        let (_, rest) = postcard::take_from_bytes::<Head>(frame).unwrap();
        let mut v = vec![0u8];
        v.extend_from_slice(&postcard::to_stdvec(&left).unwrap());
        v.extend_from_slice(rest);
        v
    }

    fn decode(frame: &[u8]) -> ClientMessage<Incoming<u32>> {
        let mut codec = ServerCodec::<u32, Reply<()>>::new(1024, Duration::from_millis(100));
        tokio_serde::Deserializer::deserialize(Pin::new(&mut codec), &BytesMut::from(frame))
            .unwrap()
    }

    #[test]
    fn a_response_over_the_frame_limit_becomes_a_failure_of_that_request() {
        let mut codec = ServerCodec::<u32, Reply<Vec<u8>>>::new(100, Duration::from_millis(100));
        let mut encode = |n: usize| {
            let response = Response {
                request_id: 42,
                message: Ok(Reply::Ok(vec![1u8; n])),
            };
            let bytes =
                tokio_serde::Serializer::serialize(Pin::new(&mut codec), &response).unwrap();
            assert!(bytes.len() <= 100, "{} bytes", bytes.len());
            postcard::from_bytes::<Response<Reply<Vec<u8>>>>(&bytes).unwrap()
        };
        let small = encode(50);
        assert_eq!(small.request_id, 42);
        assert!(matches!(small.message, Ok(Reply::Ok(v)) if v == vec![1u8; 50]));
        let big = encode(101);
        assert_eq!(big.request_id, 42, "the answer is still that request's");
        match big.message {
            Ok(Reply::Failed(why)) => assert!(why.contains("over the frame limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_deadline_from_the_network_is_capped() {
        let hostile = with_deadline(&request(5), Duration::MAX);
        let before = Instant::now();
        match decode(&hostile) {
            ClientMessage::Request(r) => {
                assert_eq!(r.message.req, 5);
                assert_eq!(r.id, 9);
                assert!(r.context.deadline <= Instant::now() + MAX_TIMEOUT);
                assert!(r.context.deadline >= before + MAX_TIMEOUT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_keeps_the_trace_context_its_caller_sent() {
        let caller = tarpc::trace::Context {
            trace_id: 0x1234_u128.into(),
            span_id: 0x56_u64.into(),
            sampling_decision: tarpc::trace::SamplingDecision::Sampled,
        };
        let mut ctx = context::current();
        ctx.trace_context = caller;
        let frame = postcard::to_stdvec(&ClientMessage::Request(Request {
            context: ctx,
            id: 4,
            message: 8u32,
        }))
        .unwrap();
        match decode(&frame) {
            ClientMessage::Request(r) => {
                assert_eq!(r.message.req, 8);
                assert_eq!(r.message.caller.as_deref(), Some(&caller));
            }
            other => panic!("{other:?}"),
        }
        // A caller that traces nothing sent an empty context: nothing is kept.
        let mut ctx = context::current();
        ctx.trace_context = tarpc::trace::Context::default();
        let frame = postcard::to_stdvec(&ClientMessage::Request(Request {
            context: ctx,
            id: 5,
            message: 9u32,
        }))
        .unwrap();
        match decode(&frame) {
            ClientMessage::Request(r) => assert!(r.message.caller.is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ordinary_frames_pass_unchanged() {
        let frame = with_deadline(&request(6), Duration::from_secs(3));
        assert!(matches!(clamp_deadline(&frame), Cow::Borrowed(_)));
        match decode(&frame) {
            ClientMessage::Request(r) => {
                let left = r.context.deadline.saturating_duration_since(Instant::now());
                assert!(left <= Duration::from_secs(3) && left > Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        let cancel = postcard::to_stdvec(&ClientMessage::<u32>::Cancel {
            trace_context: Default::default(),
            request_id: 3,
        })
        .unwrap();
        assert!(matches!(clamp_deadline(&cancel), Cow::Borrowed(_)));
        assert!(matches!(
            decode(&cancel),
            ClientMessage::Cancel { request_id: 3, .. }
        ));
        // Garbage is left to the decoder, which refuses it.
        assert!(matches!(clamp_deadline(b"\xff\xff"), Cow::Borrowed(_)));
    }

    /// Time left on a decoded request's deadline.
    fn time_left(message: ClientMessage<Incoming<u32>>) -> Duration {
        match message {
            ClientMessage::Request(r) => {
                r.context.deadline.saturating_duration_since(Instant::now())
            }
            other => panic!("{other:?}"),
        }
    }

    /// `frame` followed by a send time `ago` in the past.
    fn sent(frame: &[u8], ago: Duration) -> Vec<u8> {
        let at = wall_micros() - u64::try_from(ago.as_micros()).unwrap();
        let mut v = frame.to_vec();
        v.extend_from_slice(&at.to_le_bytes());
        v
    }

    #[test]
    fn the_client_codec_appends_the_send_time_to_requests_only() {
        let mut codec = ClientCodec::<Reply<()>, u32>::default();
        let msg = ClientMessage::Request(Request {
            context: context::current(),
            id: 9,
            message: 5u32,
        });
        let before = wall_micros();
        let bytes = tokio_serde::Serializer::serialize(Pin::new(&mut codec), &msg).unwrap();
        let (_, rest) = postcard::take_from_bytes::<ClientMessage<u32>>(&bytes).unwrap();
        let at = u64::from_le_bytes(rest.try_into().expect("8 bytes after the request"));
        assert!(at >= before && at <= wall_micros());
        let cancel = ClientMessage::<u32>::Cancel {
            trace_context: Default::default(),
            request_id: 3,
        };
        let bytes = tokio_serde::Serializer::serialize(Pin::new(&mut codec), &cancel).unwrap();
        assert_eq!(&bytes[..], &postcard::to_stdvec(&cancel).unwrap()[..]);
    }

    #[test]
    fn time_in_transit_beyond_the_skew_allowance_comes_off_the_deadline() {
        let frame = with_deadline(&request(6), Duration::from_secs(3));
        // Sent just now, or within the allowance (100 ms): the deadline stands.
        for ago in [Duration::ZERO, Duration::from_millis(60)] {
            let left = time_left(decode(&sent(&frame, ago)));
            assert!(left > Duration::from_millis(2_900), "{ago:?}: {left:?}");
        }
        // 1 s in transit: 900 ms off.
        let left = time_left(decode(&sent(&frame, Duration::from_secs(1))));
        assert!(
            left > Duration::from_millis(1_900) && left <= Duration::from_millis(2_100),
            "{left:?}"
        );
        // Longer in transit than it had: a deadline in the past.
        assert_eq!(
            time_left(decode(&sent(&frame, Duration::from_secs(5)))),
            Duration::ZERO
        );
        // A sender clock ahead of ours reads as no time in transit.
        let mut ahead = frame.clone();
        ahead.extend_from_slice(&(wall_micros() + 10_000_000).to_le_bytes());
        assert!(time_left(decode(&ahead)) > Duration::from_millis(2_900));
        // Without a send time (an earlier version), or with bytes that are not one: as sent.
        assert!(time_left(decode(&frame)) > Duration::from_millis(2_900));
        let mut odd = frame.clone();
        odd.extend_from_slice(&[1, 2, 3]);
        assert!(time_left(decode(&odd)) > Duration::from_millis(2_900));
    }

    #[test]
    fn frames_in_pieces_hold_the_budget_until_whole_or_dropped() {
        use tokio_util::codec::Decoder;

        let budget = Arc::new(FrameBudget::new(100));
        let mut codec = FrameCodec::new(60, budget.clone());
        let mut buf = BytesMut::new();
        // Whole frames never touch the budget.
        buf.extend_from_slice(&3u32.to_be_bytes());
        buf.extend_from_slice(b"abc");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(budget.used(), 0);
        // A header alone takes nothing yet; a partial body takes the announced length.
        buf.extend_from_slice(&50u32.to_be_bytes()[..2]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&50u32.to_be_bytes()[2..]);
        buf.extend_from_slice(&[1; 20]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(budget.used(), 50);
        buf.extend_from_slice(&[1; 20]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(budget.used(), 50, "taken once per frame");
        buf.extend_from_slice(&[1; 10]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 50);
        assert_eq!(budget.used(), 0);
        // Another connection's partial frame over what is left is refused.
        let mut other = FrameCodec::new(60, budget.clone());
        let partial = |codec: &mut FrameCodec| {
            let mut b = BytesMut::new();
            b.extend_from_slice(&60u32.to_be_bytes());
            b.extend_from_slice(&[0; 5]);
            codec.decode(&mut b)
        };
        assert!(partial(&mut codec).unwrap().is_none());
        let e = partial(&mut other).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        // Dropping the connection's codec gives its share back.
        drop(codec);
        assert_eq!(budget.used(), 0);
        // A header over the frame limit is refused before anything is reserved.
        let mut big = FrameCodec::new(60, budget.clone());
        let mut b = BytesMut::from(&61u32.to_be_bytes()[..]);
        assert_eq!(
            big.decode(&mut b).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            budget.too_large.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            budget
                .over_budget
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn the_client_codec_writes_each_request_over_the_same_memory() {
        let mut codec = ClientCodec::<u32, u32>::default();
        let msg = |message: u32| {
            ClientMessage::Request(Request {
                context: context::current(),
                id: u64::from(message),
                message,
            })
        };
        let mut serialize = |message: u32| {
            tokio_serde::Serializer::serialize(Pin::new(&mut codec), &msg(message)).unwrap()
        };
        let first = serialize(7);
        let (decoded, rest) = postcard::take_from_bytes::<ClientMessage<u32>>(&first).unwrap();
        assert!(matches!(decoded, ClientMessage::Request(r) if r.message == 7 && r.id == 7));
        assert_eq!(rest.len(), SENT_AT, "the send time follows the request");
        let at = first.as_ptr();
        drop(first);
        // The framing drops each message once copied: the next one reuses its memory.
        for i in 0..100 {
            let again = serialize(i);
            assert_eq!(again.as_ptr(), at, "message {i} was written elsewhere");
            let (decoded, _) = postcard::take_from_bytes::<ClientMessage<u32>>(&again).unwrap();
            assert!(matches!(decoded, ClientMessage::Request(r) if r.message == i));
        }
        // A message still held is never written over.
        let held = serialize(1);
        let next = serialize(2);
        assert_ne!(held.as_ptr(), next.as_ptr());
        assert!(matches!(
            postcard::take_from_bytes::<ClientMessage<u32>>(&held).unwrap().0,
            ClientMessage::Request(r) if r.message == 1
        ));
    }

    #[test]
    fn a_large_message_does_not_leave_its_buffer_behind() {
        let mut codec =
            ServerCodec::<u32, Reply<Vec<u8>>>::new(1 << 20, Duration::from_millis(100));
        let encode = |codec: &mut ServerCodec<u32, Reply<Vec<u8>>>, n: usize| {
            let response = Response {
                request_id: n as u64,
                message: Ok(Reply::Ok(vec![3u8; n])),
            };
            tokio_serde::Serializer::serialize(Pin::new(codec), &response).unwrap()
        };
        let big = encode(&mut codec, KEEP_BUFFER * 2);
        let decoded: Response<Reply<Vec<u8>>> = postcard::from_bytes(&big).unwrap();
        assert!(matches!(decoded.message, Ok(Reply::Ok(v)) if v.len() == KEEP_BUFFER * 2));
        drop(big);
        assert!(
            codec.out.0.capacity() <= KEEP_BUFFER,
            "kept {} bytes",
            codec.out.0.capacity()
        );
        let small = encode(&mut codec, 10);
        let decoded: Response<Reply<Vec<u8>>> = postcard::from_bytes(&small).unwrap();
        assert_eq!(decoded.request_id, 10);
        drop(small);
        // A response over the frame limit is replaced by a failure: its buffer goes too.
        let mut limited = ServerCodec::<u32, Reply<Vec<u8>>>::new(1024, Duration::from_millis(100));
        let failed = encode(&mut limited, KEEP_BUFFER * 2);
        let decoded: Response<Reply<Vec<u8>>> = postcard::from_bytes(&failed).unwrap();
        assert!(matches!(decoded.message, Ok(Reply::Failed(_))));
        drop(failed);
        assert!(
            limited.out.0.capacity() <= KEEP_BUFFER,
            "kept {} bytes",
            limited.out.0.capacity()
        );
    }
}
