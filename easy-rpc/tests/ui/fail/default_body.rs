//! A default body is one error: the method keeps it on the server trait, so impls that rely
//! on it still compile.
#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> u8 {
        1
    }
    async fn other(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn other(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    Ok(any.get().await? + any.other().await?)
}

fn main() {
    let _ = (Impl.serve(), call);
}
