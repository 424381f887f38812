//! The record layer after the handshake: every byte in both directions travels in records
//! sealed with the connection's Noise transport keys (AES-256-GCM, fresh per connection,
//! forward secret).
//!
//! ```text
//! record = [u16 length, big-endian][Noise transport message: ciphertext + 16-byte tag]
//! ```
//!
//! A record holds at most 65535 bytes (Noise's limit), so a larger tarpc frame spans several.
//! [`Sealed`] is an `AsyncRead + AsyncWrite` around the stream: the framing above it is the
//! same as on a plain stream. Writes are gathered into one record per flush (and one `write`
//! per flush where the socket takes it all); the buffers are reused, so a record costs no
//! allocation once they have grown to the connection's message sizes.
//!
//! A record that fails to authenticate (a flipped or injected byte, a replayed or reordered
//! record: the nonce is the record's position), a bad length or a stream that ends inside a
//! record is an I/O error: the connection is closed, and no byte of it reaches the reader.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The authentication tag that ends every Noise transport message.
pub(crate) const TAG_LEN: usize = 16;
/// The largest Noise message, so the largest record body.
pub(crate) const MAX_RECORD: usize = 65535;
/// The most plaintext one record carries.
const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;
/// Sealed bytes waiting for the socket beyond which writes wait (back-pressure).
const WRITE_HIGH_WATER: usize = 2 * (2 + MAX_RECORD);
/// What a read from the socket asks for at least.
const READ_CHUNK: usize = 16 * 1024;

/// A byte buffer that is filled at its end and consumed from its start, reused for the
/// connection's life. Its bytes are initialized once, when it grows.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    #[inline]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// At least `n` writable bytes at the end (moving the content to the front, or growing).
    #[inline]
    fn spare(&mut self, n: usize) -> &mut [u8] {
        if self.data.len() - self.end < n {
            self.make_room(n);
        }
        &mut self.data[self.end..]
    }

    #[cold]
    fn make_room(&mut self, n: usize) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < n {
            self.data.resize(self.end + n, 0);
        }
    }

    #[inline]
    fn commit(&mut self, n: usize) {
        self.end += n;
    }
}

/// A stream whose bytes are sealed in records with a connection's Noise transport keys.
pub struct Sealed<S> {
    io: S,
    noise: snow::TransportState,
    /// Plaintext written and not yet sealed (at most one record's worth).
    plain_out: Vec<u8>,
    /// Sealed records not yet taken by the socket.
    wire_out: Buf,
    /// Bytes read from the socket and not yet opened.
    wire_in: Buf,
    /// The opened plaintext not yet read.
    plain_in: Buf,
    /// The socket said end of stream.
    eof: bool,
    /// A record failed to open (or could not be sealed): the stream is dead both ways.
    broken: bool,
}

impl<S> std::fmt::Debug for Sealed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("unsealed_out", &self.plain_out.len())
            .field("sealed_out", &self.wire_out.len())
            .field("sealed_in", &self.wire_in.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

fn broken_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the sealed connection failed earlier",
    )
}

/// A bad record: not `InvalidData`, which the client reads as the codec's error; this is the
/// connection failing.
fn bad_record(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, what.to_owned())
}

impl<S> Sealed<S> {
    /// Seals the stream `io` with the keys of a completed handshake.
    pub(crate) fn new(io: S, noise: snow::TransportState) -> Self {
        Sealed {
            io,
            noise,
            plain_out: Vec::new(),
            wire_out: Buf::default(),
            wire_in: Buf::default(),
            plain_in: Buf::default(),
            eof: false,
            broken: false,
        }
    }

    /// The stream and the transport keys back (for the fuzz targets, which reuse a session's
    /// keys across runs instead of paying a handshake for each).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn into_parts(self) -> (S, snow::TransportState) {
        (self.io, self.noise)
    }

    /// Seals what was written since the last record into a new record.
    fn seal(&mut self) -> io::Result<()> {
        if self.plain_out.is_empty() {
            return Ok(());
        }
        let len = self.plain_out.len() + TAG_LEN;
        let out = self.wire_out.spare(2 + len);
        match self
            .noise
            .write_message(&self.plain_out, &mut out[2..2 + len])
        {
            Ok(n) if n == len => {
                out[..2].copy_from_slice(&(len as u16).to_be_bytes());
                self.wire_out.commit(2 + len);
                self.plain_out.clear();
                Ok(())
            }
            _ => {
                // Only the nonce running out after 2^64 records: never in practice.
                self.broken = true;
                Err(bad_record("cannot seal a record"))
            }
        }
    }

    /// Opens the next complete record of `wire_in` into `plain_in`. `Ok(false)`: no complete
    /// record yet.
    fn open(&mut self) -> io::Result<bool> {
        let have = self.wire_in.bytes();
        if have.len() < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([have[0], have[1]]));
        if len <= TAG_LEN {
            // A legitimate peer never seals an empty record.
            self.broken = true;
            return Err(bad_record("a sealed record has a bad length"));
        }
        if have.len() < 2 + len {
            return Ok(false);
        }
        let plain = self.plain_in.spare(len - TAG_LEN);
        let record = &self.wire_in.data[self.wire_in.start + 2..self.wire_in.start + 2 + len];
        match self.noise.read_message(record, plain) {
            Ok(n) => {
                self.plain_in.commit(n);
                self.wire_in.consume(2 + len);
                Ok(true)
            }
            Err(_) => {
                self.broken = true;
                Err(bad_record(
                    "a sealed record failed to authenticate (altered, injected or replayed)",
                ))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Sealed<S> {
    /// Writes sealed records to the socket until none are left, or it would block.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wire_out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.wire_out.bytes()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wire_out.consume(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sealed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.broken {
            return Poll::Ready(Err(broken_error()));
        }
        loop {
            if !this.plain_in.is_empty() {
                let n = this.plain_in.len().min(buf.remaining());
                buf.put_slice(&this.plain_in.bytes()[..n]);
                this.plain_in.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.open()? {
                continue;
            }
            if this.eof {
                return Poll::Ready(if this.wire_in.is_empty() {
                    Ok(())
                } else {
                    this.broken = true;
                    Err(bad_record("the connection ended inside a sealed record"))
                });
            }
            // Room for the rest of the record being read, and at least a chunk.
            let want = match this.wire_in.bytes() {
                [a, b, ..] => (2 + usize::from(u16::from_be_bytes([*a, *b])))
                    .saturating_sub(this.wire_in.len())
                    .max(READ_CHUNK),
                _ => READ_CHUNK,
            };
            let spare = this.wire_in.spare(want);
            let mut read = ReadBuf::new(spare);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                this.eof = true;
            }
            this.wire_in.commit(n);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sealed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.broken {
            return Poll::Ready(Err(broken_error()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.plain_out.len() == MAX_PLAIN {
            this.seal()?;
        }
        if this.wire_out.len() >= WRITE_HIGH_WATER {
            // Back-pressure: wait until the socket takes some.
            match this.poll_drain(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending if this.wire_out.len() >= WRITE_HIGH_WATER => {
                    return Poll::Pending;
                }
                Poll::Pending => {}
            }
        }
        let n = buf.len().min(MAX_PLAIN - this.plain_out.len());
        this.plain_out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.broken {
            return Poll::Ready(Err(broken_error()));
        }
        this.seal()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.broken {
            ready!(self.as_mut().poll_flush(cx))?;
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// Two transport states that share keys, as after a handshake.
    fn pair() -> (snow::TransportState, snow::TransportState) {
        let mut i = crate::noise::handshake_state(&[9; 32], true, crate::link::Encryption::On);
        let mut r = crate::noise::handshake_state(&[9; 32], false, crate::link::Encryption::On);
        let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
        let n = i.write_message(b"", &mut m).unwrap();
        r.read_message(&m[..n], &mut p).unwrap();
        let n = r.write_message(b"", &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        (
            i.into_transport_mode().unwrap(),
            r.into_transport_mode().unwrap(),
        )
    }

    fn sealed_pair(cap: usize) -> (Sealed<DuplexStream>, Sealed<DuplexStream>) {
        let (a, b) = tokio::io::duplex(cap);
        let (i, r) = pair();
        (Sealed::new(a, i), Sealed::new(b, r))
    }

    #[tokio::test]
    async fn bytes_cross_in_both_directions_small_and_large() {
        let (mut a, mut b) = sealed_pair(64 * 1024);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            a.write_all(b"hello").await.unwrap();
            a.flush().await.unwrap();
            a.write_all(&sent).await.unwrap();
            a.flush().await.unwrap();
            let mut back = [0u8; 3];
            a.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"ack");
            a.shutdown().await.unwrap();
        });
        let mut hello = [0u8; 5];
        b.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        let mut got = vec![0u8; big.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == big, "the large message arrived altered");
        b.write_all(b"ack").await.unwrap();
        b.flush().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0, "a clean end");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn one_flush_is_one_record() {
        let (a_io, mut raw) = tokio::io::duplex(1 << 20);
        let (i, _r) = pair();
        let mut a = Sealed::new(a_io, i);
        for _ in 0..10 {
            a.write_all(b"0123456789").await.unwrap();
        }
        a.flush().await.unwrap();
        drop(a);
        let mut wire = Vec::new();
        raw.read_to_end(&mut wire).await.unwrap();
        assert_eq!(wire.len(), 2 + 100 + TAG_LEN);
        assert_eq!(
            usize::from(u16::from_be_bytes([wire[0], wire[1]])),
            100 + TAG_LEN
        );
        assert!(
            !wire.windows(10).any(|w| w == b"0123456789"),
            "plaintext on the wire"
        );
    }

    /// Seals `plain` with a fresh pair and returns the wire bytes and the receiving side's
    /// keys.
    async fn wire_of(plain: &[u8]) -> (Vec<u8>, snow::TransportState) {
        let (a_io, mut raw) = tokio::io::duplex(1 << 20);
        let (i, r) = pair();
        let mut a = Sealed::new(a_io, i);
        a.write_all(plain).await.unwrap();
        a.flush().await.unwrap();
        drop(a);
        let mut wire = Vec::new();
        raw.read_to_end(&mut wire).await.unwrap();
        (wire, r)
    }

    async fn read_all(wire: Vec<u8>, keys: snow::TransportState) -> io::Result<Vec<u8>> {
        let (mut w, b_io) = tokio::io::duplex(1 << 20);
        w.write_all(&wire).await.unwrap();
        drop(w);
        let mut b = Sealed::new(b_io, keys);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.map(|_| got)
    }

    #[tokio::test]
    async fn every_altered_byte_is_an_error_never_other_bytes() {
        let plain = b"the reply is 42, and only 42".to_vec();
        let (wire, _) = wire_of(&plain).await;
        for at in 0..wire.len() {
            let (mut wire, keys) = wire_of(&plain).await;
            assert_eq!(wire.len(), 2 + plain.len() + TAG_LEN);
            wire[at] ^= 0x01;
            match read_all(wire, keys).await {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}"),
                Ok(got) => panic!("byte {at} altered, read {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn truncated_injected_and_replayed_records_are_errors() {
        let plain = b"abc".to_vec();
        // Truncated.
        let (mut wire, keys) = wire_of(&plain).await;
        wire.pop();
        assert!(read_all(wire, keys).await.is_err());
        // A record appended by someone without the keys.
        let (mut wire, keys) = wire_of(&plain).await;
        wire.extend_from_slice(&[0, 20]);
        wire.extend_from_slice(&[7u8; 20]);
        assert!(read_all(wire, keys).await.is_err());
        // The same record twice (a replay): the second has the wrong nonce.
        let (mut wire, keys) = wire_of(&plain).await;
        let copy = wire.clone();
        wire.extend_from_slice(&copy);
        assert!(read_all(wire, keys).await.is_err());
        // A record too short to hold a tag.
        let (mut wire, keys) = wire_of(&plain).await;
        wire.extend_from_slice(&[0, 3, 1, 2, 3]);
        assert!(read_all(wire, keys).await.is_err());
        // Untouched, it reads back.
        let (wire, keys) = wire_of(&plain).await;
        assert_eq!(read_all(wire, keys).await.unwrap(), plain);
    }

    #[tokio::test]
    async fn a_slow_reader_holds_back_the_writer() {
        // A 4 KiB pipe: the writer must wait for the reader, not buffer without bound.
        let (mut a, mut b) = sealed_pair(4096);
        let total = 1_000_000usize;
        let writer = tokio::spawn(async move {
            let chunk = vec![5u8; 10_000];
            let mut sent = 0;
            while sent < total {
                a.write_all(&chunk).await.unwrap();
                sent += chunk.len();
                assert!(
                    a.wire_out.len() < WRITE_HIGH_WATER + 2 + MAX_RECORD,
                    "unbounded buffering"
                );
            }
            a.flush().await.unwrap();
        });
        let mut got = vec![0u8; total];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 5));
        writer.await.unwrap();
    }
}
