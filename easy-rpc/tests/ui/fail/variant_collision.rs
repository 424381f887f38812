//! Two methods with the same CamelCase name are one error: both stay on the traits.
#[easy_rpc::service]
pub trait Service {
    async fn get_user(&self) -> u8;
    #[allow(non_snake_case)]
    async fn getUser(&self) -> u8;
}

struct Impl;

#[allow(non_snake_case)]
impl Service for Impl {
    async fn get_user(&self) -> u8 {
        1
    }
    async fn getUser(&self) -> u8 {
        1
    }
}

#[allow(non_snake_case)]
async fn call(any: easy_rpc::Any) -> Result<u8, easy_rpc::RpcError<easy_rpc::Never>> {
    Ok(any.get_user().await? + any.getUser().await?)
}

fn main() {
    let _ = (Impl.serve(), call);
}
