//! An unknown option is one error: the method is generated as if it were absent.
#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(idempotent, backup = 3)]
    async fn get(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn get(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any, all: easy_rpc::All) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    let _ = all.get().await;
    any.get().await
}

fn main() {
    let _ = (Impl.serve(), call);
}
