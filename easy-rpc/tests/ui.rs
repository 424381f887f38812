//! Compile tests of `#[easy_rpc::service]`: what it accepts (`ui/pass`) and, for what it
//! rejects, the error and where it points (`ui/fail/*.stderr`; regenerate them with
//! `TRYBUILD=overwrite cargo test -p easy-rpc --test ui` and check each span).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
