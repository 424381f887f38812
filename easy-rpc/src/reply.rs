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
