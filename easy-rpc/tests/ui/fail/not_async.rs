#[easy_rpc::service]
pub trait Service {
    fn balance(&self, account: String) -> u64;
}

fn main() {}
