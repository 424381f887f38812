//! Two services with a method of the same name, both in scope: each is called through its
//! client trait (the fully qualified form the compiler suggests), or with only one client
//! trait in scope where the call is made.
#![deny(warnings)]

mod billing {
    #[easy_rpc::service]
    pub trait Billing {
        async fn balance(account: String) -> u64;
    }
}

mod ledger {
    #[easy_rpc::service]
    pub trait Ledger {
        async fn balance(account: String) -> Result<i64, String>;
    }
}

use billing::BillingClient;
use easy_rpc::{AllResults, CallResult, Never};
use ledger::LedgerClient;

// Never run: there is no node.
#[allow(dead_code)]
async fn calls() {
    let _: CallResult<u64, Never> =
        BillingClient::balance(&easy_rpc::any("billing"), "acct".into()).await;
    let _: CallResult<i64, String> =
        LedgerClient::balance(&easy_rpc::any("ledger"), "acct".into()).await;
    let _: AllResults<u64, Never> =
        BillingClient::balance(&easy_rpc::all("billing"), "acct".into()).await;
    let _: CallResult<i64, String> =
        LedgerClient::balance(&easy_rpc::by_key("ledger", "acct"), "acct".into()).await;
}

// Or one client trait in scope where the call is made.
#[allow(dead_code)]
mod one_in_scope {
    use crate::billing::BillingClient as _;

    async fn call() -> easy_rpc::CallResult<u64, easy_rpc::Never> {
        easy_rpc::any("billing").balance("acct".into()).await
    }
}

// Generic code names the bound it means.
#[allow(dead_code)]
fn generic<C: BillingClient + LedgerClient>(c: &C) -> impl Send + 'static {
    (
        BillingClient::balance(c, "acct".into()),
        LedgerClient::balance(c, "acct".into()),
    )
}

fn main() {}
