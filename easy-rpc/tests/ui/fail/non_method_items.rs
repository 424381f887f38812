//! Items other than methods are one error each: they stay on the server trait, so impls that
//! define them compile.
#[easy_rpc::service]
pub trait Service {
    const LIMIT: u8;
    type Item;
    async fn get(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    const LIMIT: u8 = 1;
    type Item = u8;
    async fn get(&self) -> u8 {
        Self::LIMIT
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    any.get().await
}

fn main() {
    let _ = (Impl.serve(), call);
}
