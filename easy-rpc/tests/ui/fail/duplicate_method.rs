//! A duplicate method is one error: the first one is kept.
#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> u8;
    async fn get(&self, key: u8) -> u8;
}

struct Impl;

impl Service for Impl {
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
