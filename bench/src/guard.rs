//! `bench guard`: fails when the client instructions per call of `any()` (one node, one in
//! flight) grow more than a margin over the figure recorded in `bench/guard.toml`. Instruction
//! counts hold still on a busy machine, so this can run in CI where times cannot.

use std::path::PathBuf;

use crate::instr::{Imp, per_call};

/// The recorded figures, next to this crate's manifest.
fn guard_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guard.toml")
}

/// The figures of `guard.toml`: `key = number` lines, `#` comments.
#[derive(Debug, PartialEq)]
struct Recorded {
    client_instructions_per_call: f64,
    server_instructions_per_request: f64,
    margin_percent: f64,
}

fn parse(text: &str) -> Result<Recorded, String> {
    let get = |key: &str| -> Result<f64, String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .ok_or_else(|| format!("{key} missing"))
            .and_then(|(_, v)| {
                v.trim()
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("{key}: {e}"))
            })
    };
    Ok(Recorded {
        client_instructions_per_call: get("client_instructions_per_call")?,
        server_instructions_per_request: get("server_instructions_per_request")?,
        margin_percent: get("margin_percent")?,
    })
}

/// Replaces the two figures' values in `text`, keeping its comments and layout.
fn update(text: &str, client: f64, server: f64) -> String {
    text.lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "client_instructions_per_call" => format!("{key} = {client:.0}"),
                "server_instructions_per_request" => format!("{key} = {server:.0}"),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `bench guard [--update] [--calls N] [--file guard.toml]`: exit status 1 when over the
/// margin.
pub fn run(args: &[String]) {
    assert!(
        crate::instr::available(),
        "bench guard needs valgrind (callgrind) on the PATH"
    );
    let n: u64 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2000);
    let file = args
        .iter()
        .position(|a| a == "--file")
        .and_then(|i| args.get(i + 1))
        .map_or_else(guard_file, PathBuf::from);
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let recorded = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let easy = per_call(Imp::Easy, 1, n);
    let tarpc = per_call(Imp::Tarpc, 1, n);
    let over = |now: f64, was: f64| (now / was - 1.0) * 100.0;
    let c = over(easy.client, recorded.client_instructions_per_call);
    let s = over(easy.server, recorded.server_instructions_per_request);
    println!(
        "client instructions per call: {:.0} (recorded {:.0}, {c:+.1} %; plain tarpc {:.0}, easy-rpc {:+.1} % over it)",
        easy.client,
        recorded.client_instructions_per_call,
        tarpc.client,
        (easy.client / tarpc.client - 1.0) * 100.0
    );
    println!(
        "server instructions per request: {:.0} (recorded {:.0}, {s:+.1} %; plain tarpc {:.0}, easy-rpc {:+.1} % over it)",
        easy.server,
        recorded.server_instructions_per_request,
        tarpc.server,
        (easy.server / tarpc.server - 1.0) * 100.0
    );
    if args.iter().any(|a| a == "--update") {
        std::fs::write(&file, update(&text, easy.client, easy.server))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        println!("recorded in {}", file.display());
        return;
    }
    let margin = recorded.margin_percent;
    let mut failed = false;
    for (what, pct) in [
        ("client instructions per call", c),
        ("server instructions per request", s),
    ] {
        if pct > margin {
            println!("FAIL: {what} {pct:+.1} % over the recorded figure (margin {margin} %)");
            failed = true;
        } else if pct < -margin {
            println!(
                "note: {what} {pct:+.1} % under the recorded figure: record it with `bench guard --update`"
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
    println!("ok: within {margin} % of the recorded figures");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_updates_the_guard_file() {
        let text = "# comment\nclient_instructions_per_call = 12_345 # now\nserver_instructions_per_request = 99\nmargin_percent = 5\n";
        let r = parse(text).unwrap();
        assert_eq!(
            r,
            Recorded {
                client_instructions_per_call: 12345.0,
                server_instructions_per_request: 99.0,
                margin_percent: 5.0
            }
        );
        let u = update(text, 1.4, 2.6);
        assert!(u.starts_with("# comment\n"));
        let r = parse(&u).unwrap();
        assert_eq!(
            (
                r.client_instructions_per_call,
                r.server_instructions_per_request
            ),
            (1.0, 3.0)
        );
        assert!(parse("margin_percent = 5").is_err());
    }

    #[test]
    fn the_recorded_file_parses() {
        parse(&std::fs::read_to_string(guard_file()).unwrap()).unwrap();
    }
}
