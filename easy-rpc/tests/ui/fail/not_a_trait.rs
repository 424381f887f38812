#[easy_rpc::service]
pub struct Service {
    field: u8,
}

fn main() {}
