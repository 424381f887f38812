//! Names a caller could not reach on a target: its own methods, prelude methods that clash,
//! and the `__` prefix of easy-rpc's plumbing. One error each; the rest compiles.
#[easy_rpc::service]
pub trait Settings {
    async fn timeout(&self) -> u64;
    async fn owner() -> String;
    async fn clone(&self) -> u8;
    async fn to_owned(&self) -> u8;
    async fn into(&self) -> u8;
    async fn try_into(&self) -> u8;
    async fn __call(&self) -> u8;
    async fn get(&self) -> u8;
}

struct Impl;

impl Settings for Impl {
    async fn timeout(&self) -> u64 {
        1
    }
    async fn owner(&self) -> String {
        String::new()
    }
    async fn clone(&self) -> u8 {
        1
    }
    async fn to_owned(&self) -> u8 {
        1
    }
    async fn into(&self) -> u8 {
        1
    }
    async fn try_into(&self) -> u8 {
        1
    }
    async fn __call(&self) -> u8 {
        1
    }
    async fn get(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    any.get().await
}

fn main() {
    let _ = (Impl.serve(), call);
}
