//! `crate = "..."`: the easy-rpc crate under another name.
#![deny(warnings)]

extern crate easy_rpc as my_rpc;

mod reexport {
    pub use ::easy_rpc::*;
}

#[my_rpc::service(crate = "::my_rpc", name = "renamed.v1.Renamed")]
pub trait Renamed {
    #[easy_rpc(idempotent)]
    async fn get(key: String) -> Option<String>;
}

#[reexport::service(crate = "crate::reexport")]
pub trait Reexported {
    async fn get(&self) -> Result<u8, String>;
}

struct Impl;

impl Renamed for Impl {
    async fn get(&self, _key: String) -> Option<String> {
        None
    }
}

impl Reexported for Impl {
    async fn get(&self) -> Result<u8, String> {
        Ok(1)
    }
}

fn main() {
    assert_eq!(Renamed::serve(Impl).name(), "renamed.v1.Renamed");
    assert_eq!(Reexported::serve(Impl).name(), "Reexported");
}
