#[easy_rpc::service]
pub trait Service<T> {
    async fn get(&self) -> u8;
}

fn main() {}
