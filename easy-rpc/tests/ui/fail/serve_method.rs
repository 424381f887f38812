#[easy_rpc::service]
pub trait Service {
    async fn serve(&self);
}

fn main() {}
