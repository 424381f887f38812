//! The response envelope on the wire: every answer of a server says whether the method ran,
//! as a type, not as a string to compare.
//!
//! tarpc carries `Response { request_id, message: Result<Reply<R>, ServerError> }`; easy-rpc
//! servers always answer `Ok(reply)` (tarpc's own `ServerError` is left to tarpc).

use serde::{Deserialize, Serialize};

use crate::error::NotRunReason;

/// A server's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply<R> {
    /// The method ran and returned this (its own errors included).
    Ok(R),
    /// The method was not run, for this reason: the caller may send the request elsewhere.
    NotRun(NotRunReason),
    /// The method started but did not finish (it panicked): it may have had effects.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "not run" reason is a number on the wire: `Leaving` is 1, and a number this version
    /// does not know (a reason added by a newer node) still decodes, as `Unknown`, so the
    /// caller still knows the request did not run.
    #[test]
    fn not_run_reasons_are_numbers_and_unknown_ones_still_decode() {
        let leaving = postcard::to_stdvec(&Reply::<u64>::NotRun(NotRunReason::Leaving)).unwrap();
        assert_eq!(leaving, [1, 1], "variant NotRun (1), reason 1");
        let back: Reply<u64> = postcard::from_bytes(&leaving).unwrap();
        assert!(matches!(back, Reply::NotRun(NotRunReason::Leaving)));

        // What a newer node would send for a reason numbered 9.
        let newer = [1u8, 9];
        let back: Reply<u64> = postcard::from_bytes(&newer).unwrap();
        assert!(matches!(back, Reply::NotRun(NotRunReason::Unknown(9))));
        assert_eq!(
            postcard::to_stdvec(&Reply::<u64>::NotRun(NotRunReason::Unknown(9))).unwrap(),
            newer
        );
        // A server layer's refusal is 4.
        let refused = postcard::to_stdvec(&Reply::<u64>::NotRun(NotRunReason::Refused)).unwrap();
        assert_eq!(refused, [1, 4]);
        let back: Reply<u64> = postcard::from_bytes(&refused).unwrap();
        assert!(matches!(back, Reply::NotRun(NotRunReason::Refused)));
        let ok: Reply<u64> =
            postcard::from_bytes(&postcard::to_stdvec(&Reply::Ok(5u64)).unwrap()).unwrap();
        assert!(matches!(ok, Reply::Ok(5)));
    }
}
