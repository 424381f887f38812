//! `bench guard`: fails when the client instructions per call of `any()` (one node, one in
//! flight), or the server's per request, grow more than a margin over the figures recorded for
//! this build's profile: `bench/guard-release.toml` for a release build (`bench/guard.sh`),
//! `bench/guard-debug.toml` for a debug build (`bench/tests/guard.rs`, which CI runs with the
//! other tests). Instruction counts hold still on a busy machine, so this can run in CI where
//! times cannot.

use std::path::PathBuf;

use crate::instr::PerCall;

/// The profile this program was built with, which picks its figure file: counts of a debug
/// build are several times those of a release build and shaped differently.
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The recorded figures of this build's profile, next to this crate's manifest.
fn guard_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("guard-{}.toml", profile()))
}

/// The figures a guard file records, in the order they are checked: easy-rpc's client
/// instructions per call and server instructions per request over plain tarpc's, counted in
/// the same runs (the main checks: they move with easy-rpc's own path), then the same two as
/// absolute counts (which also move with the toolchain, glibc and valgrind). Each has its
/// margin, how far it may grow in percent, under `<figure>_margin_percent`.
const FIGURES: [&str; 4] = [
    "client_over_tarpc",
    "server_over_tarpc",
    "client_instructions_per_call",
    "server_instructions_per_request",
];

/// The figures of easy-rpc and plain tarpc counted in one measurement, in [`FIGURES`]' order.
fn figures(easy: PerCall, tarpc: PerCall) -> [f64; 4] {
    [
        easy.client / tarpc.client,
        easy.server / tarpc.server,
        easy.client,
        easy.server,
    ]
}

/// A guard file: `key = value` lines, `#` comments.
#[derive(Debug, PartialEq)]
struct Recorded {
    /// The build profile the figures were counted with: `debug` or `release`.
    profile: String,
    /// The recorded figures, in [`FIGURES`]' order.
    figures: [f64; 4],
    /// How far each figure may grow, in percent.
    margins: [f64; 4],
    /// Calls per run (the counts depend a little on it: record and check with the same).
    calls: f64,
}

/// The value of `key` in `text`, comment and surrounding blanks removed.
fn value<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .ok_or_else(|| format!("{key} missing"))
}

fn parse(text: &str) -> Result<Recorded, String> {
    let get = |key: &str| -> Result<f64, String> {
        value(text, key).and_then(|v| {
            v.replace('_', "")
                .parse()
                .map_err(|e| format!("{key}: {e}"))
        })
    };
    let profile = value(text, "profile")?.trim_matches('"').to_owned();
    if profile != "debug" && profile != "release" {
        return Err(format!(
            "profile: \"debug\" or \"release\", not \"{profile}\""
        ));
    }
    let mut figures = [0.0; 4];
    let mut margins = [0.0; 4];
    for (i, key) in FIGURES.iter().enumerate() {
        figures[i] = get(key)?;
        margins[i] = get(&format!("{key}_margin_percent"))?;
    }
    Ok(Recorded {
        profile,
        figures,
        margins,
        calls: get("calls")?,
    })
}

/// Replaces the measured figures' values in `text`, keeping its comments, margins and layout.
fn update(text: &str, easy: PerCall, tarpc: PerCall) -> String {
    let now = figures(easy, tarpc);
    text.lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match FIGURES.iter().position(|f| *f == key) {
                Some(i @ 0..2) => format!("{key} = {:.4}", now[i]),
                Some(i) => format!("{key} = {:.0}", now[i]),
                None => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One measured figure against its recorded value.
#[derive(Debug)]
struct Check {
    /// The figure's key in the guard file.
    figure: &'static str,
    now: f64,
    recorded: f64,
    /// How far `now` may be over `recorded`, in percent.
    margin: f64,
}

impl Check {
    fn percent(&self) -> f64 {
        (self.now / self.recorded - 1.0) * 100.0
    }

    /// Whether the figure grew past its margin.
    fn over(&self) -> bool {
        self.percent() > self.margin
    }

    fn show(&self, v: f64) -> String {
        if self.figure.contains("_over_") {
            format!("{v:.4} ({:+.1} % over plain tarpc)", (v - 1.0) * 100.0)
        } else {
            format!("{v:.0}")
        }
    }

    /// The figure, its recorded value and the verdict, on one line.
    fn line(&self) -> String {
        let (pct, margin) = (self.percent(), self.margin);
        let verdict = if self.over() {
            "FAIL: over the margin"
        } else if pct < -margin {
            "lower: record it with `bench guard --update`"
        } else {
            "ok"
        };
        format!(
            "{}: {} (recorded {}, {pct:+.2} %, margin {margin} %): {verdict}",
            self.figure,
            self.show(self.now),
            self.show(self.recorded)
        )
    }
}

/// The checks of one measurement against `rec`, in [`FIGURES`]' order.
fn checks(rec: &Recorded, easy: PerCall, tarpc: PerCall) -> [Check; 4] {
    let now = figures(easy, tarpc);
    std::array::from_fn(|i| Check {
        figure: FIGURES[i],
        now: now[i],
        recorded: rec.figures[i],
        margin: rec.margins[i],
    })
}

/// `bench guard [--update] [--file PATH]`: exit status 1 when a figure is over its margin.
/// Without `--file`, the figures of this build's profile (`bench/guard-<profile>.toml`); a
/// file recorded with the other profile is refused. `--update` records the measured figures
/// in the file instead of checking them.
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
    assert!(
        rec.profile == profile(),
        "{} holds figures of a {} build; this is a {} build (its figures: {})",
        file.display(),
        rec.profile,
        profile(),
        guard_file().display()
    );
    let n = rec.calls as u64;
    println!(
        "{} build, figures of {}, {n} calls per run",
        profile(),
        file.display()
    );
    let [easy, tarpc] = crate::instr::per_call_pair(1, n);
    println!(
        "plain tarpc, same runs: {:.0} client instructions per call, {:.0} server instructions per request",
        tarpc.client, tarpc.server
    );
    if args.iter().any(|a| a == "--update") {
        std::fs::write(&file, update(&text, easy, tarpc))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        println!(
            "recorded in {}: client {:.0} ({:+.1} % over plain tarpc), server {:.0} ({:+.1} %)",
            file.display(),
            easy.client,
            (easy.client / tarpc.client - 1.0) * 100.0,
            easy.server,
            (easy.server / tarpc.server - 1.0) * 100.0
        );
        return;
    }
    let checks = checks(&rec, easy, tarpc);
    for c in &checks {
        println!("{}", c.line());
    }
    if checks.iter().any(Check::over) {
        std::process::exit(1);
    }
    println!("ok: every figure within its margin");
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\nprofile = \"release\" # built with\nclient_over_tarpc = 1.1 # now\nclient_over_tarpc_margin_percent = 1\nserver_over_tarpc = 1.05\nserver_over_tarpc_margin_percent = 5\nclient_instructions_per_call = 12_345\nclient_instructions_per_call_margin_percent = 10\nserver_instructions_per_request = 99\nserver_instructions_per_request_margin_percent = 20\ncalls = 2000\n";

    #[test]
    fn parses_and_updates_the_guard_file() {
        let r = parse(TEXT).unwrap();
        assert_eq!(
            r,
            Recorded {
                profile: "release".to_owned(),
                figures: [1.1, 1.05, 12345.0, 99.0],
                margins: [1.0, 5.0, 10.0, 20.0],
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
        assert!(u.starts_with("# comment\nprofile = \"release\""));
        let r = parse(&u).unwrap();
        assert_eq!(r.figures, [1.2004, 1.05, 1200.0, 2100.0]);
        assert_eq!((r.margins, r.calls), ([1.0, 5.0, 10.0, 20.0], 2000.0));
        assert!(parse("profile = \"debug\"\nclient_over_tarpc = 5").is_err());
        assert!(parse(&TEXT.replace("client_over_tarpc_margin", "x")).is_err());
        assert!(parse(&TEXT.replace("\"release\"", "\"fast\"")).is_err());
        assert!(parse(&TEXT.replace("profile", "# profile")).is_err());
    }

    #[test]
    fn a_figure_over_its_margin_fails() {
        let check = |now: f64| Check {
            figure: "client_instructions_per_call",
            now,
            recorded: 100.0,
            margin: 5.0,
        };
        assert!(!check(104.9).over());
        assert!(check(105.1).over());
        assert!(!check(50.0).over());
        assert!(check(105.1).line().ends_with("FAIL: over the margin"));
        assert!(check(50.0).line().contains("lower"));
    }

    /// The figures a run would measure if it counted exactly what `rec` recorded.
    fn as_recorded(rec: &Recorded) -> [PerCall; 2] {
        let [client_ratio, server_ratio, client, server] = rec.figures;
        let easy = PerCall { client, server };
        let tarpc = PerCall {
            client: client / client_ratio,
            server: server / server_ratio,
        };
        [easy, tarpc]
    }

    /// `text` with `key`'s value multiplied by `factor`.
    fn scaled(text: &str, key: &str, factor: f64) -> String {
        text.lines()
            .map(|l| match l.split_once('=') {
                Some((k, v)) if k.trim() == key => {
                    let v: f64 = v.trim().replace('_', "").parse().unwrap();
                    format!("{key} = {}", v * factor)
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_measurement_passes_its_figures_and_fails_tightened_ones() {
        for profile in ["debug", "release"] {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("guard-{profile}.toml"));
            let text = std::fs::read_to_string(&path).unwrap();
            let rec = parse(&text).unwrap();
            assert_eq!(rec.profile, profile, "{}", path.display());
            let [easy, tarpc] = as_recorded(&rec);
            assert!(checks(&rec, easy, tarpc).iter().all(|c| !c.over()));
            // Each recorded figure tightened past its margin fails that check alone; within
            // its margin, it passes.
            for (i, key) in FIGURES.into_iter().enumerate() {
                let by = |share: f64| 1.0 / (1.0 + share * rec.margins[i] / 100.0);
                let tight = parse(&scaled(&text, key, by(1.1))).unwrap();
                let over: Vec<bool> = checks(&tight, easy, tarpc)
                    .iter()
                    .map(Check::over)
                    .collect();
                let mut want = [false; 4];
                want[i] = true;
                assert_eq!(over, want, "{profile}: {key} tightened");
                let loose = parse(&scaled(&text, key, by(0.9))).unwrap();
                assert!(
                    checks(&loose, easy, tarpc).iter().all(|c| !c.over()),
                    "{profile}: {key}"
                );
            }
            // A client path that costs 1.1 margins more than recorded, plain tarpc unchanged.
            let slower = PerCall {
                client: easy.client * (1.0 + 1.1 * rec.margins[0] / 100.0),
                ..easy
            };
            assert!(checks(&rec, slower, tarpc)[0].over(), "{profile}");
        }
    }
}
