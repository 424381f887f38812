//! Small helpers shared by the examples: logging set-up and printing the role table.

use std::fmt::Write;

use cluster_helper::{NodeId, Snapshot};

/// Installs a log subscriber on standard error: `RUST_LOG` decides the level (default `warn`),
/// tarpc's own events are off ([`easy_rpc::log::default_filter`]), colours only on a terminal.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            easy_rpc::log::default_filter(),
        ))
        .with_ansi(easy_rpc::log::colours_on_stderr())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Renders the registry as a table: one line per role with its serving nodes, then every
/// member with its status. `me` is marked with `*`.
pub fn render_role_table(snapshot: &Snapshot, me: &NodeId) -> String {
    let mut out = String::new();
    let mut roles: Vec<_> = snapshot.roles().collect();
    roles.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "--- role table (version {}) ---", snapshot.version());
    for (role, nodes) in roles {
        let names: Vec<String> = nodes.iter().map(|m| mark(&m.id, me)).collect();
        let _ = writeln!(out, "  {role:<12} {}", names.join(", "));
    }
    let _ = writeln!(out, "  members:");
    for m in snapshot.members() {
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "    {:<32} {:<8} [{}]",
            mark(&m.id, me),
            m.status.to_string(),
            roles.join(",")
        );
    }
    out
}

fn mark(id: &NodeId, me: &NodeId) -> String {
    if id == me {
        format!("{id}*")
    } else {
        id.to_string()
    }
}

pub mod services {
    //! The services of the demo and of the billing server/client examples, shared by the
    //! nodes that serve them and the nodes that call them.

    use serde::{Deserialize, Serialize};

    /// A completed charge.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Receipt {
        /// The account charged.
        pub account: String,
        /// The amount, in cents.
        pub cents: u64,
        /// The node that made the charge.
        pub node: String,
    }

    /// Why a charge was refused.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum BillingError {
        /// The amount must be positive.
        ZeroAmount,
        /// The account would go over its limit.
        OverLimit {
            /// The account's limit in cents.
            limit: u64,
        },
    }

    impl std::fmt::Display for BillingError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                BillingError::ZeroAmount => f.write_str("the amount must be positive"),
                BillingError::OverLimit { limit } => {
                    write!(f, "over the account's limit of {limit} cents")
                }
            }
        }
    }

    impl std::error::Error for BillingError {}

    /// Billing: balances and charges.
    #[easy_rpc::service]
    pub trait Billing {
        /// The balance of an account, in cents. Safe to run twice: callers may retry it.
        #[easy_rpc(idempotent)]
        async fn balance(account: String) -> u64;
        /// Charges an account; refused with a typed error when it cannot be done.
        async fn charge(account: String, cents: u64) -> Result<Receipt, BillingError>;
    }

    /// Audit: a log every audit node keeps.
    #[easy_rpc::service]
    pub trait Audit {
        /// Records an event; returns how many this node has recorded.
        async fn record(event: String) -> u64;
        /// The name of this node and how many events it has recorded.
        #[easy_rpc(idempotent)]
        async fn count() -> (String, u64);
    }

    /// Carts, sharded by user with `by_key`: one node owns each user's cart.
    #[easy_rpc::service]
    pub trait Cart {
        /// Adds an item to a user's cart; returns the owning node's name and the cart.
        async fn add_item(user: String, item: String) -> (String, Vec<String>);
    }
}

pub mod impls {
    //! Simple in-memory implementations of the example services.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::services::{Audit, Billing, BillingError, Cart, Receipt};

    /// Charges are kept per account in memory; the limit is 10 000 cents.
    #[derive(Debug)]
    pub struct BillingImpl {
        /// The node's name, reported in receipts.
        pub node: String,
        charged: Mutex<HashMap<String, u64>>,
    }

    impl BillingImpl {
        /// A billing service for node `node`.
        pub fn new(node: &str) -> Self {
            BillingImpl {
                node: node.to_owned(),
                charged: Mutex::new(HashMap::new()),
            }
        }
    }

    impl Billing for BillingImpl {
        async fn balance(&self, account: String) -> u64 {
            *self.charged.lock().unwrap().get(&account).unwrap_or(&0)
        }

        async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError> {
            if cents == 0 {
                return Err(BillingError::ZeroAmount);
            }
            let mut charged = self.charged.lock().unwrap();
            let total = charged.entry(account.clone()).or_default();
            if *total + cents > 10_000 {
                return Err(BillingError::OverLimit { limit: 10_000 });
            }
            *total += cents;
            Ok(Receipt {
                account,
                cents,
                node: self.node.clone(),
            })
        }
    }

    /// Counts recorded events.
    #[derive(Debug)]
    pub struct AuditImpl {
        /// The node's name.
        pub node: String,
        /// Events recorded.
        pub events: AtomicU64,
    }

    impl Audit for AuditImpl {
        async fn record(&self, _event: String) -> u64 {
            self.events.fetch_add(1, Ordering::Relaxed) + 1
        }
        async fn count(&self) -> (String, u64) {
            (self.node.clone(), self.events.load(Ordering::Relaxed))
        }
    }

    /// Carts in memory.
    #[derive(Debug)]
    pub struct CartImpl {
        /// The node's name.
        pub node: String,
        /// user -> items
        pub carts: Mutex<HashMap<String, Vec<String>>>,
    }

    impl Cart for CartImpl {
        async fn add_item(&self, user: String, item: String) -> (String, Vec<String>) {
            let mut carts = self.carts.lock().unwrap();
            let cart = carts.entry(user).or_default();
            cart.push(item);
            (self.node.clone(), cart.clone())
        }
    }
}
