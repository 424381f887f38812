#[easy_rpc::service(name = billing)]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
