//! Services with other visibilities, in a function body, without methods, with raw
//! identifiers, with supertraits of their own, and with a deprecated method.
#![deny(warnings)]

mod inner {
    #[easy_rpc::service]
    pub(crate) trait Crate {
        async fn r#type(&self, r#match: u8) -> u8;
        async fn get_user_by_id(id: u64) -> Option<String>;
    }
}

#[easy_rpc::service(name = "empty")]
pub trait Empty {}

/// A supertrait of the user's.
pub trait Named {
    /// A name.
    fn name(&self) -> &'static str;
}

#[easy_rpc::service]
pub trait WithSuper: Named + Clone {
    async fn hello(&self) -> String;
    /// Deprecated methods can still be served without warnings.
    #[deprecated = "use hello"]
    async fn old_hello(&self) -> String;
}

#[derive(Clone)]
struct Impl;

impl inner::Crate for Impl {
    async fn r#type(&self, r#match: u8) -> u8 {
        r#match
    }
    async fn get_user_by_id(&self, _id: u64) -> Option<String> {
        None
    }
}

impl Empty for Impl {}

impl Named for Impl {
    fn name(&self) -> &'static str {
        "impl"
    }
}

impl WithSuper for Impl {
    async fn hello(&self) -> String {
        self.name().into()
    }
    async fn old_hello(&self) -> String {
        self.name().into()
    }
}

fn main() {
    #[easy_rpc::service]
    trait Local {
        async fn local(&self);
    }
    struct L;
    impl Local for L {
        async fn local(&self) {}
    }

    use easy_rpc::ServiceDef;
    assert_eq!(
        inner::CrateService::method(&inner::CrateRequest::Type { r#match: 1 }).name,
        "type"
    );
    assert_eq!(
        inner::CrateService::method(&inner::CrateRequest::GetUserById { id: 1 }).name,
        "get_user_by_id"
    );
    assert_eq!(inner::Crate::serve(Impl).name(), "Crate");
    assert_eq!(Empty::serve(Impl).name(), "empty");
    assert_eq!(WithSuper::serve(Impl).name(), "WithSuper");
    assert_eq!(L.serve().name(), "Local");
}
