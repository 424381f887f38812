//! Two services with a method of the same name in scope: the call is ambiguous, and the
//! compiler's note and help name both client traits (see `ui/pass/same_method_name.rs` for
//! how to call each).
#[easy_rpc::service]
pub trait Billing {
    async fn balance(account: String) -> u64;
}

#[easy_rpc::service]
pub trait Ledger {
    async fn balance(account: String) -> u64;
}

async fn call() {
    let _ = easy_rpc::any("billing").balance("acct".into()).await;
}

fn main() {
    let _ = call;
}
