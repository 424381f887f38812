//! The `#[easy_rpc::service]` attribute macro. Use it through the `easy-rpc` crate, which
//! re-exports it as `easy_rpc::service` and documents it with runnable examples; this crate
//! only turns a trait into the code that the `easy-rpc` runtime calls.
//!
//! The macro reads the trait (`parse.rs`), checks everything that can be checked on its syntax,
//! with errors at the offending span (`errors.rs`; the method names it refuses, and why, are in
//! `reserved.rs`), and writes one item per generated type (`generate.rs`). On errors it still
//! writes what type-checks, and adds the errors: one mistake, one error.

use proc_macro::TokenStream;
use quote::ToTokens;

mod errors;
mod generate;
mod parse;
mod reserved;

use errors::Errors;

/// Turns a trait into an easy-rpc service: a server trait to implement, and client methods to
/// call on any node of a role.
///
/// ```ignore
/// #[easy_rpc::service]                       // or #[easy_rpc::service(name = "billing.v1.Billing")]
/// pub trait Billing {
///     /// Safe to run twice: callers may retry it on another node.
///     #[easy_rpc(idempotent)]
///     async fn balance(account: String) -> u64;
///     #[easy_rpc(timeout_ms = 2000)]
///     async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError>;
///     async fn ping(&self);
/// }
///
/// // Serving: implement the trait with plain `async fn`s (each takes `&self`), then serve it.
/// struct MyBilling;
/// impl Billing for MyBilling {
///     async fn balance(&self, account: String) -> u64 { 0 }
///     async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError> { todo!() }
///     async fn ping(&self) {}
/// }
/// node.serve(MyBilling.serve());
///
/// // Calling, from any node (`use BillingClient` brings the methods into scope):
/// let receipt: Receipt = easy_rpc::any("billing").charge("acct-1".into(), 500).await?;
/// ```
///
/// # The trait
///
/// Every method is an `async fn` with `&self` or no receiver, no generics, and arguments that
/// are plain names. Argument and return types must be owned,
/// `Send`, `serde::Serialize` and `serde::DeserializeOwned`, as they cross the network.
///
/// A method that returns `Result<T, E>` (a path ending in `Result` with two type arguments,
/// such as `std::result::Result<T, E>`) gives a client `T`, or `E` as `RpcError::Remote`; any
/// other return type `T` (including `()`) cannot fail remotely (`E = easy_rpc::Never`).
///
/// The macro sees only the tokens of the trait, not what a type alias stands for. So:
///
/// - a path ending in `Result` with another number of type arguments, such as `io::Result<T>`,
///   `fmt::Result` or a crate's own `type Result<T> = std::result::Result<T, MyError>`, is
///   refused (its error type is hidden): write `Result<T, MyError>` in full;
/// - any other alias of a `Result` (`type MyResult<T> = Result<T, MyError>`) is a plain value:
///   the method cannot fail remotely, and callers get the whole `MyResult<T>` as `T`.
///
/// # Method options: `#[easy_rpc(...)]`
///
/// - `idempotent`: the method may run twice, so a call is retried on another node after a lost
///   connection, or after an attempt that timed out when the caller set an attempt timeout
///   (every call is rerouted when it provably did not run).
/// - `timeout_ms = N`: the method's default deadline, in milliseconds (`N > 0`).
/// - `retries = N` (idempotent methods only): how many times a call is retried, overriding
///   the node's `ClientOptions::retries`; a call's `.retries(n)` overrides it in turn, and
///   every retry also draws from the node's retry budget.
///
/// - `hedge` or `hedge = P` (idempotent methods only): a call through `any` (or a direct
///   target) that has not been answered after the `P`th percentile of the method's recent
///   latencies (95 without a value; `0 < P < 100`) sends a second request to another node,
///   takes the first answer and cancels the other (`easy_rpc::Hedge`); a call's `.hedge(..)`
///   overrides it, and every second request draws from the node's retry budget. `by_key` and
///   `all` calls are not hedged.
///
/// Options combine: `#[easy_rpc(idempotent, timeout_ms = 500, retries = 4, hedge = 99)]`.
///
/// # Reserved method names
///
/// A service method named like a method that the call targets have could not be called on
/// them, so these names are refused:
///
/// - `timeout`, `strategy`, `role`, `owner`, `wait_for_node`, `retries`, `attempt_timeout`,
///   `hedge`: methods of `Any`, `All`, `ByKey` or `To` themselves, which win over the client
///   trait's;
/// - `clone`, `to_owned`: `Clone` and `ToOwned` (in the prelude) apply to the targets, so a
///   call would be ambiguous;
/// - `into`, `try_into`: `Into` and `TryInto` (in the prelude) take the target by value, so
///   they are found before the client method;
/// - any name starting with `__`: kept for the plumbing between generated code and easy-rpc;
/// - `serve`: generated on the server trait.
///
/// Other prelude methods (`clone_from`, `to_string`, `eq`, `as_ref`, `into_iter`, ...) are
/// fine: the targets do not implement their traits, or the client's method is found first.
///
/// # Two services with a method of the same name
///
/// If two client traits with a method of the same name are in scope, `any(..).balance(..)` is
/// ambiguous (`error[E0034]`, whose help shows the forms below). Name the service's client
/// trait at the call:
///
/// ```ignore
/// use billing::BillingClient;
/// use ledger::LedgerClient;
///
/// let cents = BillingClient::balance(&easy_rpc::any("billing"), "acct-1".into()).await?;
/// let entries = LedgerClient::balance(&easy_rpc::all("ledger"), "acct-1".into()).await;
/// ```
///
/// or bring only one of them into scope where the call is made
/// (`use billing::BillingClient as _;` inside a function or module).
///
/// # Macro arguments
///
/// - `name = "billing.v1.Billing"`: the service's name on the wire (default: the trait's name).
///   Nodes that serve and call a service must agree on it.
/// - `crate = "::my_rpc"`: the path of the easy-rpc crate, if it is not `::easy_rpc`.
///
/// # What it generates
///
/// For `trait Billing`, with the trait's visibility:
///
/// - `trait Billing`: the server trait. Each method takes `&self` and returns
///   `impl Future<Output = T> + Send`, so it is implemented with `async fn`; the trait requires
///   `Send + Sync + 'static` and provides `fn serve(self) -> easy_rpc::Served`.
/// - `trait BillingClient`: the client methods (same arguments, without the receiver), available
///   on every `easy_rpc::Target` (`any(..)`, `all(..)`, `by_key(..)`).
/// - `struct BillingService`: the service's `easy_rpc::ServiceDef` (name, types, method options).
/// - `BillingRequest`, `BillingResponse`, `BillingHandler<T>`: hidden wire types and server glue.
///
/// # Errors
///
/// Mistakes in the trait are reported at their span, all at once. The macro still generates
/// the traits from what it could read, so that a mistake is one error and not one more at
/// every `impl` of the trait and every call: an unknown option is ignored, a duplicate method
/// dropped, and a method it cannot send (not `async`, generic, a borrowed argument, ...) is
/// kept on the server trait as written and declared on the client trait, but not sent.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into()).into()
}

/// Reads the trait and generates the service. On errors, like tokio's macros, it still
/// generates what it can (see `parse::Form`) and adds the errors, so that the user's impls of
/// the trait and calls of its methods do not fail too: one mistake is one error.
fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let args = parse::ServiceArgs::parse(args, &mut errors);
    let mut tokens = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Trait(item)) => {
            let def = parse::ServiceDef::parse(args, item, &mut errors);
            generate::service(&def)
        }
        Ok(other) => {
            errors.at(
                item_head(&other),
                "expected a trait: #[easy_rpc::service] goes on a `trait` whose methods are the \
                 service's methods",
            );
            item
        }
        Err(e) => {
            errors.push(e);
            item
        }
    };
    tokens.extend(errors.into_compile_errors());
    tokens
}

/// Where to point the "expected a trait" error: the item's keyword and name.
fn item_head(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::quote;
    use syn::Item;
    match item {
        Item::Struct(i) => {
            let (vis, kw, ident) = (&i.vis, &i.struct_token, &i.ident);
            quote!(#vis #kw #ident)
        }
        Item::Enum(i) => {
            let (vis, kw, ident) = (&i.vis, &i.enum_token, &i.ident);
            quote!(#vis #kw #ident)
        }
        Item::Union(i) => {
            let (vis, kw, ident) = (&i.vis, &i.union_token, &i.ident);
            quote!(#vis #kw #ident)
        }
        Item::Mod(i) => {
            let (vis, kw, ident) = (&i.vis, &i.mod_token, &i.ident);
            quote!(#vis #kw #ident)
        }
        Item::Fn(i) => {
            let (vis, sig) = (&i.vis, &i.sig);
            quote!(#vis #sig)
        }
        Item::Impl(i) => {
            let (kw, ty) = (&i.impl_token, &i.self_ty);
            quote!(#kw #ty)
        }
        other => other.to_token_stream(),
    }
}
