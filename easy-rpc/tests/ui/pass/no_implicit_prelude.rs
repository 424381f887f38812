//! Generated code names only `::easy_rpc` and `::core` paths: it compiles in a module without
//! the prelude, and next to user items that shadow common names.
#![no_implicit_prelude]
#![deny(warnings)]

// Items named like what generated code could name without a path.
#[allow(dead_code)]
mod shadows {
    pub struct Option;
    pub struct Result;
    pub struct Some;
    pub struct None;
    pub struct Ok;
    pub struct Box;
    pub struct String;
    pub struct T;
    pub struct C;
    pub trait Send {}
    pub trait Sync {}
    pub trait Sized {}
    pub trait Future {}
    pub trait Clone {}
    pub mod core {}
    pub mod std {}
    pub mod serde {}
    pub mod tarpc {}
}
#[allow(unused_imports)]
use shadows::*;

#[::easy_rpc::service]
pub trait Hygiene {
    async fn plain(req: u8, resp: u8, v: u8, arg0: u8) -> u64;
    async fn result(&self, t: T2) -> ::core::result::Result<::std::string::String, u8>;
    #[easy_rpc(idempotent, timeout_ms = 5, retries = 1, hedge)]
    async fn unit(&self);
}

/// A user type named `T2` (`T` is shadowed above by a non-serde struct).
#[derive(::core::clone::Clone, ::serde::Serialize, ::serde::Deserialize)]
pub struct T2(u8);

struct Impl;

impl Hygiene for Impl {
    async fn plain(&self, req: u8, resp: u8, v: u8, arg0: u8) -> u64 {
        (req + resp + v + arg0) as u64
    }
    async fn result(&self, t: T2) -> ::core::result::Result<::std::string::String, u8> {
        ::core::result::Result::Err(t.0)
    }
    async fn unit(&self) {}
}

fn main() {
    let _ = Impl.serve();
}
