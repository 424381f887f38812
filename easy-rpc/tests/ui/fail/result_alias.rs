//! A `Result` alias hides its error type: refused, with what to write instead. One error per
//! method; the impl and the calls still compile.
use std::io;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MyError;

/// A crate's own alias, as many crates have.
pub type Result<T> = std::result::Result<T, MyError>;

#[easy_rpc::service]
pub trait Service {
    async fn read(&self) -> io::Result<Vec<u8>>;
    async fn get(&self) -> Result<u8>;
    async fn fine(&self) -> std::result::Result<u8, MyError>;
}

struct Impl;

impl Service for Impl {
    async fn read(&self) -> io::Result<Vec<u8>> {
        Ok(vec![])
    }
    async fn get(&self) -> Result<u8> {
        Ok(1)
    }
    async fn fine(&self) -> Result<u8> {
        Ok(1)
    }
}

async fn call(any: easy_rpc::Any) {
    let _ = any.read().await;
    let _ = any.get().await;
    let _: std::result::Result<u8, easy_rpc::RpcError<MyError>> = any.fine().await;
}

fn main() {
    let _ = (Impl.serve(), call);
}
