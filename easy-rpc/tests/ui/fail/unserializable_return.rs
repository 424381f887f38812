pub struct NotSerde;

#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> NotSerde;
}

fn main() {}
