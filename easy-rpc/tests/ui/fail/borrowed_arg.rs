#[easy_rpc::service]
pub trait Service {
    async fn get(&self, key: &str) -> u8;
}

fn main() {}
