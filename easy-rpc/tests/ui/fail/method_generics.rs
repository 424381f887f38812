#[easy_rpc::service]
pub trait Service {
    async fn generic<T: serde::Serialize>(&self, value: T);
    async fn bounded(&self)
    where
        Self: Sized;
}

fn main() {}
