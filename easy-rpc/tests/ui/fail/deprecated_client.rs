#![deny(deprecated)]

#[easy_rpc::service]
pub trait Service {
    #[deprecated = "use `get`"]
    async fn old_get(&self) -> u8;
}

fn call(target: easy_rpc::Any) {
    let _ = target.old_get();
}

fn main() {}
