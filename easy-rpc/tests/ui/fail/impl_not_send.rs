use std::rc::Rc;

#[easy_rpc::service]
pub trait Service {
    async fn get(&self) -> u8;
}

struct Impl;

impl Service for Impl {
    async fn get(&self) -> u8 {
        let rc = Rc::new(1);
        std::future::ready(()).await;
        *rc
    }
}

fn main() {}
