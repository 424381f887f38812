//! A method that is not `async` is one error: the server trait keeps it as written, so the
//! impl compiles, and the client declares it, so calls compile.
#[easy_rpc::service]
pub trait Service {
    fn balance(&self, account: String) -> u64;
}

struct Impl;

impl Service for Impl {
    fn balance(&self, account: String) -> u64 {
        account.len() as u64
    }
}

async fn call(any: easy_rpc::Any) -> Result<u64, easy_rpc::RpcError<easy_rpc::Never>> {
    any.balance("acct".into()).await
}

fn main() {
    let _ = (Impl.serve(), call);
}
