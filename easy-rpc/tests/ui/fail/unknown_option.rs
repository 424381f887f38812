#[easy_rpc::service]
pub trait Service {
    #[easy_rpc(idempotent, retries = 3)]
    async fn get(&self) -> u8;
}

fn main() {}
