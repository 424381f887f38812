//! A zero deadline would fail every call: refused where it is written.
#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(idempotent, timeout_ms = 0)]
    async fn get(&self) -> u8;
    #[easy_rpc(timeout_ms = 0u64)]
    async fn put(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn get(&self) -> u8 {
        1
    }
    async fn put(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    Ok(any.get().await? + any.put().await?)
}

fn main() {
    let _ = (Impl.serve(), call);
}
