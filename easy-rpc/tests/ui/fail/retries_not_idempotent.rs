//! `retries` on a method that is not idempotent is one error: a call that may have run is
//! never sent twice. The method is generated without the option.
#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(retries = 3)]
    async fn charge(&self, cents: u64) -> u8;
    #[easy_rpc(idempotent, retries = "x")]
    async fn get(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn charge(&self, _cents: u64) -> u8 {
        1
    }
    async fn get(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    Ok(any.charge(5).await? + any.get().await?)
}

fn main() {
    let _ = (Impl.serve(), call);
}
