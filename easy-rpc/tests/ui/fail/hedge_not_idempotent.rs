//! `hedge` on a method that is not idempotent is one error: a hedged call may run on two nodes.
//! The method is generated without the option; a bad percentile is an error of its own.
#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(hedge)]
    async fn charge(&self, cents: u64) -> u8;
    #[easy_rpc(idempotent, hedge = 100)]
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
