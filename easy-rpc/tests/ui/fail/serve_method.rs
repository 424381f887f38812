//! A method named `serve` is one error: the user's `serve` replaces the generated one, so the
//! impl compiles.
#[easy_rpc::service]
pub trait Service {
    async fn serve(&self);
    async fn get(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn serve(&self) {}
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
