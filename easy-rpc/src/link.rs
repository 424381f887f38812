//! What carries an RPC connection's frames after the handshake: the record layer
//! ([`Sealed`], the default), or, for a cluster that opted out of call encryption
//! ([`NodeBuilder::unencrypted_calls`](crate::NodeBuilder::unencrypted_calls)), the TCP
//! stream itself.
//!
//! The choice is made once per node and bound into the handshake (see noise.rs): both sides
//! of a connection agree on it, or the connection is refused. [`Link`] is an enum over the two
//! streams, not a trait object: a sealed connection pays one predictable branch per read or
//! write, no allocation and no indirection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::sealed::Sealed;

/// Whether a node's RPC connections seal their frames after the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Encryption {
    /// Every frame travels in AES-256-GCM records with keys fresh to the connection.
    #[default]
    On,
    /// Frames travel in clear on the TCP stream (the handshake still authenticates both
    /// sides with the cluster key).
    Off,
}

impl Encryption {
    /// The other setting.
    pub(crate) fn other(self) -> Encryption {
        match self {
            Encryption::On => Encryption::Off,
            Encryption::Off => Encryption::On,
        }
    }
}

/// The stream of a handshaken connection: sealed records, or the stream itself.
///
/// One per connection, so its size does not matter; boxing the sealed stream to make the
/// variants alike would add an indirection to every read and write of the default path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link<S> {
    /// Sealed records ([`Encryption::On`]).
    Sealed(Sealed<S>),
    /// The stream itself ([`Encryption::Off`]).
    Plain(S),
}

impl<S> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Sealed(s) => s.fmt(f),
            Link::Plain(_) => f.write_str("Plain"),
        }
    }
}

impl<S> Link<S> {
    /// Whether the connection is sealed.
    #[cfg(test)]
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self, Link::Sealed(_))
    }

    /// The sealed stream (for the fuzz targets, which handshake in the default mode only).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn into_sealed(self) -> Sealed<S> {
        match self {
            Link::Sealed(s) => s,
            Link::Plain(_) => unreachable!("the fuzz targets handshake with encryption on"),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Link<S> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Sealed(s) => Pin::new(s).poll_read(cx, buf),
            Link::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Link<S> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Sealed(s) => Pin::new(s).poll_write(cx, buf),
            Link::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Sealed(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Link::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            Link::Sealed(s) => s.is_write_vectored(),
            Link::Plain(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Sealed(s) => Pin::new(s).poll_flush(cx),
            Link::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Sealed(s) => Pin::new(s).poll_shutdown(cx),
            Link::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
