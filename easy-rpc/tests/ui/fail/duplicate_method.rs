#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> u8;
    async fn get(&self, key: u8) -> u8;
}

fn main() {}
