//! The message codec: postcard (a maintained, compact serde format) inside length-delimited
//! frames.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tarpc::{ClientMessage, Response};

use crate::deadline::MAX_TIMEOUT;

/// The largest frame accepted (requests and responses): 16 MiB. A larger frame closes the
/// connection with a codec error instead of allocating without bound.
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Marks the item types without owning them (and keeps the codec `Send + Sync`).
type Items<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;

/// A `tokio_serde` codec that reads `Item` and writes `SinkItem` with postcard.
pub(crate) struct Postcard<Item, SinkItem>(Items<Item, SinkItem>);

impl<Item, SinkItem> Default for Postcard<Item, SinkItem> {
    fn default() -> Self {
        Postcard(PhantomData)
    }
}

impl<Item: DeserializeOwned, SinkItem> tokio_serde::Deserializer<Item>
    for Postcard<Item, SinkItem>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, io::Error> {
        postcard::from_bytes(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Postcard<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, io::Error> {
        postcard::to_stdvec(item)
            .map(Bytes::from)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The server's codec: reads requests (`ClientMessage<Req>`), writes responses
/// (`Response<Resp>`), like [`Postcard`], but first caps the deadline a request carries at
/// [`MAX_TIMEOUT`]: tarpc turns it into `Instant::now() + deadline` and puts it in a timer
/// wheel that holds about two years, both of which would panic on a peer's huge value.
pub(crate) struct ServerCodec<Req, Resp>(Items<ClientMessage<Req>, Response<Resp>>);

impl<Req, Resp> Default for ServerCodec<Req, Resp> {
    fn default() -> Self {
        ServerCodec(PhantomData)
    }
}

impl<Req: DeserializeOwned, Resp> tokio_serde::Deserializer<ClientMessage<Req>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<ClientMessage<Req>, io::Error> {
        postcard::from_bytes(&clamp_deadline(src))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Req, Resp: Serialize> tokio_serde::Serializer<Response<Resp>> for ServerCodec<Req, Resp> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &Response<Resp>) -> Result<Bytes, io::Error> {
        postcard::to_stdvec(item)
            .map(Bytes::from)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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

/// Length-delimited framing with the frame limit.
pub(crate) fn framing() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
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

    fn decode(frame: &[u8]) -> ClientMessage<u32> {
        let mut codec = ServerCodec::<u32, ()>::default();
        tokio_serde::Deserializer::deserialize(Pin::new(&mut codec), &BytesMut::from(frame))
            .unwrap()
    }

    #[test]
    fn a_huge_deadline_from_the_network_is_capped() {
        let hostile = with_deadline(&request(5), Duration::MAX);
        let before = Instant::now();
        match decode(&hostile) {
            ClientMessage::Request(r) => {
                assert_eq!(r.message, 5);
                assert_eq!(r.id, 9);
                assert!(r.context.deadline <= Instant::now() + MAX_TIMEOUT);
                assert!(r.context.deadline >= before + MAX_TIMEOUT);
            }
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
}
