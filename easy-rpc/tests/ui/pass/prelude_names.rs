//! Service methods named like methods of prelude traits that the targets do not implement, or
//! that are found after the client's (`clone_from` takes `&mut self`), and like `call`: each is
//! called on every kind of target and resolves to the service's method (the types say so).
//! The names that do clash are reserved (`ui/fail/reserved_method.rs`, `ui/fail/prelude_clash.rs`).
#![deny(warnings)]

use easy_rpc::{All, AllResults, Any, ByKey, CallResult, Never};

#[easy_rpc::service]
pub trait Names {
    async fn clone_from(&self, x: u8) -> u8;
    async fn to_string(&self) -> u8;
    async fn eq(&self, x: u8) -> u8;
    async fn ne(&self, x: u8) -> u8;
    async fn cmp(&self) -> u8;
    async fn partial_cmp(&self) -> u8;
    async fn max(&self, x: u8) -> u8;
    async fn min(&self, x: u8) -> u8;
    async fn as_ref(&self) -> u8;
    async fn as_mut(&self) -> u8;
    async fn into_iter(&self) -> u8;
    async fn into_future(&self) -> u8;
    async fn poll(&self) -> u8;
    async fn extend(&self) -> u8;
    async fn drop(&self) -> u8;
    async fn call(&self) -> u8;
    async fn default(&self) -> u8;
    async fn from(&self) -> u8;
    async fn fmt(&self) -> u8;
    async fn hash(&self) -> u8;
    async fn borrow(&self) -> u8;
    async fn type_id(&self) -> u8;
}

struct Impl;

impl Names for Impl {
    async fn clone_from(&self, x: u8) -> u8 {
        x
    }
    async fn to_string(&self) -> u8 {
        0
    }
    async fn eq(&self, x: u8) -> u8 {
        x
    }
    async fn ne(&self, x: u8) -> u8 {
        x
    }
    async fn cmp(&self) -> u8 {
        0
    }
    async fn partial_cmp(&self) -> u8 {
        0
    }
    async fn max(&self, x: u8) -> u8 {
        x
    }
    async fn min(&self, x: u8) -> u8 {
        x
    }
    async fn as_ref(&self) -> u8 {
        0
    }
    async fn as_mut(&self) -> u8 {
        0
    }
    async fn into_iter(&self) -> u8 {
        0
    }
    async fn into_future(&self) -> u8 {
        0
    }
    async fn poll(&self) -> u8 {
        0
    }
    async fn extend(&self) -> u8 {
        0
    }
    async fn drop(&self) -> u8 {
        0
    }
    async fn call(&self) -> u8 {
        0
    }
    async fn default(&self) -> u8 {
        0
    }
    async fn from(&self) -> u8 {
        0
    }
    async fn fmt(&self) -> u8 {
        0
    }
    async fn hash(&self) -> u8 {
        0
    }
    async fn borrow(&self) -> u8 {
        0
    }
    async fn type_id(&self) -> u8 {
        0
    }
}

macro_rules! on_one {
    ($t:ident, $out:ty) => {{
        let _: $out = $t.clone_from(1).await;
        let _: $out = $t.to_string().await;
        let _: $out = $t.eq(1).await;
        let _: $out = $t.ne(1).await;
        let _: $out = $t.cmp().await;
        let _: $out = $t.partial_cmp().await;
        let _: $out = $t.max(1).await;
        let _: $out = $t.min(1).await;
        let _: $out = $t.as_ref().await;
        let _: $out = $t.as_mut().await;
        let _: $out = $t.into_iter().await;
        let _: $out = $t.into_future().await;
        let _: $out = $t.poll().await;
        let _: $out = $t.extend().await;
        let _: $out = $t.drop().await;
        let _: $out = $t.call().await;
        let _: $out = $t.default().await;
        let _: $out = $t.from().await;
        let _: $out = $t.fmt().await;
        let _: $out = $t.hash().await;
        let _: $out = $t.borrow().await;
        let _: $out = $t.type_id().await;
    }};
}

// Never run: there is no node.
#[allow(dead_code)]
async fn calls(any: Any, all: All, by_key: ByKey) {
    on_one!(any, CallResult<u8, Never>);
    on_one!(by_key, CallResult<u8, Never>);
    on_one!(all, AllResults<u8, Never>);
    let any = &any;
    on_one!(any, CallResult<u8, Never>);
    let all = &all;
    on_one!(all, AllResults<u8, Never>);
}

fn main() {
    let _ = Impl.serve();
}
