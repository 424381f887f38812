//! The parsers of what operators write: the input, as text, goes whole into `Secret::parse`,
//! the seed list parser and the address parser (each checks that what it accepts reads back
//! from its display); then, read as lines `NAME=value`, `secret=`, `seeds=`, `address=` and
//! `bare=` lines go to those parsers again and every other line is an environment variable
//! for the `CLUSTER_*` reader and the server limits' reader. `CLUSTER_SECRET_FILE`'s value is
//! the content of the secret file (`\n` for a line break), written to a file whose path the
//! reader gets.

#![no_main]

use std::collections::HashMap;

use cluster_helper::__fuzz::{parse_address, parse_secret, parse_seeds, settings_from_env};
use easy_rpc::__fuzz::limits_from_env;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_secret(&text);
    let _ = parse_seeds(&text);
    let _ = parse_address(&text, None);
    let _ = parse_address(&text, Some(7946));
    let mut vars: HashMap<String, String> = HashMap::new();
    for line in text.split('\n') {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        match name {
            "secret" => drop(parse_secret(value)),
            "seeds" => drop(parse_seeds(value)),
            "address" => drop(parse_address(value, None)),
            "bare" => drop(parse_address(value, Some(53))),
            _ => drop(vars.insert(name.to_owned(), value.to_owned())),
        }
    }
    if let Some(content) = vars.get("CLUSTER_SECRET_FILE") {
        let path =
            std::env::temp_dir().join(format!("easy-rpc-fuzz-secret-{}", std::process::id()));
        std::fs::write(&path, content.replace("\\n", "\n")).expect("write the secret file");
        vars.insert(
            "CLUSTER_SECRET_FILE".to_owned(),
            path.to_string_lossy().into_owned(),
        );
    }
    let _ = settings_from_env(|name| vars.get(name).cloned());
    let _ = limits_from_env(|name| vars.get(name).cloned());
});
