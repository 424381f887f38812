//! What `#[easy_rpc::service]` writes: one function per generated item, each given a checked
//! [`ServiceDef`]. Generated code names only `::easy_rpc::...` (or the `crate = "..."` path) and
//! `::core::...`, so that it works whatever the user's scope holds (even `#![no_implicit_prelude]`).
//!
//! For `trait Billing`: the server trait `Billing` (rewritten), `BillingService` (its
//! `ServiceDef`), `BillingRequest` and `BillingResponse` (the wire types), `BillingHandler` (the
//! server glue) and `BillingClient` (the client methods on every `Target`). Their impls and the
//! methods' `MethodInfo` statics go in one anonymous `const _: () = { ... };` block.
//!
//! A definition with errors is generated as far as it type-checks (see [`Form`]): methods
//! that cannot be sent are left off the wire, and a generic trait gets only its server trait.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;
use syn::ext::IdentExt;

use crate::parse::{Entry, Form, Method, Returns, ServiceDef};

/// Everything the macro generates for one service.
pub fn service(def: &ServiceDef) -> TokenStream {
    let names = Names::new(def);
    let server = server_trait(def, &names);
    if def.is_generic() {
        // An error: the other items would need concrete types.
        return server;
    }
    let (service, service_impl) = service_struct(def, &names);
    let (request, request_impl) = request_enum(def, &names);
    let response = response_enum(def, &names);
    let (handler, handler_impl) = handler(def, &names);
    let (client, client_impl) = client_trait(def, &names);
    let statics = method_infos(def);
    quote! {
        #server
        #service
        #request
        #response
        #handler
        #client
        const _: () = {
            #statics
            #service_impl
            #request_impl
            #handler_impl
            #client_impl
        };
    }
}

/// The names of the generated items (a contract: users and the runtime's docs name them).
struct Names {
    /// `Billing`
    service_trait: Ident,
    /// `BillingService`
    service: Ident,
    /// `BillingRequest`
    request: Ident,
    /// `BillingResponse`
    response: Ident,
    /// `BillingHandler`
    handler: Ident,
    /// `BillingClient`
    client: Ident,
    /// The trait's name as docs show it (`Billing`).
    text: String,
}

impl Names {
    fn new(def: &ServiceDef) -> Self {
        let t = &def.ident;
        Names {
            service_trait: t.clone(),
            service: format_ident!("{}Service", t),
            request: format_ident!("{}Request", t),
            response: format_ident!("{}Response", t),
            handler: format_ident!("{}Handler", t),
            client: format_ident!("{}Client", t),
            text: t.unraw().to_string(),
        }
    }
}

/// The `static` holding a method's `MethodInfo`, in the anonymous const block.
fn info_static(method: &Method) -> Ident {
    format_ident!("__easy_rpc_method_{}", method.ident)
}

/// A local variable of generated code, invisible to the user's names.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `#[doc = "..."]`
fn doc(text: &str) -> TokenStream {
    quote!(#[doc = #text])
}

/// One `static MethodInfo` per method, shared by `ServiceDef::method` and the client methods.
fn method_infos(def: &ServiceDef) -> TokenStream {
    let krate = &def.krate;
    let statics = def.wire_methods().map(|m| {
        let ident = info_static(m);
        let name = m.name();
        let idempotent = m.options.idempotent.then(|| quote!(.idempotent()));
        let timeout = m.options.timeout_ms.map(|ms| quote!(.timeout_ms(#ms)));
        let retries = m.options.retries.map(|(n, _)| quote!(.retries(#n)));
        // After `.idempotent()`, which `hedge` checks for.
        let hedge = m.options.hedge.map(|(p, _)| {
            let p = proc_macro2::Literal::f64_suffixed(p);
            quote!(.hedge(#p))
        });
        quote! {
            #[allow(non_upper_case_globals)]
            static #ident: #krate::MethodInfo =
                #krate::MethodInfo::new(#name) #idempotent #timeout #retries #hedge;
        }
    });
    quote!(#(#statics)*)
}

/// The server trait: the user's trait with `&self` on every method, methods returning
/// `impl Future + Send`, `Send + Sync + 'static` supertraits, and `serve()`. What has errors is
/// kept as written where the usual form would not match the user's impls.
fn server_trait(def: &ServiceDef, names: &Names) -> TokenStream {
    let ServiceDef {
        attrs,
        vis,
        unsafety,
        ident,
        generics,
        supertraits,
        krate,
        ..
    } = def;
    let Names {
        service, handler, ..
    } = names;
    let where_clause = &generics.where_clause;
    let supertraits = supertraits.iter();
    let items = def.items.iter().map(|item| match item {
        Entry::Method(m) => server_method(m),
        Entry::Other(item) => quote!(#item),
    });
    let serve_doc = doc(&format!(
        "Wraps this implementation of [`{0}`] for a node to serve: \
         `node.serve(My{0}.serve())`. Generated by `#[easy_rpc::service]`.",
        names.text
    ));
    let serve = if def.declares_serve() {
        // An error: the user's `serve` is kept instead, for their impls.
        quote!()
    } else {
        let body = if def.is_generic() {
            // An error: there is no handler to serve, and the crate does not compile.
            quote!(::core::unreachable!())
        } else {
            quote!(#krate::Served::new::<#service, _>(#handler(self)))
        };
        quote! {
            #serve_doc
            fn serve(self) -> #krate::Served
            where
                Self: ::core::marker::Sized,
            {
                #body
            }
        }
    };
    quote! {
        #(#attrs)*
        #vis #unsafety trait #ident #generics: #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static
        #where_clause
        {
            #(#items)*

            #serve
        }
    }
}

/// A method of the server trait.
fn server_method(m: &Method) -> TokenStream {
    if let Form::Partial {
        as_written: Some(f),
        ..
    } = &m.form
    {
        // An error: as written, so that the user's impls match.
        return quote! {
            #[allow(async_fn_in_trait)]
            #f
        };
    }
    let Method {
        attrs,
        ident,
        output,
        ..
    } = m;
    let arg_names = m.args.iter().map(|a| &a.ident);
    let arg_types = m.args.iter().map(|a| &a.ty);
    // `impl Future<..>` and, without the user's receiver, `&self` are ours: lints about
    // them are not the user's to fix.
    let allow = if m.has_receiver {
        quote!(#[allow(clippy::type_complexity)])
    } else {
        quote! {
            #[allow(
                clippy::too_many_arguments,
                clippy::type_complexity,
                clippy::wrong_self_convention,
            )]
        }
    };
    quote! {
        #(#attrs)*
        #allow
        fn #ident(&self #(, #arg_names: #arg_types)*)
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
    }
}

/// `BillingService` and its `ServiceDef` impl.
fn service_struct(def: &ServiceDef, names: &Names) -> (TokenStream, TokenStream) {
    let ServiceDef {
        vis, krate, name, ..
    } = def;
    let Names {
        service,
        request,
        response,
        ..
    } = names;
    let docs = doc(&format!(
        "Service [`{}`] as easy-rpc sees it: its wire name ({:?}), its request and response \
         types and its methods' options. Generated by `#[easy_rpc::service]`.",
        names.text,
        name.value()
    ));
    let req = local("req");
    let arms = def.wire_methods().map(|m| {
        let variant = &m.variant;
        let info = info_static(m);
        quote!(#request::#variant { .. } => &#info,)
    });
    let (resp, v) = (local("resp"), local("v"));
    let error_arms = def.wire_methods().map(|m| {
        let variant = &m.variant;
        match &m.returns {
            Returns::Result { .. } => {
                quote!(#response::#variant(ref #v) => ::core::result::Result::is_err(#v),)
            }
            Returns::Plain => quote!(#response::#variant(_) => false,),
        }
    });
    let item = quote! {
        #docs
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
        #vis struct #service;
    };
    let imp = quote! {
        impl #krate::ServiceDef for #service {
            const NAME: &'static ::core::primitive::str = #name;
            type Req = #request;
            type Resp = #response;
            fn method(#req: &#request) -> &'static #krate::MethodInfo {
                match *#req {
                    #(#arms)*
                }
            }
            fn is_remote_error(#resp: &#response) -> bool {
                match *#resp {
                    #(#error_arms)*
                }
            }
        }
    };
    (item, imp)
}

/// The derives and lint settings shared by the request and response enums.
fn wire_enum_attrs(def: &ServiceDef) -> TokenStream {
    let krate = &def.krate;
    let mut path = String::new();
    if krate.leading_colon.is_some() {
        path.push_str("::");
    }
    for segment in &krate.segments {
        path.push_str(&segment.ident.to_string());
        path.push_str("::");
    }
    let serde = syn::LitStr::new(&format!("{path}__private::serde"), Span::call_site());
    quote! {
        #[derive(
            #krate::__private::serde::Serialize,
            #krate::__private::serde::Deserialize,
        )]
        #[serde(crate = #serde)]
        #[doc(hidden)]
        #[allow(clippy::large_enum_variant, clippy::type_complexity, dead_code)]
    }
}

/// `BillingRequest` (one variant per method, holding its arguments) and its `RequestName` impl.
fn request_enum(def: &ServiceDef, names: &Names) -> (TokenStream, TokenStream) {
    let ServiceDef { vis, krate, .. } = def;
    let Names {
        service,
        request,
        service_trait,
        ..
    } = names;
    let attrs = wire_enum_attrs(def);
    let docs = doc(&format!(
        "A request of service [`{}`]: one variant per method, holding its arguments. \
         Generated by `#[easy_rpc::service]`.",
        names.text
    ));
    let variants = def.wire_methods().map(|m| {
        let variant = &m.variant;
        let docs = doc(&format!(
            "The arguments of `{}::{}`.",
            service_trait.unraw(),
            m.name()
        ));
        let fields = m.args.iter().map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            let docs = doc(&format!("Argument `{}`.", ident.unraw()));
            quote!(#docs #ident: #ty)
        });
        quote!(#docs #variant { #(#fields),* })
    });
    let item = quote! {
        #docs
        #attrs
        #vis enum #request {
            #(#variants),*
        }
    };
    let imp = quote! {
        impl #krate::__private::tarpc::RequestName for #request {
            fn name(&self) -> &::core::primitive::str {
                <#service as #krate::ServiceDef>::method(self).name
            }
        }
    };
    (item, imp)
}

/// `BillingResponse`: one variant per method, holding its return value.
fn response_enum(def: &ServiceDef, names: &Names) -> TokenStream {
    let ServiceDef { vis, .. } = def;
    let Names {
        response,
        service_trait,
        ..
    } = names;
    let attrs = wire_enum_attrs(def);
    let docs = doc(&format!(
        "A response of service [`{}`]: one variant per method, holding its return value. \
         Generated by `#[easy_rpc::service]`.",
        names.text
    ));
    let variants = def.wire_methods().map(|m| {
        let Method {
            variant, output, ..
        } = m;
        let docs = doc(&format!(
            "What `{}::{}` returned.",
            service_trait.unraw(),
            m.name()
        ));
        quote!(#docs #variant(#output))
    });
    quote! {
        #docs
        #attrs
        #vis enum #response {
            #(#variants),*
        }
    }
}

/// `BillingHandler<T>` and its `Handler<BillingService>` impl: calls the user's implementation.
fn handler(def: &ServiceDef, names: &Names) -> (TokenStream, TokenStream) {
    let ServiceDef { vis, krate, .. } = def;
    let Names {
        service_trait,
        service,
        request,
        response,
        handler,
        ..
    } = names;
    let docs = doc(&format!(
        "Serves an implementation of [`{0}`]: what [`{0}::serve`] wraps. \
         Generated by `#[easy_rpc::service]`.",
        names.text
    ));
    let imp_ty = Ident::new("__EasyRpcImpl", Span::call_site());
    let req = local("req");
    let arms = def.wire_methods().map(|m| {
        let Method { variant, ident, .. } = m;
        let fields = m.args.iter().map(|a| &a.ident);
        let locals: Vec<Ident> = (0..m.args.len())
            .map(|i| local(&format!("arg{i}")))
            .collect();
        quote! {
            #request::#variant { #(#fields: #locals),* } => #response::#variant(
                <#imp_ty as #service_trait>::#ident(&self.0 #(, #locals)*).await
            ),
        }
    });
    let item = quote! {
        #docs
        #[doc(hidden)]
        #vis struct #handler<T>(
            #[doc = "The implementation."]
            pub T,
        );
    };
    let imp = quote! {
        #[allow(deprecated)]
        impl<#imp_ty: #service_trait> #krate::Handler<#service> for #handler<#imp_ty> {
            async fn handle(&self, #req: #request) -> #response {
                match #req {
                    #(#arms)*
                }
            }
        }
    };
    (item, imp)
}

/// `BillingClient`, the client methods, and its impl for every `Target`.
fn client_trait(def: &ServiceDef, names: &Names) -> (TokenStream, TokenStream) {
    let ServiceDef { vis, krate, .. } = def;
    let Names {
        service_trait,
        service,
        request,
        response,
        client,
        ..
    } = names;
    let docs = doc(&format!(
        "Client methods of [`{}`]: call them on `easy_rpc::any(..)`, `all(..)`, `by_key(..)` \
         (any `easy_rpc::Target`). Generated by `#[easy_rpc::service]`.",
        names.text
    ));
    let target = target_param(def, names);
    // The methods that are sent, and those that are not (errors) but can be declared, so that
    // calls of them type-check.
    let methods: Vec<&Method> = def
        .methods()
        .filter(|m| match m.form {
            Form::Full => true,
            Form::Partial { client, .. } => client,
        })
        .collect();
    let signature = |m: &Method| {
        let ident = &m.ident;
        let arg_names = m.args.iter().map(|a| &a.ident);
        let arg_types = m.args.iter().map(|a| &a.ty);
        let (ok, err) = ok_err(def, m);
        quote! {
            fn #ident(&self #(, #arg_names: #arg_types)*)
                -> impl ::core::future::Future<
                    Output = <Self as #krate::Target>::Output<#ok, #err>,
                > + ::core::marker::Send + 'static
        }
    };
    let declarations = methods.iter().map(|m| {
        let mut docs: Vec<TokenStream> = m.docs().map(|d| quote!(#d)).collect();
        if docs.is_empty() {
            docs.push(doc(&format!(
                "Calls [`{}::{}`] on the target.",
                service_trait.unraw(),
                m.name()
            )));
        }
        // A deprecated method is deprecated for its callers too.
        let deprecated = m.deprecated();
        let cfgs = m.cfgs();
        let sig = signature(m);
        quote!(#(#docs)* #deprecated #(#cfgs)* #sig;)
    });
    let definitions = methods.iter().map(|m| {
        let sig = signature(m);
        let args = m.args.iter().map(|a| &a.ident);
        if !matches!(m.form, Form::Full) {
            // An error: the method is not sent, and this never runs (the crate does not
            // compile); it only lets calls type-check.
            let cfgs = m.cfgs();
            let unused = (!m.args.is_empty()).then(|| quote!(let _ = (#(#args,)*);));
            return quote! {
                #(#cfgs)*
                #sig {
                    #unused
                    ::core::future::pending()
                }
            };
        }
        let variant = &m.variant;
        let info = info_static(m);
        let (ok, err) = ok_err(def, m);
        let (resp, v) = (local("resp"), local("v"));
        let some = match &m.returns {
            Returns::Result { .. } => quote!(::core::option::Option::Some(#v)),
            Returns::Plain => {
                quote!(::core::option::Option::Some(::core::result::Result::Ok(#v)))
            }
        };
        quote! {
            #sig {
                #krate::Target::__call::<#service, #ok, #err>(
                    self,
                    &#info,
                    #request::#variant { #(#args),* },
                    |#resp| match #resp {
                        #response::#variant(#v) => #some,
                        _ => ::core::option::Option::None,
                    },
                )
            }
        }
    });
    let allow = quote! {
        #[allow(
            clippy::too_many_arguments,
            clippy::type_complexity,
            clippy::wrong_self_convention,
            unreachable_patterns,
        )]
    };
    let item = quote! {
        #docs
        #allow
        #vis trait #client: #krate::Target {
            #(#declarations)*
        }
    };
    let imp = quote! {
        #allow
        impl<#target: #krate::Target + ?::core::marker::Sized> #client for #target {
            #(#definitions)*
        }
    };
    (item, imp)
}

/// The type parameter of the client trait's blanket impl. The compiler names it when a call is
/// ambiguous between two services' methods ("candidate #1 is defined in an impl of the trait
/// `BillingClient` for the type `T`"), so it is a plain `T`; a parameter cannot be hygienic,
/// so if the service's signatures name a type `T` (which the parameter would shadow), it is
/// `Target`, or else `__EasyRpcTarget`.
fn target_param(def: &ServiceDef, names: &Names) -> Ident {
    let mut used = std::collections::HashSet::new();
    let Names {
        service_trait,
        service,
        request,
        response,
        handler,
        client,
        ..
    } = names;
    let krate = &def.krate;
    let mut add = |tokens: TokenStream| idents(tokens, &mut used);
    add(quote!(#service_trait #service #request #response #handler #client));
    add(quote!(#krate));
    for m in def.methods() {
        for arg in &m.args {
            let ty = &arg.ty;
            add(quote!(#ty));
        }
        let output = &m.output;
        add(quote!(#output));
    }
    let name = ["T", "Target"]
        .into_iter()
        .find(|name| !used.contains(*name))
        .unwrap_or("__EasyRpcTarget");
    Ident::new(name, Span::call_site())
}

/// Every identifier in `tokens`, as a string.
fn idents(tokens: TokenStream, out: &mut std::collections::HashSet<String>) {
    for tt in tokens {
        match tt {
            proc_macro2::TokenTree::Ident(i) => {
                out.insert(i.unraw().to_string());
            }
            proc_macro2::TokenTree::Group(g) => idents(g.stream(), out),
            _ => {}
        }
    }
}

/// The `T` and `E` of a client call: from `Result<T, E>`, or `(T, Never)` for a plain `T`.
fn ok_err(def: &ServiceDef, m: &Method) -> (TokenStream, TokenStream) {
    let krate = &def.krate;
    match &m.returns {
        Returns::Result { ok, err } => (quote!(#ok), quote!(#err)),
        Returns::Plain => {
            let t = &m.output;
            (quote!(#t), quote!(#krate::Never))
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Spacing, TokenTree};
    use syn::parse_quote;

    use super::*;
    use crate::errors::Errors;
    use crate::parse::ServiceArgs;

    fn generate(args: TokenStream, item: syn::ItemTrait) -> TokenStream {
        let (tokens, errors) = generate_with_errors(args, item);
        assert!(errors.is_empty(), "{errors:#?}");
        tokens
    }

    fn generate_with_errors(args: TokenStream, item: syn::ItemTrait) -> (TokenStream, Vec<String>) {
        let mut errors = Errors::default();
        let args = ServiceArgs::parse(args, &mut errors);
        let def = ServiceDef::parse(args, item, &mut errors);
        (service(&def), errors.messages())
    }

    fn leaves(tokens: TokenStream, out: &mut Vec<TokenTree>) {
        for tt in tokens {
            match tt {
                TokenTree::Group(g) => {
                    // The delimiter, so that a group's first token is not read as following
                    // the token before the group.
                    out.push(TokenTree::Punct(proc_macro2::Punct::new(
                        '$',
                        Spacing::Alone,
                    )));
                    leaves(g.stream(), out);
                    out.push(TokenTree::Punct(proc_macro2::Punct::new(
                        '$',
                        Spacing::Alone,
                    )));
                }
                tt => out.push(tt),
            }
        }
    }

    /// The first segment of every absolute path (`::x::...`) in `tokens`.
    fn absolute_path_roots(tokens: TokenStream) -> Vec<String> {
        let mut flat = Vec::new();
        leaves(tokens, &mut flat);
        let mut roots = Vec::new();
        for i in 0..flat.len().saturating_sub(2) {
            let is_colon2 = matches!(&flat[i], TokenTree::Punct(p) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
                && matches!(&flat[i + 1], TokenTree::Punct(p) if p.as_char() == ':');
            let continues_a_path = i > 0
                && match &flat[i - 1] {
                    TokenTree::Ident(id) => !matches!(
                        id.to_string().as_str(),
                        "as" | "impl" | "dyn" | "for" | "where" | "const" | "static"
                    ),
                    TokenTree::Punct(p) => p.as_char() == '>' || p.as_char() == ':',
                    _ => false,
                };
            if is_colon2 && !continues_a_path {
                roots.push(flat[i + 2].to_string());
            }
        }
        roots
    }

    fn service_with_everything() -> syn::ItemTrait {
        parse_quote! {
            /// Docs.
            pub trait Billing {
                /// Balance.
                #[easy_rpc(idempotent)]
                async fn balance(account: Account) -> u64;
                #[easy_rpc(timeout_ms = 2000)]
                async fn charge(&self, account: Account, cents: u64) -> Result<Receipt, BillingError>;
                async fn ping(&self);
            }
        }
    }

    #[test]
    fn names_only_easy_rpc_and_core() {
        let tokens = generate(TokenStream::new(), service_with_everything());
        let roots = absolute_path_roots(tokens.clone());
        assert!(roots.iter().any(|r| r == "easy_rpc"));
        assert!(roots.iter().any(|r| r == "core"));
        for root in &roots {
            assert!(
                root == "easy_rpc" || root == "core",
                "path from ::{root}: {tokens}"
            );
        }
        // Names that resolve through the prelude are never used bare.
        let mut flat = Vec::new();
        leaves(tokens.clone(), &mut flat);
        for (i, tt) in flat.iter().enumerate() {
            if let TokenTree::Ident(id) = tt {
                let bare =
                    i == 0 || !matches!(&flat[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                let name = id.to_string();
                assert!(
                    !bare
                        || !matches!(
                            name.as_str(),
                            "Option"
                                | "Some"
                                | "None"
                                | "Ok"
                                | "Err"
                                | "Send"
                                | "Sync"
                                | "Sized"
                                | "Clone"
                                | "Future"
                                | "String"
                                | "Box"
                                | "Vec"
                                | "str"
                                | "Serialize"
                                | "Deserialize"
                        ),
                    "bare `{name}` in {tokens}"
                );
            }
        }
        assert!(
            tokens
                .to_string()
                .contains(r#"crate = "::easy_rpc::__private::serde""#)
        );
    }

    #[test]
    fn names_only_easy_rpc_and_core_despite_errors() {
        for item in [
            parse_quote! {
                trait S {
                    fn sync(&self) -> u8;
                    async fn borrowed(&self, k: &str) -> u8;
                    async fn alias(&self) -> io::Result<u8>;
                    async fn serve(&self);
                }
            },
            parse_quote! {
                trait S<X> {
                    async fn get(&self, x: X) -> u8;
                }
            },
        ] {
            let (tokens, errors) = generate_with_errors(TokenStream::new(), item);
            assert!(!errors.is_empty());
            for root in absolute_path_roots(tokens.clone()) {
                assert!(
                    root == "easy_rpc" || root == "core",
                    "path from ::{root}: {tokens}"
                );
            }
        }
    }

    #[test]
    fn renamed_crate_is_the_only_crate_named() {
        let tokens = generate(quote!(crate = "::my_rpc"), service_with_everything());
        for root in absolute_path_roots(tokens.clone()) {
            assert!(
                root == "my_rpc" || root == "core",
                "path from ::{root}: {tokens}"
            );
        }
        assert!(
            tokens
                .to_string()
                .contains(r#"crate = "::my_rpc::__private::serde""#)
        );
    }

    #[test]
    fn generates_the_contract_names() {
        let tokens = generate(TokenStream::new(), service_with_everything()).to_string();
        for item in [
            "pub trait Billing :",
            "fn serve (self) -> :: easy_rpc :: Served",
            "pub struct BillingService ;",
            "pub enum BillingRequest { ",
            "pub enum BillingResponse { ",
            "pub struct BillingHandler < T > (",
            "pub trait BillingClient : :: easy_rpc :: Target",
            "impl :: easy_rpc :: ServiceDef for BillingService",
            "impl :: easy_rpc :: __private :: tarpc :: RequestName for BillingRequest",
            "const NAME : & 'static :: core :: primitive :: str = \"Billing\"",
            "Balance { # [doc = \"Argument `account`.\"] account : Account }",
            "Charge { # [doc = \"Argument `account`.\"] account : Account , # [doc = \"Argument `cents`.\"] cents : u64 }",
            "Ping { }",
            "Balance (u64)",
            "Charge (Result < Receipt , BillingError >)",
            "Ping (())",
            "fn balance (& self , account : Account) -> impl :: core :: future :: Future < Output = u64 > + :: core :: marker :: Send ;",
            "fn ping (& self) -> impl :: core :: future :: Future < Output = () > + :: core :: marker :: Send ;",
            "Output = < Self as :: easy_rpc :: Target > :: Output < Receipt , BillingError > , > + :: core :: marker :: Send + 'static",
            "Output = < Self as :: easy_rpc :: Target > :: Output < u64 , :: easy_rpc :: Never > , > + :: core :: marker :: Send + 'static",
            ":: easy_rpc :: MethodInfo :: new (\"balance\") . idempotent () ;",
            ":: easy_rpc :: MethodInfo :: new (\"charge\") . timeout_ms (2000u64) ;",
            ":: easy_rpc :: MethodInfo :: new (\"ping\") ;",
        ] {
            assert!(tokens.contains(item), "missing `{item}` in {tokens}");
        }
        // The method's docs are on the server trait and on the client trait.
        assert_eq!(
            tokens.matches("# [doc = r\" Balance.\"]").count(),
            2,
            "{tokens}"
        );
    }

    #[test]
    fn names_the_blanket_impls_parameter_readably() {
        let tokens = generate(TokenStream::new(), service_with_everything()).to_string();
        assert!(
            tokens.contains(
                "impl < T : :: easy_rpc :: Target + ? :: core :: marker :: Sized > BillingClient for T"
            ),
            "{tokens}"
        );
        // Not a name the signatures use: the parameter would shadow it.
        let tokens = generate(
            TokenStream::new(),
            parse_quote! {
                trait S {
                    async fn a(&self, t: Vec<T>) -> Option<u8>;
                }
            },
        )
        .to_string();
        assert!(tokens.contains("SClient for Target"), "{tokens}");
        let tokens = generate(
            TokenStream::new(),
            parse_quote! {
                trait S {
                    async fn a(&self, t: T) -> Result<Target, ()>;
                }
            },
        )
        .to_string();
        assert!(tokens.contains("SClient for __EasyRpcTarget"), "{tokens}");
    }

    #[test]
    fn generates_what_type_checks_despite_errors() {
        let (tokens, errors) = generate_with_errors(
            TokenStream::new(),
            parse_quote! {
                unsafe trait S {
                    #[easy_rpc(nope)]
                    async fn good(&self) -> u8;
                    fn sync(&self) -> u8;
                    async fn borrowed(&self, k: &str) -> u8;
                    async fn generic<X>(&self, x: X);
                    async fn alias(&self) -> io::Result<u8>;
                    const C: u8;
                }
            },
        );
        assert_eq!(errors.len(), 7, "{errors:#?}");
        let tokens = tokens.to_string();
        for present in [
            // The server trait keeps `unsafe`, the constant, and every method, the sync one
            // as written.
            "unsafe trait S :",
            "const C : u8 ;",
            "fn good (& self) -> impl :: core :: future :: Future < Output = u8 >",
            "# [allow (async_fn_in_trait)] fn sync (& self) -> u8 ;",
            "fn borrowed (& self , k : & str) -> impl :: core :: future :: Future < Output = u8 >",
            "# [allow (async_fn_in_trait)] async fn generic < X > (& self , x : X) ;",
            "fn alias (& self) -> impl :: core :: future :: Future < Output = io :: Result < u8 > >",
            "fn serve (self)",
            // Only the valid method is sent.
            "enum SRequest { # [doc = \"The arguments of `S::good`.\"] Good { } }",
            // The client declares the others it can, with bodies that never run.
            "fn sync (& self) -> impl",
            "fn borrowed (& self , k : & str) -> impl",
            "fn alias (& self) -> impl :: core :: future :: Future < Output = < Self as :: easy_rpc :: Target > :: Output < io :: Result < u8 > , :: easy_rpc :: Never > , >",
            "let _ = (k ,) ; :: core :: future :: pending ()",
        ] {
            assert!(tokens.contains(present), "missing `{present}` in {tokens}");
        }
        for absent in [
            "Sync {",
            "Borrowed {",
            "Alias (",
            "__easy_rpc_method_sync",
            "fn generic < X > (& self , x : X) -> impl",
        ] {
            assert!(!tokens.contains(absent), "`{absent}` in {tokens}");
        }
    }

    #[test]
    fn generic_trait_gets_only_its_server_trait() {
        let (tokens, errors) = generate_with_errors(
            TokenStream::new(),
            parse_quote! {
                pub trait S<X> where X: Copy {
                    async fn get(&self, x: X) -> u8;
                }
            },
        );
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let tokens = tokens.to_string();
        assert!(tokens.starts_with("pub trait S < X > :"), "{tokens}");
        assert!(tokens.contains("where X : Copy"), "{tokens}");
        assert!(tokens.contains("fn get (& self , x : X)"), "{tokens}");
        assert!(tokens.contains(":: core :: unreachable ! ()"), "{tokens}");
        for absent in ["SService", "SRequest", "SClient", "SHandler"] {
            assert!(!tokens.contains(absent), "`{absent}` in {tokens}");
        }
    }

    #[test]
    fn a_users_serve_replaces_the_generated_one() {
        let (tokens, errors) = generate_with_errors(
            TokenStream::new(),
            parse_quote! {
                trait S {
                    async fn serve(&self) -> u8;
                }
            },
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let tokens = tokens.to_string();
        assert!(tokens.contains("fn serve (& self) -> impl"), "{tokens}");
        assert!(!tokens.contains("fn serve (self)"), "{tokens}");
        assert!(!tokens.contains("Serve {"), "{tokens}");
    }
}
