#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(timeout_ms = "x")]
    async fn get(&self) -> u8;
    #[easy_rpc(timeout_ms = -5)]
    async fn put(&self) -> u8;
}

fn main() {}
