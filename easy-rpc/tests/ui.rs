//! Compile tests of `#[easy_rpc::service]`: what it accepts (`ui/pass`) and, for what it
//! rejects, the error and where it points (`ui/fail/*.stderr`; regenerate them with
//! `TRYBUILD=overwrite cargo test -p easy-rpc --test ui` and check each span).
//!
//! The `.stderr` files are the compiler's own words, which change between Rust releases, so
//! the fail cases are compared only on the release they were written with ([`UI_TOOLCHAIN`],
//! as axum pins its macros' UI tests); on any other, the pass cases still run.

use std::process::Command;

/// The `rustc` release the `.stderr` files were blessed with. Bless them again with a new
/// release, and change this in the same commit.
const UI_TOOLCHAIN: &str = "1.95.0";

/// The `major.minor.patch` of the `rustc` that cargo uses for these tests.
fn rustc_release() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    text.split_whitespace().nth(1).map(str::to_owned)
}

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    match rustc_release() {
        Some(release) if release == UI_TOOLCHAIN => t.compile_fail("tests/ui/fail/*.rs"),
        other => eprintln!(
            "ui: the fail cases' messages are from rustc {UI_TOOLCHAIN}, this is {}: \
             compiling the pass cases only",
            other.as_deref().unwrap_or("an unknown rustc")
        ),
    }
}
