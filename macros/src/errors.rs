//! [`Errors`]: every error one run of the macro finds, each a `syn::Error` at its span.

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Collects errors so that one run of the macro reports all of them, and goes on reading (and
/// generating) after each one.
#[derive(Debug, Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Adds an error at the span of `tokens`.
    pub fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The errors, one message each, in the order they were found.
    #[cfg(test)]
    pub fn messages(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|e| e.clone().into_iter().map(|e| e.to_string()))
            .collect()
    }

    /// One `compile_error!` per error, at its span (nothing if there are none).
    pub fn into_compile_errors(self) -> TokenStream {
        self.0
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }
}
