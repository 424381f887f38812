//! An unknown macro argument is one error: the service is generated without it.
#[easy_rpc::service(foo, name = "svc")]
pub trait Service {
    async fn get(&self) -> u8;
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
