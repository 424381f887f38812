//! What `#[easy_rpc::service]` generates, run without a cluster: the service description, the
//! request names, the wire types' round trip, and the server glue calling the implementation.

use easy_rpc::__private::tarpc::RequestName;
use easy_rpc::{Handler, ServiceDef};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a charge returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Its id.
    pub id: u64,
}

/// Why a charge failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BillingError {
    /// Not enough money.
    Insufficient,
}

/// Billing.
#[easy_rpc::service(name = "billing.v1.Billing")]
pub trait Billing {
    /// The balance of an account.
    #[easy_rpc(idempotent)]
    async fn balance(account: String) -> u64;
    /// Charges an account.
    #[easy_rpc(timeout_ms = 2000)]
    async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError>;
    /// Is it there?
    async fn ping(&self);
}

struct MyBilling {
    balance: u64,
}

impl Billing for MyBilling {
    async fn balance(&self, account: String) -> u64 {
        self.balance + account.len() as u64
    }
    async fn charge(&self, _account: String, cents: u64) -> Result<Receipt, BillingError> {
        tokio::task::yield_now().await;
        if cents > self.balance {
            Err(BillingError::Insufficient)
        } else {
            Ok(Receipt { id: cents })
        }
    }
    async fn ping(&self) {}
}

#[test]
fn describes_the_service() {
    assert_eq!(BillingService::NAME, "billing.v1.Billing");
    assert_eq!(
        MyBilling { balance: 0 }.serve().name(),
        "billing.v1.Billing"
    );

    let balance = BillingRequest::Balance {
        account: "a".into(),
    };
    let info = BillingService::method(&balance);
    assert_eq!(
        (info.name, info.idempotent, info.timeout),
        ("balance", true, None)
    );
    assert_eq!(balance.name(), "balance");

    let charge = BillingRequest::Charge {
        account: "a".into(),
        cents: 1,
    };
    let info = BillingService::method(&charge);
    assert_eq!(info.name, "charge");
    assert!(!info.idempotent);
    assert_eq!(info.timeout, Some(Duration::from_millis(2000)));
    assert_eq!(charge.name(), "charge");

    let info = BillingService::method(&BillingRequest::Ping {});
    assert_eq!(
        (info.name, info.idempotent, info.timeout),
        ("ping", false, None)
    );

    // One `MethodInfo` per method, whichever request asks.
    assert!(std::ptr::eq(
        BillingService::method(&charge),
        BillingService::method(&BillingRequest::Charge {
            account: "b".into(),
            cents: 2
        })
    ));
}

#[test]
fn wire_types_round_trip() {
    let req = BillingRequest::Charge {
        account: "acct-1".into(),
        cents: 500,
    };
    let bytes = postcard::to_stdvec(&req).unwrap();
    match postcard::from_bytes::<BillingRequest>(&bytes).unwrap() {
        BillingRequest::Charge { account, cents } => {
            assert_eq!((account.as_str(), cents), ("acct-1", 500));
        }
        _ => panic!("wrong variant"),
    }

    let resp = BillingResponse::Charge(Err(BillingError::Insufficient));
    let bytes = postcard::to_stdvec(&resp).unwrap();
    match postcard::from_bytes::<BillingResponse>(&bytes).unwrap() {
        BillingResponse::Charge(r) => assert_eq!(r, Err(BillingError::Insufficient)),
        _ => panic!("wrong variant"),
    }
}

#[tokio::test]
async fn handler_calls_the_implementation() {
    let handler = BillingHandler(MyBilling { balance: 100 });

    let resp = handler
        .handle(BillingRequest::Balance {
            account: "abc".into(),
        })
        .await;
    assert!(matches!(resp, BillingResponse::Balance(103)));

    let resp = handler
        .handle(BillingRequest::Charge {
            account: "abc".into(),
            cents: 7,
        })
        .await;
    assert!(matches!(
        resp,
        BillingResponse::Charge(Ok(Receipt { id: 7 }))
    ));

    let resp = handler
        .handle(BillingRequest::Charge {
            account: "abc".into(),
            cents: 700,
        })
        .await;
    assert!(matches!(
        resp,
        BillingResponse::Charge(Err(BillingError::Insufficient))
    ));

    let resp = handler.handle(BillingRequest::Ping {}).await;
    assert!(matches!(resp, BillingResponse::Ping(())));

    // The handler's future is `Send`: the server can spawn it.
    let handler = std::sync::Arc::new(handler);
    let resp = tokio::spawn(async move { handler.handle(BillingRequest::Ping {}).await })
        .await
        .unwrap();
    assert!(matches!(resp, BillingResponse::Ping(())));
}
