#[easy_rpc::service]
pub trait Service {
    async fn mutate(&mut self, value: u8);
    async fn rebind(mut self);
}

fn main() {}
