#[easy_rpc::service]
pub trait Service {
    async fn add(&self, (a, b): (u8, u8)) -> u8;
}

fn main() {}
