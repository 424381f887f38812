//! Wrong timeouts are one error each: the methods are generated without the option.
#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(timeout_ms = "x")]
    async fn get(&self) -> u8;
    #[easy_rpc(timeout_ms = -5, idempotent)]
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
