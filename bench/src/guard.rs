//! `bench guard`: fails when the client instructions per call of `any()` (one node, one in
//! flight) grow more than a margin over the figure recorded in `bench/guard.toml`. Instruction
//! counts hold still on a busy machine, so this can run in CI where times cannot.

use std::path::PathBuf;

use crate::instr::PerCall;

/// The recorded figures, next to this crate's manifest.
fn guard_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guard.toml")
}

/// The figures of `guard.toml`: `key = number` lines, `#` comments.
#[derive(Debug, PartialEq)]
struct Recorded {
    /// easy-rpc's client instructions per call over plain tarpc's, counted in the same run.
    client_over_tarpc: f64,
    /// The same, server side.
    server_over_tarpc: f64,
    /// How far the two ratios may grow, in percent.
    margin_percent: f64,
    client_instructions_per_call: f64,
    server_instructions_per_request: f64,
    /// How far the absolute counts may grow, in percent: they also move with the toolchain
    /// and, by a few percent, with the machine's load.
    absolute_margin_percent: f64,
    /// Calls per run (the counts depend a little on it: record and check with the same).
    calls: f64,
}

const KEYS: [&str; 7] = [
    "client_over_tarpc",
    "server_over_tarpc",
    "margin_percent",
    "client_instructions_per_call",
    "server_instructions_per_request",
    "absolute_margin_percent",
    "calls",
];

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
        client_over_tarpc: get(KEYS[0])?,
        server_over_tarpc: get(KEYS[1])?,
        margin_percent: get(KEYS[2])?,
        client_instructions_per_call: get(KEYS[3])?,
        server_instructions_per_request: get(KEYS[4])?,
        absolute_margin_percent: get(KEYS[5])?,
        calls: get(KEYS[6])?,
    })
}

/// Replaces the measured figures' values in `text`, keeping its comments and layout.
fn update(text: &str, easy: PerCall, tarpc: PerCall) -> String {
    text.lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "client_over_tarpc" => format!("{key} = {:.4}", easy.client / tarpc.client),
                "server_over_tarpc" => format!("{key} = {:.4}", easy.server / tarpc.server),
                "client_instructions_per_call" => format!("{key} = {:.0}", easy.client),
                "server_instructions_per_request" => format!("{key} = {:.0}", easy.server),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One check: `now` against `recorded`, `margin` percent; prints it, true when over.
fn check(what: &str, now: f64, recorded: f64, margin: f64, fmt: fn(f64) -> String) -> bool {
    let pct = (now / recorded - 1.0) * 100.0;
    let verdict = if pct > margin {
        "FAIL: over the margin"
    } else if pct < -margin {
        "lower: record it with `bench guard --update`"
    } else {
        "ok"
    };
    println!(
        "{what}: {} (recorded {}, {pct:+.1} %, margin {margin} %): {verdict}",
        fmt(now),
        fmt(recorded)
    );
    pct > margin
}

/// `bench guard [--update] [--file guard.toml]`: exit status 1 when a figure is over its
/// margin.
pub fn run(args: &[String]) {
    assert!(
        crate::instr::available(),
        "bench guard needs valgrind (callgrind) on the PATH"
    );
    let file = args
        .iter()
        .position(|a| a == "--file")
        .and_then(|i| args.get(i + 1))
        .map_or_else(guard_file, PathBuf::from);
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let rec = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let n = rec.calls as u64;
    let [easy, tarpc] = per_call_both(1, n);
    let ratio = |r: f64| format!("{:+.1} % over plain tarpc", (r - 1.0) * 100.0);
    let count = |c: f64| format!("{c:.0}");
    println!(
        "plain tarpc, same runs: {:.0} client instructions per call, {:.0} server instructions per request",
        tarpc.client, tarpc.server
    );
    if args.iter().any(|a| a == "--update") {
        std::fs::write(&file, update(&text, easy, tarpc))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        println!(
            "recorded in {}: client {:.0} ({}), server {:.0} ({})",
            file.display(),
            easy.client,
            ratio(easy.client / tarpc.client),
            easy.server,
            ratio(easy.server / tarpc.server)
        );
        return;
    }
    let (m, am) = (rec.margin_percent, rec.absolute_margin_percent);
    let failed = [
        check(
            "easy-rpc client instructions per call",
            easy.client / tarpc.client,
            rec.client_over_tarpc,
            m,
            ratio,
        ),
        check(
            "easy-rpc server instructions per request",
            easy.server / tarpc.server,
            rec.server_over_tarpc,
            m,
            ratio,
        ),
        check(
            "easy-rpc client instructions per call",
            easy.client,
            rec.client_instructions_per_call,
            am,
            count,
        ),
        check(
            "easy-rpc server instructions per request",
            easy.server,
            rec.server_instructions_per_request,
            am,
            count,
        ),
    ];
    if failed.contains(&true) {
        std::process::exit(1);
    }
    println!("ok: every figure within its margin");
}

/// easy-rpc's and plain tarpc's figures, their runs alternating so that both see the same
/// machine.
fn per_call_both(depth: usize, n: u64) -> [PerCall; 2] {
    crate::instr::per_call_pair(depth, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\nclient_over_tarpc = 1.1 # now\nserver_over_tarpc = 1.05\nmargin_percent = 5\nclient_instructions_per_call = 12_345\nserver_instructions_per_request = 99\nabsolute_margin_percent = 10\ncalls = 2000\n";

    #[test]
    fn parses_and_updates_the_guard_file() {
        let r = parse(TEXT).unwrap();
        assert_eq!(
            r,
            Recorded {
                client_over_tarpc: 1.1,
                server_over_tarpc: 1.05,
                margin_percent: 5.0,
                client_instructions_per_call: 12345.0,
                server_instructions_per_request: 99.0,
                absolute_margin_percent: 10.0,
                calls: 2000.0,
            }
        );
        let easy = PerCall {
            client: 1200.4,
            server: 2100.0,
        };
        let tarpc = PerCall {
            client: 1000.0,
            server: 2000.0,
        };
        let u = update(TEXT, easy, tarpc);
        assert!(u.starts_with("# comment\n"));
        let r = parse(&u).unwrap();
        assert_eq!(r.client_over_tarpc, 1.2004);
        assert_eq!(r.server_over_tarpc, 1.05);
        assert_eq!(r.client_instructions_per_call, 1200.0);
        assert_eq!((r.margin_percent, r.calls), (5.0, 2000.0));
        assert!(parse("margin_percent = 5").is_err());
    }

    #[test]
    fn a_figure_over_its_margin_fails() {
        let fmt = |v: f64| format!("{v}");
        assert!(!check("x", 104.9, 100.0, 5.0, fmt));
        assert!(check("x", 105.1, 100.0, 5.0, fmt));
        assert!(!check("x", 50.0, 100.0, 5.0, fmt));
    }

    #[test]
    fn the_recorded_file_parses() {
        parse(&std::fs::read_to_string(guard_file()).unwrap()).unwrap();
    }
}
