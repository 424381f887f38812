#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> u8 {
        1
    }
}

fn main() {}
