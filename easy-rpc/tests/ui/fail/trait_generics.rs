//! A generic trait is one error: only the server trait is generated (with its generics), so
//! impls still compile.
#[easy_rpc::service]
pub trait Service<T> {
    async fn get(&self, t: T) -> u8;
}

struct Impl;

impl Service<u8> for Impl {
    async fn get(&self, t: u8) -> u8 {
        t
    }
}

fn main() {
    let _ = Impl.serve();
}
