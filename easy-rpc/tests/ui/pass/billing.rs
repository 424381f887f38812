//! The service of the design, with every kind of method: no receiver, `&self`, unit return,
//! `Result` return, options; implemented with plain `async fn`s, served, and called.
#![deny(warnings, missing_docs)]

use easy_rpc::{All, AllResults, Any, ByKey, CallResult, MethodInfo, Never, ServiceDef};
use serde::{Deserialize, Serialize};

/// What a charge returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// Its id.
    pub id: u64,
}

/// Why a charge failed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BillingError {
    /// Not enough money.
    Insufficient,
}

/// A `Result` with one argument.
pub type MyResult<T> = Result<T, String>;

/// Billing.
#[easy_rpc::service]
pub trait Billing {
    /// The balance of an account.
    #[easy_rpc(idempotent)]
    async fn balance(account: String) -> u64;
    /// Charges an account.
    #[easy_rpc(timeout_ms = 2000)]
    async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError>;
    /// Is it there?
    #[easy_rpc(idempotent, timeout_ms = 500, retries = 4, hedge = 99)]
    async fn ping(&self);
    /// A `Result` by its full path.
    async fn refund(&self, receipt: Receipt) -> std::result::Result<(), BillingError>;
    /// A one-argument `Result` alias is a plain return type.
    async fn history(&self) -> MyResult<Vec<u64>>;
}

struct MyBilling;

impl Billing for MyBilling {
    async fn balance(&self, _account: String) -> u64 {
        42
    }
    async fn charge(&self, _account: String, cents: u64) -> Result<Receipt, BillingError> {
        if cents > 100 {
            Err(BillingError::Insufficient)
        } else {
            Ok(Receipt { id: 1 })
        }
    }
    async fn ping(&self) {}
    async fn refund(&self, _receipt: Receipt) -> Result<(), BillingError> {
        Ok(())
    }
    async fn history(&self) -> MyResult<Vec<u64>> {
        Ok(vec![])
    }
}

// The client methods' types, on every target (never run: there is no node).
#[allow(dead_code)]
async fn calls(any: Any, all: All, by_key: ByKey) {
    let _: CallResult<u64, Never> = any.balance("a".into()).await;
    let _: CallResult<Receipt, BillingError> = any.charge("a".into(), 5).await;
    let _: CallResult<(), Never> = any.ping().await;
    let _: CallResult<(), BillingError> = any.refund(Receipt { id: 1 }).await;
    let _: CallResult<Result<Vec<u64>, String>, Never> = any.history().await;
    let _: AllResults<u64, Never> = all.balance("a".into()).await;
    let _: CallResult<Receipt, BillingError> = by_key.charge("a".into(), 5).await;
}

// Generic over the target, and the calls' futures are `Send + 'static`.
#[allow(dead_code)]
fn generic<C: BillingClient>(c: &C) -> impl Send + 'static {
    c.charge("a".into(), 1)
}

fn main() {
    let served: easy_rpc::Served = MyBilling.serve();
    assert_eq!(served.name(), "Billing");
    assert_eq!(<BillingService as ServiceDef>::NAME, "Billing");

    let info: &'static MethodInfo = BillingService::method(&BillingRequest::Charge {
        account: "a".into(),
        cents: 1,
    });
    assert_eq!(info.name, "charge");
    assert!(!info.idempotent);
    assert_eq!(info.timeout, Some(std::time::Duration::from_millis(2000)));
    let info = BillingService::method(&BillingRequest::Ping {});
    assert_eq!((info.name, info.idempotent), ("ping", true));
    assert_eq!(info.timeout, Some(std::time::Duration::from_millis(500)));
    assert_eq!(info.retries, Some(4));
    assert_eq!(info.hedge, Some(99.0));
    let info = BillingService::method(&BillingRequest::Balance {
        account: "a".into(),
    });
    assert_eq!(
        (info.name, info.idempotent, info.timeout, info.retries),
        ("balance", true, None, None)
    );
    assert_eq!(info.hedge, None);
}
