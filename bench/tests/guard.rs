//! The instruction-count guard on the build the tests run: `bench guard` of the `bench` binary
//! cargo built for this test (a debug build under `cargo test`, so it checks
//! `bench/guard-debug.toml`; `--release`, `bench/guard-release.toml`). It fails when
//! easy-rpc's client instructions per call or server instructions per request, or their ratios
//! over plain tarpc counted in the same runs, grow past the recorded figures' margins.
//!
//! It needs valgrind: without it the test says it skipped and passes, except under CI (`CI`
//! set), where it fails, so that CI cannot skip the guard unnoticed (`.ci/run` installs
//! valgrind).

use std::process::{Command, Stdio};
use std::time::Instant;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// Whether `valgrind --tool=callgrind` runs here.
fn callgrind_runs() -> bool {
    Command::new("valgrind")
        .args(["--tool=callgrind", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn instructions_per_call_stay_within_the_recorded_margins() {
    if !callgrind_runs() {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is not installed: CI must run the instruction guard (.ci/run installs it)"
        );
        eprintln!("SKIPPED instruction guard: valgrind (callgrind) is not installed");
        return;
    }
    let t0 = Instant::now();
    // BENCH_VERBOSE: the measured processes' stderr (valgrind's summaries, a panic's
    // message) comes with the guard's, so that a failed run says why.
    let out = Command::new(BENCH)
        .arg("guard")
        .env("BENCH_VERBOSE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run bench guard");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Shown with the test's output (on failure, or with --nocapture).
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("bench guard took {:.1} s", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "bench guard failed ({}): a figure grew past its margin (above), or the run failed. \
         If the change is meant to cost more, record the figures: see CONTRIBUTING.md",
        out.status
    );
    assert!(
        stdout.contains("ok: every figure within its margin"),
        "bench guard did not check the figures"
    );
}
