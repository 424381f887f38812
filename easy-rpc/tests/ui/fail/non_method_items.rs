#[easy_rpc::service]
pub trait Service {
    const LIMIT: u8;
    type Item;
    async fn get(&self) -> u8;
}

fn main() {}
