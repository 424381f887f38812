//! What `#[easy_rpc::service]` reads: its arguments ([`ServiceArgs`]) and the trait
//! ([`ServiceDef`], made of [`Method`]s with their [`MethodOptions`]). Every check that can be
//! made on the syntax is made here, with an error at the offending span; the generators in
//! `generate.rs` only see valid definitions.

use std::collections::{HashMap, HashSet};

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, Ident, ItemTrait, Lit, LitStr, Pat, Path,
    PathArguments, ReturnType, Signature, Token, TraitItem, TraitItemFn, Type, TypeParamBound,
    Visibility, parse_quote,
};

/// Names of methods the call targets (`Any`, `All`, `ByKey`, `Target`) have themselves.
const RESERVED: &[&str] = &["call", "timeout", "strategy", "role", "owner", "clone"];
/// The name of the helper attribute on methods: `#[easy_rpc(idempotent, timeout_ms = 500)]`.
const ATTR: &str = "easy_rpc";

/// Collects errors so that one run of the macro reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The arguments of the macro: `#[easy_rpc::service(name = "billing.v1.Billing", crate = "::x")]`.
#[derive(Debug, Default)]
pub struct ServiceArgs {
    /// `name = "..."`: the service's wire name (default: the trait's name).
    pub name: Option<LitStr>,
    /// `crate = "..."`: the path of the easy_rpc crate (default: `::easy_rpc`).
    pub krate: Option<Path>,
}

impl ServiceArgs {
    /// Parses the macro's arguments (the tokens inside `#[easy_rpc::service(...)]`).
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = ServiceArgs::default();
        let parser = syn::meta::parser(|meta| args.parse_one(meta));
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }

    fn parse_one(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            if self.name.is_some() {
                return Err(meta.error("duplicate argument `name`"));
            }
            let lit = expect_str(&meta, "name = \"billing.v1.Billing\"")?;
            if lit.value().trim().is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    "the service name must not be empty",
                ));
            }
            self.name = Some(lit);
            Ok(())
        } else if meta.path.is_ident("crate") {
            if self.krate.is_some() {
                return Err(meta.error("duplicate argument `crate`"));
            }
            let lit = expect_str(&meta, "crate = \"::my_rpc\"")?;
            let path: Path = lit.parse()?;
            if path.segments.iter().any(|s| !s.arguments.is_none()) {
                return Err(syn::Error::new(
                    lit.span(),
                    "expected the path of a crate or module, e.g. `crate = \"::my_rpc\"`",
                ));
            }
            self.krate = Some(path);
            Ok(())
        } else {
            Err(meta.error(format!(
                "unknown argument `{}`: expected `name = \"...\"` or `crate = \"...\"`",
                meta.path.to_token_stream().to_string().replace(' ', "")
            )))
        }
    }
}

/// Parses `= "string"` after an argument's name.
fn expect_str(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let value = meta
        .value()
        .map_err(|_| meta.error(format!("expected `{example}`")))?;
    match value.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string: `{example}`"),
        )),
    }
}

/// A service: the trait under `#[easy_rpc::service]`, checked.
#[derive(Debug)]
pub struct ServiceDef {
    /// The trait's attributes (doc comments and others), kept on the server trait.
    pub attrs: Vec<Attribute>,
    /// The trait's visibility, given to every generated item.
    pub vis: Visibility,
    /// The trait's name.
    pub ident: Ident,
    /// The trait's own supertraits (the macro adds `Send + Sync + 'static`).
    pub supertraits: Punctuated<TypeParamBound, Token![+]>,
    /// The service's wire name.
    pub name: LitStr,
    /// The path of the easy_rpc crate (`::easy_rpc` unless renamed).
    pub krate: Path,
    /// The methods, in the trait's order.
    pub methods: Vec<Method>,
}

/// One method of the service.
#[derive(Debug)]
pub struct Method {
    /// Its attributes other than `#[easy_rpc(...)]`, kept on the server trait's method.
    pub attrs: Vec<Attribute>,
    /// Its name.
    pub ident: Ident,
    /// Its name in CamelCase: the variant of the request and response enums.
    pub variant: Ident,
    /// Whether the user wrote `&self` (the server trait has it either way).
    pub has_receiver: bool,
    /// Its arguments, without the receiver.
    pub args: Vec<Arg>,
    /// What it returns, as written (`()` if nothing).
    pub output: Type,
    /// What a client gets: `T` and `E` of `Result<T, E>`, or the whole return type.
    pub returns: Returns,
    /// Its `#[easy_rpc(...)]` options.
    pub options: MethodOptions,
}

impl Method {
    /// The method's doc comments (`#[doc = ...]` attributes).
    pub fn docs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("doc"))
    }

    /// The method's `#[deprecated]` attribute, if any.
    pub fn deprecated(&self) -> Option<&Attribute> {
        self.attrs.iter().find(|a| a.path().is_ident("deprecated"))
    }

    /// The method's name as the wire and errors know it (without `r#`).
    pub fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

/// One argument of a method: `account: String`.
#[derive(Debug)]
pub struct Arg {
    /// Its name.
    pub ident: Ident,
    /// Its type, as written.
    pub ty: Type,
}

/// How a client sees a method's result.
#[derive(Debug)]
pub enum Returns {
    /// The method returns `Result<T, E>`: a client gets `T`, or `E` as a remote error.
    Result {
        /// The `T` of `Result<T, E>`.
        ok: Box<Type>,
        /// The `E` of `Result<T, E>`.
        err: Box<Type>,
    },
    /// The method returns a plain `T` (the whole return type, [`Method::output`]): it cannot
    /// fail remotely.
    Plain,
}

/// A method's `#[easy_rpc(...)]` options.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MethodOptions {
    /// `idempotent`: the method may run twice, so calls may be retried after a timeout.
    pub idempotent: bool,
    /// `timeout_ms = N`: the method's default deadline.
    pub timeout_ms: Option<u64>,
}

impl ServiceDef {
    /// Checks the trait and reads the service from it, reporting all errors at once.
    pub fn parse(args: ServiceArgs, item: ItemTrait) -> syn::Result<Self> {
        let mut errors = Errors::default();

        if let Some(unsafety) = &item.unsafety {
            errors.at(unsafety, "an easy_rpc service trait cannot be `unsafe`");
        }
        if let Some(auto) = &item.auto_token {
            errors.at(auto, "an easy_rpc service trait cannot be an `auto` trait");
        }
        check_no_generics(&item.generics, "an easy_rpc service trait", &mut errors);
        let mut attrs = Vec::new();
        for attr in item.attrs {
            if attr.path().is_ident(ATTR) {
                errors.at(
                    &attr,
                    "service options go in the macro's arguments: \
                     `#[easy_rpc::service(name = \"...\")]`",
                );
            } else {
                attrs.push(attr);
            }
        }

        let mut methods: Vec<Method> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut variants: HashMap<String, Ident> = HashMap::new();
        for trait_item in item.items {
            let TraitItem::Fn(f) = trait_item else {
                errors.at(
                    &trait_item,
                    "an easy_rpc service trait may only contain methods (`async fn`)",
                );
                continue;
            };
            let method = match Method::parse(f) {
                Ok(method) => method,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let name = method.name();
            if name == "serve" {
                errors.at(
                    &method.ident,
                    "`serve` is generated by #[easy_rpc::service] (`MyImpl.serve()`): \
                     rename this method",
                );
                continue;
            }
            if RESERVED.contains(&name.as_str()) {
                errors.at(
                    &method.ident,
                    format!(
                        "`{name}` is a method of the call targets (`any(..).{name}(..)`), so \
                         callers could not reach this one: rename it"
                    ),
                );
                continue;
            }
            if names.contains(&name) {
                errors.at(
                    &method.ident,
                    format!("duplicate method `{name}`: a service's methods need distinct names"),
                );
                continue;
            }
            let variant = method.variant.to_string();
            if let Some(first) = variants.get(&variant) {
                errors.at(
                    &method.ident,
                    format!(
                        "methods `{first}` and `{name}` have the same name in CamelCase \
                         (`{variant}`), which names their request: rename one"
                    ),
                );
                continue;
            }
            names.insert(name.clone());
            variants.insert(variant, method.ident.clone());
            methods.push(method);
        }
        errors.finish()?;

        let name = args
            .name
            .unwrap_or_else(|| LitStr::new(&item.ident.unraw().to_string(), item.ident.span()));
        let krate = args.krate.unwrap_or_else(|| parse_quote!(::easy_rpc));
        Ok(ServiceDef {
            attrs,
            vis: item.vis,
            ident: item.ident,
            supertraits: item.supertraits,
            name,
            krate,
            methods,
        })
    }
}

impl Method {
    /// Checks one method, reporting all its errors at once.
    fn parse(f: TraitItemFn) -> syn::Result<Method> {
        let errors = &mut Errors::default();
        let mut attrs = Vec::new();
        let mut options = MethodOptions::default();
        for attr in f.attrs {
            if attr.path().is_ident(ATTR) {
                if let Err(e) = options.parse_attr(&attr) {
                    errors.push(e);
                }
            } else if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
                errors.at(
                    &attr,
                    "`cfg` on a service method is not supported: every node must see the same \
                     service definition",
                );
            } else {
                attrs.push(attr);
            }
        }
        if let Some(body) = &f.default {
            errors.at(
                body,
                "easy_rpc service methods cannot have a default body: implement them in the \
                 `impl` of the trait",
            );
        }

        let sig = f.sig;
        check_signature(&sig, errors);
        let mut has_receiver = false;
        let mut args = Vec::new();
        for (i, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(r) => {
                    if i != 0 {
                        errors.at(r, "`self` must be the first argument");
                    } else if r.reference.is_none()
                        || r.mutability.is_some()
                        || r.colon_token.is_some()
                    {
                        errors.at(
                            r,
                            "easy_rpc service methods take `&self` or no receiver \
                             (the implementation is shared by concurrent calls)",
                        );
                    }
                    has_receiver = true;
                }
                FnArg::Typed(arg) => {
                    if let Some(attr) = arg.attrs.first() {
                        errors.at(attr, "attributes on arguments are not supported");
                    }
                    check_type(&arg.ty, "an argument", errors);
                    match &*arg.pat {
                        Pat::Ident(p)
                            if p.by_ref.is_none()
                                && p.mutability.is_none()
                                && p.subpat.is_none() =>
                        {
                            args.push(Arg {
                                ident: p.ident.clone(),
                                ty: (*arg.ty).clone(),
                            });
                        }
                        pat => errors.at(
                            pat,
                            "arguments of easy_rpc service methods must be plain names \
                             (`name: Type`), not patterns",
                        ),
                    }
                }
            }
        }
        let output: Type = match &sig.output {
            ReturnType::Default => parse_quote!(()),
            ReturnType::Type(_, ty) => {
                check_type(ty, "the return type", errors);
                (**ty).clone()
            }
        };
        std::mem::take(errors).finish()?;
        let returns = split_result(&output);
        Ok(Method {
            attrs,
            variant: camel_case(&sig.ident),
            ident: sig.ident,
            has_receiver,
            args,
            output,
            returns,
            options,
        })
    }
}

/// The checks of a method's signature other than its arguments.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        errors.at(sig, "easy_rpc service methods must be `async fn`");
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness, "easy_rpc service methods cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "easy_rpc service methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "easy_rpc service methods cannot have an ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "easy_rpc service methods cannot be variadic");
    }
    check_no_generics(&sig.generics, "an easy_rpc service method", errors);
}

/// Generics (and where clauses) are not supported: a request must have one concrete type.
fn check_no_generics(generics: &syn::Generics, what: &str, errors: &mut Errors) {
    if !generics.params.is_empty() {
        errors.at(
            generics,
            format!(
                "{what} cannot be generic: its requests and responses are sent over the \
                 network and need concrete types"
            ),
        );
    }
    if let Some(clause) = &generics.where_clause {
        errors.at(clause, format!("{what} cannot have a `where` clause"));
    }
}

/// Rejects, at the top level of an argument or return type, what cannot cross the network:
/// borrowed data and `impl Trait`. (Other unserializable types are reported by serde's bounds.)
fn check_type(ty: &Type, what: &str, errors: &mut Errors) {
    match ungroup(ty) {
        Type::Reference(_) => errors.at(
            ty,
            format!(
                "{what} of an easy_rpc service method is sent over the network and must be an \
                 owned type (e.g. `String`, not `&str`)"
            ),
        ),
        Type::ImplTrait(_) => errors.at(
            ty,
            format!(
                "{what} of an easy_rpc service method must be a concrete type, not `impl Trait`"
            ),
        ),
        Type::Infer(_) => errors.at(
            ty,
            format!("{what} of an easy_rpc service method must be written out, not `_`"),
        ),
        _ => {}
    }
}

/// Looks through invisible groups (types passed through `macro_rules!`) and parentheses.
fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(g) => ty = &g.elem,
            Type::Paren(p) => ty = &p.elem,
            _ => return ty,
        }
    }
}

/// `Result<T, E>` (any path ending in `Result` with two type arguments) -> `T` and `E`;
/// anything else is a plain `T`.
pub fn split_result(ty: &Type) -> Returns {
    if let Type::Path(p) = ungroup(ty)
        && p.qself.is_none()
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(generic) = &last.arguments
        && generic.args.len() == 2
        && let (Some(GenericArgument::Type(ok)), Some(GenericArgument::Type(err))) =
            (generic.args.first(), generic.args.last())
    {
        return Returns::Result {
            ok: Box::new(ok.clone()),
            err: Box::new(err.clone()),
        };
    }
    Returns::Plain
}

/// `get_user_by_id` -> `GetUserById`, `r#type` -> `Type`, `getUser` -> `GetUser`.
pub fn camel_case(ident: &Ident) -> Ident {
    let mut out = String::new();
    let mut upper = true;
    for c in ident.unraw().to_string().chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'M');
    }
    Ident::new(&out, ident.span())
}

impl MethodOptions {
    /// Reads one `#[easy_rpc(...)]` attribute into these options.
    fn parse_attr(&mut self, attr: &Attribute) -> syn::Result<()> {
        const EXPECTED: &str = "expected `#[easy_rpc(idempotent)]`, `#[easy_rpc(timeout_ms = N)]` \
                                or both: `#[easy_rpc(idempotent, timeout_ms = N)]`";
        if !matches!(attr.meta, syn::Meta::List(_)) {
            return Err(syn::Error::new_spanned(attr, EXPECTED));
        }
        let mut errors = Errors::default();
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = self.parse_option(&meta) {
                errors.push(e);
                // Skip the rest of this option, so that the next ones are still checked.
                if meta.input.peek(Token![=]) {
                    let _ = meta.value()?.parse::<TokenStream>();
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
        errors.finish()
    }

    fn parse_option(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("idempotent") {
            if self.idempotent {
                return Err(meta.error("duplicate option `idempotent`"));
            }
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                return Err(meta.error("`idempotent` takes no value"));
            }
            self.idempotent = true;
            Ok(())
        } else if meta.path.is_ident("timeout_ms") {
            if self.timeout_ms.is_some() {
                return Err(meta.error("duplicate option `timeout_ms`"));
            }
            let value = meta
                .value()
                .map_err(|_| meta.error("expected `timeout_ms = N` (milliseconds)"))?;
            let expr: Expr = value.parse()?;
            let ms = match &expr {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) if int.suffix().is_empty() || int.suffix() == "u64" => {
                    int.base10_parse::<u64>().ok()
                }
                _ => None,
            };
            match ms {
                Some(0) => Err(syn::Error::new_spanned(
                    expr,
                    "`timeout_ms` must be greater than 0",
                )),
                Some(ms) => {
                    self.timeout_ms = Some(ms);
                    Ok(())
                }
                None => Err(syn::Error::new_spanned(
                    expr,
                    "expected a number of milliseconds (a `u64` literal): `timeout_ms = 2000`",
                )),
            }
        } else {
            Err(syn::Error::new(
                meta.path.span(),
                format!(
                    "unknown easy_rpc option `{}`: expected `idempotent` or `timeout_ms = N`",
                    meta.path.to_token_stream().to_string().replace(' ', "")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(args: TokenStream, item: ItemTrait) -> syn::Result<ServiceDef> {
        ServiceDef::parse(ServiceArgs::parse(args)?, item)
    }

    fn errors(args: TokenStream, item: ItemTrait) -> Vec<String> {
        match parse(args, item) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn ty(t: &Type) -> String {
        t.to_token_stream().to_string()
    }

    #[test]
    fn parses_a_full_service() {
        let def = parse(
            TokenStream::new(),
            parse_quote! {
                /// Billing.
                pub trait Billing {
                    /// Balance.
                    #[easy_rpc(idempotent)]
                    async fn balance(account: String) -> u64;
                    #[easy_rpc(timeout_ms = 2000)]
                    async fn charge(&self, account: String, cents: u64) -> Result<Receipt, BillingError>;
                    #[easy_rpc(idempotent, timeout_ms = 5)]
                    async fn ping(&self);
                }
            },
        )
        .unwrap();
        assert_eq!(def.ident, "Billing");
        assert_eq!(def.name.value(), "Billing");
        assert_eq!(def.krate.to_token_stream().to_string(), ":: easy_rpc");
        assert_eq!(def.attrs.len(), 1);
        assert!(matches!(def.vis, Visibility::Public(_)));
        let [balance, charge, ping] = &def.methods[..] else {
            panic!("three methods")
        };

        assert_eq!(balance.ident, "balance");
        assert_eq!(balance.variant, "Balance");
        assert!(!balance.has_receiver);
        assert_eq!(balance.docs().count(), 1);
        assert_eq!(balance.args.len(), 1);
        assert_eq!(balance.args[0].ident, "account");
        assert_eq!(ty(&balance.args[0].ty), "String");
        assert!(matches!(&balance.returns, Returns::Plain));
        assert_eq!(ty(&balance.output), "u64");
        assert_eq!(
            balance.options,
            MethodOptions {
                idempotent: true,
                timeout_ms: None
            }
        );

        assert!(charge.has_receiver);
        assert_eq!(charge.args.len(), 2);
        assert_eq!(charge.attrs.len(), 0, "the easy_rpc attribute is removed");
        assert!(
            matches!(&charge.returns, Returns::Result { ok, err } if ty(ok) == "Receipt" && ty(err) == "BillingError")
        );
        assert_eq!(charge.options.timeout_ms, Some(2000));
        assert!(!charge.options.idempotent);

        assert_eq!(ty(&ping.output), "()");
        assert!(matches!(&ping.returns, Returns::Plain));
        assert_eq!(
            ping.options,
            MethodOptions {
                idempotent: true,
                timeout_ms: Some(5)
            }
        );
    }

    #[test]
    fn parses_arguments() {
        let def = parse(
            quote!(name = "billing.v1.Billing", crate = "::my_rpc"),
            parse_quote!(
                trait Billing {}
            ),
        )
        .unwrap();
        assert_eq!(def.name.value(), "billing.v1.Billing");
        assert_eq!(def.krate.to_token_stream().to_string(), ":: my_rpc");
        assert!(def.methods.is_empty());
        assert!(matches!(def.vis, Visibility::Inherited));

        let def = parse(
            quote!(crate = "crate::rpc"),
            parse_quote!(
                trait r#Billing {}
            ),
        )
        .unwrap();
        assert_eq!(def.name.value(), "Billing");
        assert_eq!(def.krate.to_token_stream().to_string(), "crate :: rpc");
    }

    #[test]
    fn rejects_bad_arguments() {
        for (args, expected) in [
            (quote!(foo), "unknown argument `foo`"),
            (quote!(name), "expected `name = "),
            (quote!(name = 5), "expected a string"),
            (quote!(name = billing), "expected a string"),
            (quote!(name = ""), "must not be empty"),
            (quote!(name = "a", name = "b"), "duplicate argument `name`"),
            (quote!(crate = "not a path"), "expected"),
            (quote!(crate = "a::b<T>"), "expected the path of a crate"),
        ] {
            let e = ServiceArgs::parse(args.clone()).unwrap_err().to_string();
            assert!(e.contains(expected), "{args}: {e}");
        }
    }

    #[test]
    fn splits_results() {
        for (t, split) in [
            (quote!(Result<u8, E>), Some(("u8", "E"))),
            (
                quote!(std::result::Result<Vec<u8>, my::E>),
                Some(("Vec < u8 >", "my :: E")),
            ),
            (quote!(::core::result::Result<(), ()>), Some(("()", "()"))),
            (quote!(io::Result<u8>), None),
            (quote!(Option<u8>), None),
            (quote!(Result<u8, E, F>), None),
            (quote!(<T as X>::Result<u8, E>), None),
            (quote!(Result<'a, E>), None),
        ] {
            let parsed: Type = syn::parse2(t.clone()).unwrap();
            match (split_result(&parsed), split) {
                (Returns::Result { ok, err }, Some((o, e))) => {
                    assert_eq!((ty(&ok).as_str(), ty(&err).as_str()), (o, e), "{t}")
                }
                (Returns::Plain, None) => {}
                (r, _) => panic!("{t}: {r:?}"),
            }
        }
    }

    #[test]
    fn camel_cases_names() {
        for (name, camel) in [
            ("balance", "Balance"),
            ("get_user_by_id", "GetUserById"),
            ("getUser", "GetUser"),
            ("_private", "Private"),
            ("v2_get", "V2Get"),
            ("r#type", "Type"),
            ("a__b_", "AB"),
        ] {
            let ident: Ident = syn::parse_str(name).unwrap();
            assert_eq!(camel_case(&ident), camel);
        }
    }

    #[test]
    fn rejects_bad_methods() {
        let errors = errors(
            TokenStream::new(),
            parse_quote! {
                trait Bad {
                    fn not_async(&self);
                    async fn by_value(self);
                    async fn by_mut(&mut self);
                    async fn generic<T>(&self, t: T);
                    async fn where_clause(&self) where u8: Copy;
                    async fn pattern(&self, (a, b): (u8, u8));
                    async fn borrowed(&self, s: &str);
                    async fn body(&self) {}
                    #[easy_rpc(retry)]
                    async fn unknown_option(&self);
                    #[easy_rpc(timeout_ms = "x")]
                    async fn bad_timeout(&self);
                    #[easy_rpc]
                    async fn bare(&self);
                    async fn dup(&self);
                    async fn dup(&self);
                    async fn get_user(&self);
                    async fn getUser(&self);
                    async fn serve(&self);
                    const X: u8;
                    type T;
                }
            },
        );
        let expected = [
            "must be `async fn`",
            "take `&self` or no receiver",
            "take `&self` or no receiver",
            "cannot be generic",
            "cannot have a `where` clause",
            "plain names",
            "owned type",
            "default body",
            "unknown easy_rpc option `retry`",
            "expected a number of milliseconds",
            "expected `#[easy_rpc(idempotent)]`",
            "duplicate method `dup`",
            "same name in CamelCase (`GetUser`)",
            "`serve` is generated",
            "may only contain methods",
            "may only contain methods",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, x) in errors.iter().zip(expected) {
            assert!(e.contains(x), "{e:?} should contain {x:?}");
        }
    }

    #[test]
    fn rejects_bad_traits_and_options() {
        let errors = errors(
            TokenStream::new(),
            parse_quote! {
                #[easy_rpc(idempotent)]
                unsafe trait Bad<T> where T: Copy {
                    #[easy_rpc(idempotent, idempotent, timeout_ms = 0, nope, timeout_ms = 1u8)]
                    async fn m(&self);
                }
            },
        );
        let expected = [
            "cannot be `unsafe`",
            "cannot be generic",
            "cannot have a `where` clause",
            "service options go in the macro's arguments",
            "duplicate option `idempotent`",
            "must be greater than 0",
            "unknown easy_rpc option `nope`",
            "expected a number of milliseconds",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, x) in errors.iter().zip(expected) {
            assert!(e.contains(x), "{e:?} should contain {x:?}");
        }
    }
}
