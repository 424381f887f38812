//! Generic methods are one error each: they stay on the server trait as written, so the impl
//! compiles. (The client cannot declare a generic method, so calls of `generic` would fail
//! too; `bounded` keeps a client method.)
#[easy_rpc::service]
pub trait Service {
    async fn generic<T: serde::Serialize>(&self, value: T);
    async fn bounded(&self)
    where
        Self: Sized;
    async fn other(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn generic<T: serde::Serialize>(&self, _value: T) {}
    async fn bounded(&self)
    where
        Self: Sized,
    {
    }
    async fn other(&self) -> u8 {
        1
    }
}

async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    any.bounded().await?;
    any.other().await
}

fn main() {
    let _ = (Impl.serve(), call);
}
