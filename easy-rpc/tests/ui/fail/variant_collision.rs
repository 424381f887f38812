#[easy_rpc::service]
pub trait Service {
    async fn get_user(&self) -> u8;
    #[allow(non_snake_case)]
    async fn getUser(&self) -> u8;
}

fn main() {}
