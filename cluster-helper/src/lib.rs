//! placeholder, being written
mod error;
pub use error::{Error, Result};
mod seed;
mod discovery;
pub use seed::Seed;
