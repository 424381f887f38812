#[derive(Clone)]
pub struct NotSerde;

#[easy_rpc::service]
pub trait Service {
    async fn put(&self, value: NotSerde);
}

fn main() {}
