//! What `#[easy_rpc::service]` reads: its arguments ([`ServiceArgs`]) and the trait
//! ([`ServiceDef`], made of [`Method`]s with their [`MethodOptions`]). Every check that can be
//! made on the syntax is made here, with an error at the offending span.
//!
//! Reading never stops at an error: each one goes to [`Errors`] and the service is still read
//! as far as it can be, minus what is wrong (an unknown option is ignored, a duplicate method
//! dropped, a method whose signature cannot be sent is marked [`Form::Partial`]). The macro
//! then generates the traits from that and adds the errors, so that the user's impls of the
//! trait and calls of its methods still type-check: one mistake is one error, not one at every
//! impl and call site (as tokio's macros do).

use std::collections::{HashMap, HashSet};

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, Generics, Ident, ItemTrait, Lit, LitStr, Pat,
    PatIdent, Path, PathArguments, ReturnType, Signature, Token, TraitItem, TraitItemFn, Type,
    TypeParamBound, Visibility, parse_quote,
};

use crate::errors::Errors;
use crate::reserved;

/// The name of the helper attribute on methods: `#[easy_rpc(idempotent, timeout_ms = 500)]`.
const ATTR: &str = "easy_rpc";

/// The arguments of the macro: `#[easy_rpc::service(name = "billing.v1.Billing", crate = "::x")]`.
#[derive(Debug, Default)]
pub struct ServiceArgs {
    /// `name = "..."`: the service's wire name (default: the trait's name).
    pub name: Option<LitStr>,
    /// `crate = "..."`: the path of the easy_rpc crate (default: `::easy_rpc`).
    pub krate: Option<Path>,
}

impl ServiceArgs {
    /// Reads the macro's arguments (the tokens inside `#[easy_rpc::service(...)]`); a wrong
    /// argument is reported and left at its default.
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = ServiceArgs::default();
        let parser = syn::meta::parser(|meta| {
            if let Err(e) = args.parse_one(&meta) {
                errors.push(e);
                skip_rest(meta.input)?;
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
            errors.push(e);
        }
        args
    }

    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            if self.name.is_some() {
                return Err(meta.error("duplicate argument `name`"));
            }
            let lit = expect_str(meta, "name = \"billing.v1.Billing\"")?;
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
            let lit = expect_str(meta, "crate = \"::my_rpc\"")?;
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

/// After an error in one argument or option, skips what is left of it (up to the next `,`), so
/// that the next ones are still read.
fn skip_rest(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
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

/// A service: the trait under `#[easy_rpc::service]`, read.
#[derive(Debug)]
pub struct ServiceDef {
    /// The trait's attributes (doc comments and others), kept on the server trait.
    pub attrs: Vec<Attribute>,
    /// The trait's visibility, given to every generated item.
    pub vis: Visibility,
    /// `unsafe`, an error kept on the server trait so that the user's `unsafe impl`s match.
    pub unsafety: Option<Token![unsafe]>,
    /// The trait's name.
    pub ident: Ident,
    /// The trait's generics, an error kept on the server trait so that the user's impls
    /// match. With generic parameters, only the server trait is generated.
    pub generics: Generics,
    /// The trait's own supertraits (the macro adds `Send + Sync + 'static`).
    pub supertraits: Punctuated<TypeParamBound, Token![+]>,
    /// The service's wire name.
    pub name: LitStr,
    /// The path of the easy_rpc crate (`::easy_rpc` unless renamed).
    pub krate: Path,
    /// The trait's items, in its order.
    pub items: Vec<Entry>,
}

impl ServiceDef {
    /// The methods, in the trait's order.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.items.iter().filter_map(|item| match item {
            Entry::Method(m) => Some(m),
            Entry::Other(_) => None,
        })
    }

    /// The methods sent over the network ([`Form::Full`]), in the trait's order.
    pub fn wire_methods(&self) -> impl Iterator<Item = &Method> {
        self.methods().filter(|m| matches!(m.form, Form::Full))
    }

    /// Whether the trait has generic parameters (an error): then only the server trait is
    /// generated, as the rest would need concrete types.
    pub fn is_generic(&self) -> bool {
        !self.generics.params.is_empty()
    }

    /// Whether the trait has a method of its own named `serve` (an error): then the generated
    /// `serve` is left out, so that the user's impls still match.
    pub fn declares_serve(&self) -> bool {
        self.methods().any(|m| m.name() == "serve")
    }
}

/// One item of the service trait.
#[derive(Debug)]
pub enum Entry {
    /// A method.
    Method(Method),
    /// Anything else (an error), kept as written on the server trait so that impls match.
    Other(TraitItem),
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
    /// How much of it is generated.
    pub form: Form,
}

/// How much of a method is generated: everything, or, when it has errors, only what still
/// type-checks, so that impls of the trait and calls of the method do not fail because of it.
#[derive(Debug)]
pub enum Form {
    /// Everything: the server trait's method, request and response variants, the handler's
    /// arm, the method's `MethodInfo` and the client method.
    Full,
    /// The method has errors: it is not sent (no variants, no handler arm, no `MethodInfo`).
    Partial {
        /// The method as the user wrote it, for the server trait, when the usual signature
        /// there (`fn(&self, ..) -> impl Future + Send`) would not match an impl of what the
        /// user wrote (not `async`, `&mut self`, generics, a default body, ...).
        as_written: Option<Box<TraitItemFn>>,
        /// Whether the client trait has the method, with a body that never runs (the crate
        /// does not compile), so that calls type-check. Not when its signature cannot be
        /// written there (generics, a borrowed or `impl Trait` return type, `_`).
        client: bool,
    },
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

    /// The method's `#[cfg(..)]` and `#[cfg_attr(..)]` attributes (an error).
    pub fn cfgs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| is_cfg(a))
    }

    /// The method's name as the wire and errors know it (without `r#`).
    pub fn name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// Marks the method as not sent, for an error found after it was read.
    fn unsend(&mut self) {
        if matches!(self.form, Form::Full) {
            self.form = Form::Partial {
                as_written: None,
                client: true,
            };
        }
    }
}

fn is_cfg(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr")
}

/// One argument of a method: `account: String`.
#[derive(Debug)]
pub struct Arg {
    /// Its name (one made up if the user wrote a pattern, an error).
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
#[derive(Debug, Default)]
pub struct MethodOptions {
    /// `idempotent`: the method may run twice, so calls may be retried after a lost connection.
    pub idempotent: bool,
    /// `timeout_ms = N`: the method's default deadline.
    pub timeout_ms: Option<u64>,
    /// `retries = N`: how many times an idempotent call is sent again after a lost connection
    /// or an attempt that timed out (with its span, for the check that the method is
    /// idempotent).
    pub retries: Option<(u32, Span)>,
    /// `hedge` or `hedge = P`: the percentile of the method's recent latencies after which a
    /// call sends a second request to another node (95 without a value; with its span, for the
    /// check that the method is idempotent).
    pub hedge: Option<(f64, Span)>,
}

impl ServiceDef {
    /// Checks the trait and reads the service from it: every error goes to `errors`, and what
    /// is wrong is left out or kept as written (see [`Form`]).
    pub fn parse(args: ServiceArgs, item: ItemTrait, errors: &mut Errors) -> Self {
        if let Some(unsafety) = &item.unsafety {
            errors.at(unsafety, "an easy_rpc service trait cannot be `unsafe`");
        }
        if let Some(auto) = &item.auto_token {
            errors.at(auto, "an easy_rpc service trait cannot be an `auto` trait");
        }
        check_no_generics(&item.generics, "an easy_rpc service trait", errors);
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

        let mut items: Vec<Entry> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut variants: HashMap<String, Ident> = HashMap::new();
        for trait_item in item.items {
            let TraitItem::Fn(f) = trait_item else {
                errors.at(
                    &trait_item,
                    "an easy_rpc service trait may only contain methods (`async fn`)",
                );
                items.push(Entry::Other(trait_item));
                continue;
            };
            let mut method = Method::parse(f, errors);
            let name = method.name();
            if names.contains(&name) {
                errors.at(
                    &method.ident,
                    format!("duplicate method `{name}`: a service's methods need distinct names"),
                );
                // The trait cannot have it twice; impls have the first one.
                continue;
            }
            if name == "serve" {
                errors.at(
                    &method.ident,
                    "`serve` is generated by #[easy_rpc::service] (`MyImpl.serve()`): \
                     rename this method",
                );
                method.unsend();
            } else if let Some(reason) = reserved::reason(&name) {
                errors.at(&method.ident, reason);
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
                method.unsend();
            } else {
                variants.insert(variant, method.ident.clone());
            }
            names.insert(name);
            items.push(Entry::Method(method));
        }

        let name = args
            .name
            .unwrap_or_else(|| LitStr::new(&item.ident.unraw().to_string(), item.ident.span()));
        let krate = args.krate.unwrap_or_else(|| parse_quote!(::easy_rpc));
        ServiceDef {
            attrs,
            vis: item.vis,
            unsafety: item.unsafety,
            ident: item.ident,
            generics: item.generics,
            supertraits: item.supertraits,
            name,
            krate,
            items,
        }
    }
}

impl Method {
    /// Checks one method and reads it, reporting all its errors; a method with errors is read
    /// as far as it can be ([`Form::Partial`]).
    fn parse(f: TraitItemFn, errors: &mut Errors) -> Method {
        // Whether the usual server signature would not match what the user wrote.
        let mut as_written = false;
        // Whether the method cannot be sent.
        let mut unsent = false;
        // Whether a client method can be declared for it.
        let mut client = true;

        let mut attrs = Vec::new();
        let mut options = MethodOptions::default();
        for attr in &f.attrs {
            if attr.path().is_ident(ATTR) {
                options.parse_attr(attr, errors);
            } else if is_cfg(attr) {
                errors.at(
                    attr,
                    "`cfg` on a service method is not supported: every node must see the same \
                     service definition",
                );
                unsent = true;
                attrs.push(attr.clone());
            } else {
                attrs.push(attr.clone());
            }
        }
        if let Some((_, span)) = options.retries
            && !options.idempotent
        {
            errors.push(syn::Error::new(
                span,
                "`retries` applies to idempotent methods only: a call that may have run is never \
                 sent twice (add `idempotent` if running it twice is safe)",
            ));
            options.retries = None;
        }
        if let Some((_, span)) = options.hedge
            && !options.idempotent
        {
            errors.push(syn::Error::new(
                span,
                "`hedge` applies to idempotent methods only: a hedged call may run on two nodes \
                 (add `idempotent` if running it twice is safe)",
            ));
            options.hedge = None;
        }
        if let Some(body) = &f.default {
            errors.at(
                body,
                "easy_rpc service methods cannot have a default body: implement them in the \
                 `impl` of the trait",
            );
            as_written = true;
        }

        let sig = &f.sig;
        if !check_signature(sig, errors) {
            as_written = true;
        }
        if !sig.generics.params.is_empty() {
            client = false;
        }
        let mut has_receiver = false;
        let mut args = Vec::new();
        for (i, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(r) => {
                    if i != 0 {
                        errors.at(r, "`self` must be the first argument");
                        as_written = true;
                    } else if r.reference.is_none()
                        || r.mutability.is_some()
                        || r.colon_token.is_some()
                    {
                        errors.at(
                            r,
                            "easy_rpc service methods take `&self` or no receiver \
                             (the implementation is shared by concurrent calls)",
                        );
                        as_written = true;
                    }
                    has_receiver = true;
                }
                FnArg::Typed(arg) => {
                    if let Some(attr) = arg.attrs.first() {
                        errors.at(attr, "attributes on arguments are not supported");
                    }
                    match check_type(&arg.ty, "an argument", errors) {
                        TypeCheck::Ok => {}
                        TypeCheck::Unsendable => unsent = true,
                        TypeCheck::Unwritable => (unsent, client) = (true, false),
                    }
                    let ident = match &*arg.pat {
                        Pat::Ident(p)
                            if p.by_ref.is_none()
                                && p.mutability.is_none()
                                && p.subpat.is_none() =>
                        {
                            p.ident.clone()
                        }
                        pat => {
                            errors.at(
                                pat,
                                "arguments of easy_rpc service methods must be plain names \
                                 (`name: Type`), not patterns",
                            );
                            made_up_arg(i)
                        }
                    };
                    args.push(Arg {
                        ident,
                        ty: (*arg.ty).clone(),
                    });
                }
            }
        }
        let output: Type = match &sig.output {
            ReturnType::Default => parse_quote!(()),
            ReturnType::Type(_, ty) => {
                if check_type(ty, "the return type", errors) != TypeCheck::Ok {
                    (unsent, client) = (true, false);
                }
                (**ty).clone()
            }
        };
        let returns = match split_result(&output) {
            Ok(returns) => returns,
            Err(e) => {
                errors.push(e);
                unsent = true;
                Returns::Plain
            }
        };

        let form = if as_written {
            Form::Partial {
                as_written: Some(Box::new(as_written_for_server(f.clone(), has_receiver))),
                client,
            }
        } else if unsent {
            Form::Partial {
                as_written: None,
                client,
            }
        } else {
            Form::Full
        };
        Method {
            attrs,
            variant: camel_case(&f.sig.ident),
            ident: f.sig.ident,
            has_receiver,
            args,
            output,
            returns,
            options,
            form,
        }
    }
}

/// The name given to argument `i` written as a pattern (an error).
fn made_up_arg(i: usize) -> Ident {
    Ident::new(&format!("__arg{i}"), Span::call_site())
}

/// A method kept as the user wrote it on the server trait, made to compile there: without
/// `#[easy_rpc(..)]`, attributes on arguments, `const` and `...`, with `&self` if it had no receiver (impls
/// have it), and, without a body, with names instead of patterns (a bodyless method cannot
/// have patterns).
fn as_written_for_server(mut f: TraitItemFn, has_receiver: bool) -> TraitItemFn {
    f.attrs.retain(|a| !a.path().is_ident(ATTR));
    // Not allowed in a trait either: the compiler would report them a second time.
    f.sig.constness = None;
    f.sig.variadic = None;
    for (i, input) in f.sig.inputs.iter_mut().enumerate() {
        match input {
            FnArg::Typed(arg) => {
                arg.attrs.clear();
                let plain = matches!(
                    &*arg.pat,
                    Pat::Ident(PatIdent {
                        by_ref: None,
                        mutability: None,
                        subpat: None,
                        ..
                    })
                );
                if f.default.is_none() && !plain {
                    let ident = match &*arg.pat {
                        Pat::Ident(p) => p.ident.clone(),
                        _ => made_up_arg(i),
                    };
                    *arg.pat = parse_quote!(#ident);
                }
            }
            // `mut self` is a pattern too.
            FnArg::Receiver(r) if f.default.is_none() && r.reference.is_none() => {
                r.mutability = None;
            }
            FnArg::Receiver(_) => {}
        }
    }
    if !has_receiver {
        f.sig.inputs.insert(0, parse_quote!(&self));
    }
    f
}

/// The checks of a method's signature other than its arguments; `false` if the usual server
/// signature would not match an impl of what the user wrote.
fn check_signature(sig: &Signature, errors: &mut Errors) -> bool {
    let mut usual = true;
    if sig.asyncness.is_none() {
        errors.at(sig, "easy_rpc service methods must be `async fn`");
        usual = false;
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness, "easy_rpc service methods cannot be `const`");
        usual = false;
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "easy_rpc service methods cannot be `unsafe`");
        usual = false;
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "easy_rpc service methods cannot have an ABI");
        usual = false;
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "easy_rpc service methods cannot be variadic");
        usual = false;
    }
    if !check_no_generics(&sig.generics, "an easy_rpc service method", errors) {
        usual = false;
    }
    usual
}

/// Generics (and where clauses) are not supported: a request must have one concrete type.
/// `false` if there are any.
fn check_no_generics(generics: &syn::Generics, what: &str, errors: &mut Errors) -> bool {
    let mut none = true;
    if !generics.params.is_empty() {
        errors.at(
            generics,
            format!(
                "{what} cannot be generic: its requests and responses are sent over the \
                 network and need concrete types"
            ),
        );
        none = false;
    }
    if let Some(clause) = &generics.where_clause {
        errors.at(clause, format!("{what} cannot have a `where` clause"));
        none = false;
    }
    none
}

/// What [`check_type`] found.
#[derive(Debug, PartialEq, Eq)]
enum TypeCheck {
    /// Nothing wrong at the top level.
    Ok,
    /// It cannot be sent (borrowed, `impl Trait`), but it can be written in a signature.
    Unsendable,
    /// It cannot be written in a generated signature either (`_`).
    Unwritable,
}

/// Rejects, at the top level of an argument or return type, what cannot cross the network:
/// borrowed data and `impl Trait`. (Other unserializable types are reported by serde's bounds.)
fn check_type(ty: &Type, what: &str, errors: &mut Errors) -> TypeCheck {
    match ungroup(ty) {
        Type::Reference(_) => {
            errors.at(
                ty,
                format!(
                    "{what} of an easy_rpc service method is sent over the network and must \
                     be an owned type (e.g. `String`, not `&str`)"
                ),
            );
            TypeCheck::Unsendable
        }
        Type::ImplTrait(_) => {
            errors.at(
                ty,
                format!(
                    "{what} of an easy_rpc service method must be a concrete type, not \
                     `impl Trait`"
                ),
            );
            TypeCheck::Unsendable
        }
        Type::Infer(_) => {
            errors.at(
                ty,
                format!("{what} of an easy_rpc service method must be written out, not `_`"),
            );
            TypeCheck::Unwritable
        }
        _ => TypeCheck::Ok,
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

/// `Result<T, E>` (any path ending in `Result` with two type arguments) -> `T` and `E`; any
/// other path ending in `Result` is an error (the macro cannot see what an alias such as
/// `io::Result<T>` stands for, so it cannot know `E`); anything else is a plain `T`.
pub fn split_result(ty: &Type) -> syn::Result<Returns> {
    let Type::Path(p) = ungroup(ty) else {
        return Ok(Returns::Plain);
    };
    let Some(last) = p.path.segments.last() else {
        return Ok(Returns::Plain);
    };
    if last.ident != "Result" {
        return Ok(Returns::Plain);
    }
    if p.qself.is_none()
        && let PathArguments::AngleBracketed(generic) = &last.arguments
        && generic.args.len() == 2
        && let (Some(GenericArgument::Type(ok)), Some(GenericArgument::Type(err))) =
            (generic.args.first(), generic.args.last())
    {
        return Ok(Returns::Result {
            ok: Box::new(ok.clone()),
            err: Box::new(err.clone()),
        });
    }
    let types = match &last.arguments {
        PathArguments::AngleBracketed(generic) => generic
            .args
            .iter()
            .filter(|a| matches!(a, GenericArgument::Type(_)))
            .count(),
        _ => 0,
    };
    let what = match types {
        0 => "a `Result` without type arguments",
        1 => "a `Result` with one type argument",
        _ => "this `Result`",
    };
    Err(syn::Error::new_spanned(
        ty,
        format!(
            "{what} is an alias whose error type #[easy_rpc::service] cannot see: write \
             `Result<T, E>` in full (or `std::result::Result<T, E>`), so that callers get `E` \
             as `RpcError::Remote`"
        ),
    ))
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

/// Options compare by value; the spans of `retries` and `hedge` (kept for one error message
/// each) are not part of it.
impl PartialEq for MethodOptions {
    fn eq(&self, other: &Self) -> bool {
        self.idempotent == other.idempotent
            && self.timeout_ms == other.timeout_ms
            && self.retries.map(|(n, _)| n) == other.retries.map(|(n, _)| n)
            && self.hedge.map(|(p, _)| p.to_bits()) == other.hedge.map(|(p, _)| p.to_bits())
    }
}

impl Eq for MethodOptions {}

impl MethodOptions {
    /// Reads one `#[easy_rpc(...)]` attribute into these options; a wrong option is reported
    /// and ignored.
    fn parse_attr(&mut self, attr: &Attribute, errors: &mut Errors) {
        const EXPECTED: &str = "expected `#[easy_rpc(idempotent)]`, `#[easy_rpc(timeout_ms = N)]`, \
                                `#[easy_rpc(retries = N)]`, `#[easy_rpc(hedge)]` or several: \
                                `#[easy_rpc(idempotent, timeout_ms = N, retries = N, hedge = P)]`";
        if !matches!(attr.meta, syn::Meta::List(_)) {
            errors.at(attr, EXPECTED);
            return;
        }
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = self.parse_option(&meta) {
                errors.push(e);
                skip_rest(meta.input)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
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
                    "`timeout_ms` must be greater than 0: a zero deadline would fail every \
                     call (leave the option out for the node's default)",
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
        } else if meta.path.is_ident("retries") {
            if self.retries.is_some() {
                return Err(meta.error("duplicate option `retries`"));
            }
            let value = meta
                .value()
                .map_err(|_| meta.error("expected `retries = N`"))?;
            let expr: Expr = value.parse()?;
            let n = match &expr {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) if int.suffix().is_empty() || int.suffix() == "u32" => {
                    int.base10_parse::<u32>().ok()
                }
                _ => None,
            };
            match n {
                Some(n) => {
                    self.retries = Some((n, meta.path.span()));
                    Ok(())
                }
                None => Err(syn::Error::new_spanned(
                    expr,
                    "expected a number of retries (a `u32` literal): `retries = 3`",
                )),
            }
        } else if meta.path.is_ident("hedge") {
            if self.hedge.is_some() {
                return Err(meta.error("duplicate option `hedge`"));
            }
            if meta.input.is_empty() || meta.input.peek(Token![,]) {
                self.hedge = Some((95.0, meta.path.span()));
                return Ok(());
            }
            let value = meta
                .value()
                .map_err(|_| meta.error("expected `hedge` or `hedge = P` (a percentile)"))?;
            let expr: Expr = value.parse()?;
            let p = match &expr {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) if int.suffix().is_empty() => int.base10_parse::<f64>().ok(),
                Expr::Lit(ExprLit {
                    lit: Lit::Float(float),
                    ..
                }) if float.suffix().is_empty() || float.suffix() == "f64" => {
                    float.base10_parse::<f64>().ok()
                }
                _ => None,
            };
            match p {
                Some(p) if p > 0.0 && p < 100.0 => {
                    self.hedge = Some((p, meta.path.span()));
                    Ok(())
                }
                _ => Err(syn::Error::new_spanned(
                    expr,
                    "expected a percentile above 0 and below 100 (a number literal): \
                     `hedge = 95` or `hedge = 99.9`",
                )),
            }
        } else {
            Err(syn::Error::new(
                meta.path.span(),
                format!(
                    "unknown easy_rpc option `{}`: expected `idempotent`, `timeout_ms = N`, \
                     `retries = N` or `hedge`",
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

    fn parse(args: TokenStream, item: ItemTrait) -> (ServiceDef, Vec<String>) {
        let mut errors = Errors::default();
        let args = ServiceArgs::parse(args, &mut errors);
        let def = ServiceDef::parse(args, item, &mut errors);
        (def, errors.messages())
    }

    fn parse_ok(args: TokenStream, item: ItemTrait) -> ServiceDef {
        let (def, errors) = parse(args, item);
        assert!(errors.is_empty(), "{errors:#?}");
        def
    }

    fn errors(args: TokenStream, item: ItemTrait) -> Vec<String> {
        let (_, errors) = parse(args, item);
        assert!(!errors.is_empty(), "expected errors");
        errors
    }

    fn ty(t: &Type) -> String {
        t.to_token_stream().to_string()
    }

    #[test]
    fn parses_a_full_service() {
        let def = parse_ok(
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
        );
        assert_eq!(def.ident, "Billing");
        assert_eq!(def.name.value(), "Billing");
        assert_eq!(def.krate.to_token_stream().to_string(), ":: easy_rpc");
        assert_eq!(def.attrs.len(), 1);
        assert!(matches!(def.vis, Visibility::Public(_)));
        let methods: Vec<&Method> = def.methods().collect();
        let [balance, charge, ping] = methods[..] else {
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
                timeout_ms: None,
                retries: None,
                hedge: None,
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
                timeout_ms: Some(5),
                retries: None,
                hedge: None,
            }
        );
    }

    #[test]
    fn parses_arguments() {
        let def = parse_ok(
            quote!(name = "billing.v1.Billing", crate = "::my_rpc"),
            parse_quote!(
                trait Billing {}
            ),
        );
        assert_eq!(def.name.value(), "billing.v1.Billing");
        assert_eq!(def.krate.to_token_stream().to_string(), ":: my_rpc");
        assert!(def.items.is_empty());
        assert!(matches!(def.vis, Visibility::Inherited));

        let def = parse_ok(
            quote!(crate = "crate::rpc"),
            parse_quote!(
                trait r#Billing {}
            ),
        );
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
            let mut errors = Errors::default();
            ServiceArgs::parse(args.clone(), &mut errors);
            let errors = errors.messages();
            assert_eq!(errors.len(), 1, "{args}: {errors:?}");
            assert!(errors[0].contains(expected), "{args}: {errors:?}");
        }
    }

    /// A wrong argument is reported and the others are still read.
    #[test]
    fn reads_the_other_arguments_after_an_error() {
        let mut errors = Errors::default();
        let args = ServiceArgs::parse(
            quote!(foo(a, b) = 1, name = "x", bar = 2, crate = "::r"),
            &mut errors,
        );
        assert_eq!(errors.messages().len(), 2, "{:?}", errors.messages());
        assert_eq!(args.name.unwrap().value(), "x");
        assert_eq!(args.krate.unwrap().to_token_stream().to_string(), ":: r");

        let (def, errors) = parse(
            quote!(name = 5),
            parse_quote!(
                trait Billing {}
            ),
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(def.name.value(), "Billing", "the default name");
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
            (quote!(Option<u8>), None),
            (quote!(MyResult<u8>), None),
            (quote!(Results<u8>), None),
            (quote!(Option<Result<u8>>), None),
            (quote!((u8, io::Result<u8>)), None),
        ] {
            let parsed: Type = syn::parse2(t.clone()).unwrap();
            match (split_result(&parsed).unwrap(), split) {
                (Returns::Result { ok, err }, Some((o, e))) => {
                    assert_eq!((ty(&ok).as_str(), ty(&err).as_str()), (o, e), "{t}")
                }
                (Returns::Plain, None) => {}
                (r, _) => panic!("{t}: {r:?}"),
            }
        }
    }

    #[test]
    fn rejects_result_aliases() {
        for (t, expected) in [
            (quote!(io::Result<u8>), "a `Result` with one type argument"),
            (quote!(Result<Vec<u8>>), "a `Result` with one type argument"),
            (quote!(fmt::Result), "a `Result` without type arguments"),
            (quote!(Result), "a `Result` without type arguments"),
            (quote!(Result<u8, E, F>), "this `Result`"),
            (quote!(<T as X>::Result<u8, E>), "this `Result`"),
            (quote!(Result<'a, E>), "a `Result` with one type argument"),
        ] {
            let parsed: Type = syn::parse2(t.clone()).unwrap();
            let e = split_result(&parsed).unwrap_err().to_string();
            assert!(e.contains(expected), "{t}: {e}");
            assert!(e.contains("write `Result<T, E>` in full"), "{t}: {e}");
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

    /// What of a method with errors is generated: `("full", _)`, `("stub", client)` (usual
    /// server signature, not sent) or `("as written", client)`.
    fn form(m: &Method) -> (&'static str, bool) {
        match &m.form {
            Form::Full => ("full", true),
            Form::Partial {
                as_written: None,
                client,
            } => ("stub", *client),
            Form::Partial {
                as_written: Some(_),
                client,
            } => ("as written", *client),
        }
    }

    #[test]
    fn reads_what_it_can_of_bad_methods() {
        let (def, errors) = parse(
            TokenStream::new(),
            parse_quote! {
                trait Bad {
                    fn not_async(&self);
                    async fn by_value(self);
                    async fn by_mut(&mut self);
                    async fn generic<T>(&self, t: T);
                    async fn where_clause(&self) where u8: Copy;
                    async fn pattern(&self, (a, b): (u8, u8), mut c: u8);
                    async fn borrowed(&self, s: &str);
                    async fn returns_borrowed(&self) -> &str;
                    async fn infer(&self, x: _);
                    async fn body(&self) {}
                    #[easy_rpc(retry, idempotent)]
                    async fn unknown_option(&self);
                    #[easy_rpc(timeout_ms = 0)]
                    async fn zero(&self);
                    async fn alias(&self) -> io::Result<u8>;
                    #[cfg(unix)]
                    async fn cfg(&self);
                    async fn dup(&self);
                    async fn dup(&self, x: u8);
                    async fn get_user(&self);
                    async fn getUser(&self);
                    async fn serve(&self);
                    async fn timeout(&self);
                    async fn r#clone(&self);
                    async fn __call(&self);
                    const X: u8;
                    type T;
                }
            },
        );
        assert_eq!(errors.len(), 23, "{errors:#?}");
        let forms: Vec<(String, (&str, bool))> =
            def.methods().map(|m| (m.name(), form(m))).collect();
        let expected = [
            ("not_async", ("as written", true)),
            ("by_value", ("as written", true)),
            ("by_mut", ("as written", true)),
            ("generic", ("as written", false)),
            ("where_clause", ("as written", true)),
            ("pattern", ("full", true)),
            ("borrowed", ("stub", true)),
            ("returns_borrowed", ("stub", false)),
            ("infer", ("stub", false)),
            ("body", ("as written", true)),
            ("unknown_option", ("full", true)),
            ("zero", ("full", true)),
            ("alias", ("stub", true)),
            ("cfg", ("stub", true)),
            ("dup", ("full", true)),
            ("get_user", ("full", true)),
            ("getUser", ("stub", true)),
            ("serve", ("stub", true)),
            ("timeout", ("full", true)),
            ("clone", ("full", true)),
            ("__call", ("full", true)),
        ];
        let expected: Vec<(String, (&str, bool))> =
            expected.iter().map(|(n, f)| (n.to_string(), *f)).collect();
        assert_eq!(forms, expected);
        assert_eq!(def.items.len(), expected.len() + 2, "const and type kept");
        assert!(def.declares_serve());
        assert!(!def.is_generic());
        assert_eq!(def.wire_methods().count(), 8);

        let method = |name: &str| def.methods().find(|m| m.name() == name).unwrap();
        let pattern = method("pattern");
        let args: Vec<String> = pattern.args.iter().map(|a| a.ident.to_string()).collect();
        assert_eq!(args, ["__arg1", "__arg2"]);
        assert_eq!(ty(&pattern.args[0].ty), "(u8 , u8)");
        assert!(
            method("unknown_option").options.idempotent,
            "the valid option is kept"
        );
        assert_eq!(method("zero").options.timeout_ms, None);
        assert_eq!(method("cfg").cfgs().count(), 1);
        assert!(method("dup").args.is_empty(), "the first one is kept");
        assert!(matches!(method("alias").returns, Returns::Plain));

        // As written, made to compile on the server trait.
        let written = |name: &str| match &method(name).form {
            Form::Partial {
                as_written: Some(f),
                ..
            } => f.to_token_stream().to_string(),
            _ => panic!("{name}"),
        };
        assert_eq!(written("not_async"), "fn not_async (& self) ;");
        assert_eq!(written("by_value"), "async fn by_value (self) ;");
        assert_eq!(written("by_mut"), "async fn by_mut (& mut self) ;");
        assert_eq!(written("body"), "async fn body (& self) { }");
    }

    #[test]
    fn keeps_as_written_what_impls_match() {
        let (def, errors) = parse(
            TokenStream::new(),
            parse_quote! {
                trait Bad {
                    #[easy_rpc(idempotent)]
                    fn no_receiver(#[serde(default)] a: u8, (b, c): (u8, u8), mut d: u8) -> u8;
                    const fn constant(&self);
                    async fn consume(mut self);
                    async fn with_body(&self, (a, b): (u8, u8)) -> u8 { a + b }
                }
            },
        );
        assert_eq!(errors.len(), 9, "{errors:#?}");
        let written: Vec<String> = def
            .methods()
            .map(|m| match &m.form {
                Form::Partial {
                    as_written: Some(f),
                    ..
                } => f.to_token_stream().to_string(),
                _ => panic!("{}", m.name()),
            })
            .collect();
        assert_eq!(
            written,
            [
                "fn no_receiver (& self , a : u8 , __arg1 : (u8 , u8) , d : u8) -> u8 ;",
                "fn constant (& self) ;",
                "async fn consume (self) ;",
                "async fn with_body (& self , (a , b) : (u8 , u8)) -> u8 { a + b }",
            ]
        );
    }

    #[test]
    fn keeps_the_shape_of_a_bad_trait() {
        let (def, errors) = parse(
            TokenStream::new(),
            parse_quote! {
                #[easy_rpc(idempotent)]
                unsafe trait Bad<T> where T: Copy {
                    async fn m(&self);
                }
            },
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(def.unsafety.is_some());
        assert!(def.is_generic());
        assert!(def.generics.where_clause.is_some());
        assert!(def.attrs.is_empty(), "#[easy_rpc] is dropped");
        assert_eq!(def.wire_methods().count(), 1);
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

    #[test]
    fn reads_hedge_and_refuses_it_on_methods_that_are_not_idempotent() {
        let def = parse_ok(
            TokenStream::new(),
            parse_quote! {
                pub trait Reads {
                    #[easy_rpc(idempotent, hedge)]
                    async fn default_percentile(&self);
                    #[easy_rpc(hedge = 99.9, idempotent)]
                    async fn fraction(&self);
                    #[easy_rpc(idempotent, hedge = 90)]
                    async fn whole(&self);
                }
            },
        );
        let hedges: Vec<Option<f64>> = def
            .methods()
            .map(|m| m.options.hedge.map(|(p, _)| p))
            .collect();
        assert_eq!(hedges, [Some(95.0), Some(99.9), Some(90.0)]);

        let errors = errors(
            TokenStream::new(),
            parse_quote! {
                pub trait Writes {
                    #[easy_rpc(hedge)]
                    async fn charge(&self);
                    #[easy_rpc(idempotent, hedge = 100)]
                    async fn all(&self);
                    #[easy_rpc(idempotent, hedge = "95")]
                    async fn text(&self);
                    #[easy_rpc(idempotent, hedge, hedge = 90)]
                    async fn twice(&self);
                }
            },
        );
        let expected = [
            "expected a percentile above 0 and below 100",
            "expected a percentile above 0 and below 100",
            "duplicate option `hedge`",
            "`hedge` applies to idempotent methods only",
        ];
        let mut errors = errors;
        errors.sort();
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, x) in errors.iter().zip(expected) {
            assert!(e.contains(x), "{e:?} should contain {x:?}");
        }
    }
}
