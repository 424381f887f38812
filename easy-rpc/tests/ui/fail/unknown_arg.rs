#[easy_rpc::service(foo)]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
