//! Wrong receivers are one error each: the server trait keeps them as written, so the impl
//! compiles, and the client declares the methods, so calls compile.
#[easy_rpc::service]
pub trait Service {
    async fn mutate(&mut self, value: u8);
    async fn rebind(mut self);
}

struct Impl(u8);

impl Service for Impl {
    async fn mutate(&mut self, value: u8) {
        self.0 = value;
    }
    async fn rebind(self) {}
}

async fn call(any: easy_rpc::Any) -> Result<(), easy_rpc::RpcError<easy_rpc::Never>> {
    any.mutate(1).await?;
    any.rebind().await
}

fn main() {
    let _ = (Impl(0).serve(), call);
}
