//! A request on its way out, and whether it was ever written to a connection: a call whose
//! connection broke before its request was written provably never reached the server, so it
//! can go to another node like any call that never ran.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Serialize, Serializer};

/// A request and the number of times it has been written (serialized by the client codec,
/// which tarpc does once per send, when it hands the request to the connection).
///
/// On the wire it is the request alone. Written once is "maybe sent": the bytes may still sit
/// in a buffer when the connection breaks, so only "never written" is taken as proof.
#[derive(Debug)]
pub(crate) struct Outgoing<R> {
    req: R,
    writes: AtomicU32,
    /// Whether the call has a span: its requests then say "sampled" in their trace context,
    /// and the node that runs them traces them too. Not written.
    traced: bool,
}

impl<R> Outgoing<R> {
    pub(crate) fn new(req: R, traced: bool) -> Self {
        Outgoing {
            req,
            writes: AtomicU32::new(0),
            traced,
        }
    }

    /// Whether the call has a span.
    pub(crate) fn traced(&self) -> bool {
        self.traced
    }

    /// How many times it was written so far: read before an attempt, compared after it.
    pub(crate) fn writes(&self) -> u32 {
        self.writes.load(Ordering::Acquire)
    }
}

impl<R: Serialize> Serialize for Outgoing<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.req.serialize(serializer)
    }
}

impl<R: tarpc::RequestName> tarpc::RequestName for Outgoing<R> {
    fn name(&self) -> &str {
        self.req.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_encodes_as_the_request_and_counts_each_write() {
        let out = Outgoing::new((7u32, "x".to_string()), false);
        assert_eq!(out.writes(), 0);
        let bytes = postcard::to_stdvec(&out).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&(7u32, "x")).unwrap());
        assert_eq!(out.writes(), 1);
        postcard::to_stdvec(&out).unwrap();
        assert_eq!(out.writes(), 2);
    }
}
