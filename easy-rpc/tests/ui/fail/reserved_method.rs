#[easy_rpc::service]
pub trait Settings {
    async fn timeout(&self) -> u64;
    async fn owner() -> String;
}

fn main() {}
