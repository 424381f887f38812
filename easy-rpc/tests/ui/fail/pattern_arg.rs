//! A pattern argument is one error: the impl (with its pattern) and the call still compile.
#[easy_rpc::service]
pub trait Service {
    async fn add(&self, (a, b): (u8, u8)) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn add(&self, (a, b): (u8, u8)) -> u8 {
        a + b
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    any.add((1, 2)).await
}

fn main() {
    let _ = (Impl.serve(), call);
}
