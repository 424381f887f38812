#[easy_rpc::service]
pub trait Service {
    async fn consume(self);
}

fn main() {}
