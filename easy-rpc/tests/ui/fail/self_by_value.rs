//! `self` by value is one error: the impl and the calls still compile.
#[easy_rpc::service]
pub trait Service {
    async fn consume(self);
}

struct Impl;

impl Service for Impl {
    async fn consume(self) {}
}

async fn call(any: easy_rpc::Any) -> Result<(), easy_rpc::RpcError<easy_rpc::Never>> {
    any.consume().await
}

fn main() {
    let _ = (Impl.serve(), call);
}
