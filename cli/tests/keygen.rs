//! `easy-rpc keygen` as a process: what it prints is a secret, and a new one every time.

use std::process::Command;

use cluster_helper::Secret;

fn easy_rpc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_easy-rpc"))
        .args(args)
        .output()
        .expect("run easy-rpc")
}

fn keygen(args: &[&str]) -> String {
    let out = easy_rpc(args);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn keygen_prints_one_base64_secret_and_a_new_one_each_run() {
    let a = keygen(&["keygen"]);
    let b = keygen(&["keygen"]);
    assert_eq!(a.lines().count(), 1, "{a:?}");
    assert_eq!(a.trim_end().len(), 44, "{a:?}");
    let (sa, sb) = (Secret::parse(&a).unwrap(), Secret::parse(&b).unwrap());
    assert_ne!(sa, sb, "two runs printed the same secret");
}

#[test]
fn keygen_hex_prints_64_digits() {
    let a = keygen(&["keygen", "--hex"]);
    let digits = a.trim_end();
    assert_eq!(digits.len(), 64, "{a:?}");
    assert!(digits.bytes().all(|b| b.is_ascii_hexdigit()), "{a:?}");
    let s = Secret::parse(&a).unwrap();
    assert_ne!(s, Secret::parse(&keygen(&["keygen", "--hex"])).unwrap());
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    for args in [&["keygen", "--bits=128"][..], &["nope"][..], &[][..]] {
        let out = easy_rpc(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: easy-rpc"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
