//! The `#[easy_rpc::service]` attribute macro. Use it through the `easy-rpc` crate, which
//! re-exports it as `easy_rpc::service` and documents it with runnable examples; this crate
//! only turns a trait into the code that the `easy-rpc` runtime calls.
//!
//! The macro reads the trait (`parse.rs`), checks everything that can be checked on its syntax,
//! with errors at the offending span, and writes one item per generated type (`generate.rs`).

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
/// `Send`, `serde::Serialize` and `serde::DeserializeOwned`, as they cross the network. A method
/// that returns `Result<T, E>` (a path ending in `Result` with two type arguments) gives a
/// client `T`, or `E` as `RpcError::Remote`; any other return type `T` (including `()`) cannot
/// fail remotely (`E = easy_rpc::Never`).
///
/// # Method options: `#[easy_rpc(...)]`
///
/// - `idempotent`: the method may run twice, so a call may be retried on another node after a
///   timeout or a lost connection.
/// - `timeout_ms = N`: the method's default deadline, in milliseconds.
///
/// Options combine: `#[easy_rpc(idempotent, timeout_ms = 500)]`.
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
