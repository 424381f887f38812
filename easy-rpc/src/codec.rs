//! The message codec: postcard (a maintained, compact serde format) inside length-delimited
//! frames.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Length-delimited framing with the frame limit.
pub(crate) fn framing() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}
