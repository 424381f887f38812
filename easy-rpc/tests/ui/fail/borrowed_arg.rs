//! A borrowed argument cannot be sent: one error; the impl and the call still type-check.
#[easy_rpc::service]
pub trait Service {
    async fn get(&self, key: &str) -> u8;
    async fn other(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn get(&self, key: &str) -> u8 {
        key.len() as u8
    }
    async fn other(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    Ok(any.get("k").await? + any.other().await?)
}

fn main() {
    let _ = (Impl.serve(), call);
}
