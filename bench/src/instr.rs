//! Instructions per call, counted by valgrind's callgrind: `bench instr`. Times vary with the
//! machine's load; instruction counts do not (to a few per call), so they show the cost of the
//! call path on a busy machine too, and `bench guard` can assert on them.
//!
//! Each figure is two runs of the same processes, one making `n` calls and one `3n`, after
//! the same warm-up: the difference of the counts divided by `2n` is the cost of one call,
//! start-up and tear-down cancel out. Client and server both run under callgrind (so that
//! each sees the other at the speed it would natively, relative to itself), and only their
//! main thread is counted: the client's main thread runs the caller tasks and tarpc's
//! dispatch, and an easy-rpc client runs its node on another thread (`--node-thread`); every
//! node uses a 30 s gossip interval, so that no gossip round falls inside a run. The two
//! counted processes are pinned to one core (`BENCH_INSTR_CORE`, default 0; `none` leaves
//! them unpinned), so that they take turns as they would natively.

use std::path::{Path, PathBuf};

use crate::procs::Proc;

/// Plain tarpc, plain tarpc over a node's sealed stream, easy-rpc, or easy-rpc with call
/// encryption off (client and server nodes both `unencrypted_calls`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Imp {
    Tarpc,
    Sealed,
    Easy,
    Unencrypted,
}

/// Instructions per call of one client and its server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PerCall {
    pub(crate) client: f64,
    pub(crate) server: f64,
}

/// Where the runs' callgrind files go: `BENCH_CALLGRIND_DIR` (kept, to be read with
/// `callgrind_annotate`), else a temporary directory (only the counts kept).
fn out_dir() -> PathBuf {
    let dir = keep_dir().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("easy-rpc-bench-instr-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("create the callgrind output directory");
    dir
}

fn keep_dir() -> Option<PathBuf> {
    std::env::var_os("BENCH_CALLGRIND_DIR").map(PathBuf::from)
}

fn callgrind(out: &Path) -> Vec<String> {
    // Client and server on one core take turns as they would natively, which makes the
    // counts repeat more closely than when the two valgrind processes run side by side at
    // speeds that vary with the machine's load.
    let core = std::env::var("BENCH_INSTR_CORE").unwrap_or_else(|_| "0".to_owned());
    let mut cmd = Vec::new();
    if core != "none" {
        cmd.extend(["taskset".to_owned(), "-c".to_owned(), core]);
    }
    cmd.extend(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
            .iter()
            .map(|s| s.to_string()),
    );
    cmd.push(format!("--callgrind-out-file={}", out.display()));
    cmd
}

/// Whether `valgrind --tool=callgrind` can run here.
pub(crate) fn available() -> bool {
    std::process::Command::new("valgrind")
        .args(["--tool=callgrind", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The instructions callgrind counted on the main thread of the process whose output file
/// is `out` (with `--separate-threads=yes` callgrind writes `<out>-01` for it).
fn main_thread_instructions(out: &Path) -> u64 {
    let file = PathBuf::from(format!("{}-01", out.display()));
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", file.display()));
    // The files are large; keep only the figure, unless asked to keep them.
    if keep_dir().is_some() {
        return total;
    }
    for entry in std::fs::read_dir(out.parent().expect("dir"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        if name
            .to_string_lossy()
            .starts_with(&*out.file_name().expect("name").to_string_lossy())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    total
}

/// One run: a server (and `servers - 1` more easy-rpc servers, natively) and a client; the
/// client makes `warm` calls, then the ones `cmd` asks for. With `measure_server`, the first
/// server runs under callgrind too; with `layered`, the easy-rpc client has one client layer,
/// tower's `ConcurrencyLimitLayer::new(1024)` (as in `bench layers`). Returns the main-thread
/// counts of client and server.
fn one_run(
    imp: Imp,
    servers: usize,
    role: &str,
    cmd: &str,
    measure_server: bool,
    layered: bool,
    label: &str,
) -> (u64, Option<u64>) {
    let dir = out_dir();
    let client_out = dir.join(format!("{label}.client"));
    let server_out = dir.join(format!("{label}.server"));
    let server_prefix = if measure_server {
        callgrind(&server_out)
    } else {
        Vec::new()
    };
    let cluster = format!("bench-instr-{}-{label}", std::process::id());
    let mut others = Vec::new();
    let (server, client_args) = match imp {
        Imp::Tarpc | Imp::Sealed => {
            let kind = if imp == Imp::Tarpc {
                "tarpc"
            } else {
                "tarpc-sealed"
            };
            let (server, addr) = Proc::spawn("tarpc server", &server_prefix, &["rpc-server", kind]);
            (server, vec!["rpc-client".to_owned(), kind.to_owned(), addr])
        }
        Imp::Easy | Imp::Unencrypted => {
            // Every node of the run with call encryption off, or none (`--quiet` twice then:
            // the argument lists keep one shape).
            let flag = if imp == Imp::Unencrypted {
                crate::rpc::UNENCRYPTED
            } else {
                "--quiet"
            };
            let (server, seed) = Proc::spawn(
                "easy-rpc server 0",
                &server_prefix,
                &[
                    "rpc-server",
                    "easy",
                    &cluster,
                    "adder-0",
                    "r1,r4,r8",
                    "--quiet",
                    flag,
                ],
            );
            for i in 1..servers {
                let roles = if i < 4 { "r4,r8" } else { "r8" };
                let name = format!("adder-{i}");
                others.push(
                    Proc::spawn(
                        "easy-rpc server",
                        &[],
                        &[
                            "rpc-server",
                            "easy",
                            &cluster,
                            &name,
                            roles,
                            &seed,
                            "--quiet",
                            flag,
                        ],
                    )
                    .0,
                );
            }
            let mut args = [
                "rpc-client",
                "easy",
                &cluster,
                &seed,
                "--node-thread",
                "--quiet",
                flag,
            ]
            .map(str::to_owned)
            .to_vec();
            if layered {
                args.push("--concurrency-layer".to_owned());
            }
            (server, args)
        }
    };
    let client_args: Vec<&str> = client_args.iter().map(String::as_str).collect();
    let (mut client, _) = Proc::spawn("client", &callgrind(&client_out), &client_args);
    client.ask(&format!("wait {role} {servers}"));
    // Warm-up: connections made, buffers grown, every server of the role reached.
    let warm = if cmd.starts_with("count-all") {
        format!("count-all {role} {servers} 50")
    } else {
        format!("count {role} 1 {}", 200 * servers)
    };
    client.ask(&warm);
    client.ask(cmd);
    client.finish();
    let client_count = main_thread_instructions(&client_out);
    let server_count = measure_server.then(|| {
        server.finish();
        main_thread_instructions(&server_out)
    });
    drop(others);
    // Empty now, unless asked to keep the files.
    let _ = std::fs::remove_dir(&dir);
    (client_count, server_count)
}

/// Instructions per call of `any()` (easy-rpc, one server node) and of plain tarpc, client
/// and server, `depth` caller tasks: for each, two runs of `n` and `3n` calls, the four runs
/// alternating (easy-rpc, plain tarpc, easy-rpc, plain tarpc) so that both see the same
/// machine.
pub(crate) fn per_call_pair(depth: usize, n: u64) -> [PerCall; 2] {
    let run = |imp: Imp, k: u64| {
        let target = if imp == Imp::Tarpc { "plain" } else { "r1" };
        let label = format!("{imp:?}-d{depth}-{k}n").to_lowercase();
        let cmd = format!("count {target} {depth} {}", k * n);
        let (c, s) = one_run(imp, 1, "r1", &cmd, true, false, &label);
        (c, s.expect("server counted"))
    };
    let e1 = run(Imp::Easy, 1);
    let t1 = run(Imp::Tarpc, 1);
    let e3 = run(Imp::Easy, 3);
    let t3 = run(Imp::Tarpc, 3);
    let per = |a: u64, b: u64| (b as f64 - a as f64) / (2 * n) as f64;
    [
        PerCall {
            client: per(e1.0, e3.0),
            server: per(e1.1, e3.1),
        },
        PerCall {
            client: per(t1.0, t3.0),
            server: per(t1.1, t3.1),
        },
    ]
}

/// Instructions per call of plain tarpc over a node's sealed stream, `depth` caller tasks.
fn per_call_sealed(depth: usize, n: u64) -> PerCall {
    per_call_of(Imp::Sealed, depth, n)
}

/// Instructions per call of `imp` alone (one server), `depth` caller tasks: two runs, of `n`
/// and `3n` calls.
fn per_call_of(imp: Imp, depth: usize, n: u64) -> PerCall {
    let run = |k: u64| {
        let label = format!("{imp:?}-d{depth}-{k}n").to_lowercase();
        let target = match imp {
            Imp::Tarpc | Imp::Sealed => "plain",
            Imp::Easy | Imp::Unencrypted => "r1",
        };
        let cmd = format!("count {target} {depth} {}", k * n);
        let (c, s) = one_run(imp, 1, "r1", &cmd, true, false, &label);
        (c, s.expect("server counted"))
    };
    let (a, b) = (run(1), run(3));
    let per = |a: u64, b: u64| (b as f64 - a as f64) / (2 * n) as f64;
    PerCall {
        client: per(a.0, b.0),
        server: per(a.1, b.1),
    }
}

/// Instructions per call of `any()` (easy-rpc, one server node), `depth` caller tasks, from a
/// client node with no client layer and from one with one `ConcurrencyLimit` layer: for each,
/// two runs of `n` and `3n` calls, alternating as in [`per_call_pair`].
fn layered_pair(depth: usize, n: u64) -> [PerCall; 2] {
    let run = |layered: bool, k: u64| {
        let label = format!(
            "easy-{}-d{depth}-{k}n",
            if layered { "layer" } else { "none" }
        );
        let cmd = format!("count r1 {depth} {}", k * n);
        let (c, s) = one_run(Imp::Easy, 1, "r1", &cmd, true, layered, &label);
        (c, s.expect("server counted"))
    };
    let n1 = run(false, 1);
    let l1 = run(true, 1);
    let n3 = run(false, 3);
    let l3 = run(true, 3);
    let per = |a: u64, b: u64| (b as f64 - a as f64) / (2 * n) as f64;
    [
        PerCall {
            client: per(n1.0, n3.0),
            server: per(n1.1, n3.1),
        },
        PerCall {
            client: per(l1.0, l3.0),
            server: per(l1.1, l3.1),
        },
    ]
}

/// `bench instr --layer concurrency`: instructions per `any()` call with one
/// `ConcurrencyLimit` client layer against none, as a Markdown table.
fn run_layered(n: u64) {
    println!("# Instructions per call: one ConcurrencyLimit client layer vs none (callgrind)\n");
    println!("machine: {}\n", crate::procs::machine());
    println!(
        "method: as `bench instr` (client and server under callgrind, main threads, \
         (count after {} calls - count after {n} calls) / {}); the client node has no client \
         layer, or `client_layer(ConcurrencyLimitLayer::new(1024))`; same server.\n",
        3 * n,
        2 * n
    );
    println!(
        "| figure | no layer | one ConcurrencyLimit | difference |\n| --- | --- | --- | --- |"
    );
    for depth in [1, 64] {
        let [none, one] = layered_pair(depth, n);
        println!(
            "| client instructions per call, {depth} in flight | {:.0} | {:.0} | {:+.0} ({}) |",
            none.client,
            one.client,
            one.client - none.client,
            pct(one.client, none.client)
        );
        println!(
            "| server instructions per request, {depth} in flight | {:.0} | {:.0} | {:+.0} |",
            none.server,
            one.server,
            one.server - none.server
        );
    }
}

/// Client instructions per node-call: `all` over 8 nodes, and `any()` over the same 8.
fn all_vs_any(n: u64) -> (f64, f64) {
    let per = |cmd: &dyn Fn(u64) -> String, label: &str, calls_per: f64| {
        let (a, _) = one_run(
            Imp::Easy,
            8,
            "r8",
            &cmd(n),
            false,
            false,
            &format!("{label}-1n"),
        );
        let (b, _) = one_run(
            Imp::Easy,
            8,
            "r8",
            &cmd(3 * n),
            false,
            false,
            &format!("{label}-3n"),
        );
        (b as f64 - a as f64) / (2 * n) as f64 / calls_per
    };
    let all = per(&|k| format!("count-all r8 8 {k}"), "all8", 8.0);
    let any = per(&|k| format!("count r8 1 {k}"), "any8", 1.0);
    (all, any)
}

fn pct(ours: f64, base: f64) -> String {
    format!("{:+.1} %", (ours / base - 1.0) * 100.0)
}

/// `bench instr [--calls N] [--layer concurrency]`: the instruction figures as a Markdown
/// table (with `--layer concurrency`: one `ConcurrencyLimit` client layer against none). With
/// `BENCH_CALLGRIND_DIR=dir`, every run's callgrind files are kept there
/// (`<imp>-d<depth>-<1|3>n.<client|server>-01`, the main thread's), to see where the
/// instructions go: `callgrind_annotate dir/easy-d1-3n.client-01`.
pub fn run(args: &[String]) {
    assert!(
        available(),
        "bench instr needs valgrind (callgrind) on the PATH"
    );
    let n: u64 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2000);
    match args
        .iter()
        .position(|a| a == "--layer")
        .map(|i| args.get(i + 1).map(String::as_str))
    {
        None => {}
        Some(Some("concurrency")) => {
            run_layered(n);
            finish();
            return;
        }
        Some(other) => panic!("bench instr --layer: `concurrency` is the one layer, not {other:?}"),
    }
    println!("# Instructions per call (callgrind)\n");
    println!("machine: {}\n", crate::procs::machine());
    println!(
        "method: client and server processes both under `valgrind --tool=callgrind \
         --separate-threads=yes`, {}, main threads counted (the client's runs the caller tasks and \
         tarpc's dispatch; an easy-rpc client's node runs on another thread); each figure is \
         (count after {} calls - count after {n} calls) / {}, same warm-up before both; \
         postcard on both sides; every node gossips every 30 s (no round inside a run).\n",
        match std::env::var("BENCH_INSTR_CORE").as_deref() {
            Ok("none") => "unpinned".to_owned(),
            Ok(core) => format!("both pinned to core {core}"),
            Err(_) => "both pinned to core 0".to_owned(),
        },
        3 * n,
        2 * n
    );
    println!(
        "| figure | plain tarpc | easy-rpc | easy-rpc over plain tarpc | goal |\n| --- | --- | --- | --- | --- |"
    );
    let mut one = None;
    let mut plain = Vec::new();
    for depth in [1, 64] {
        let [e, t] = per_call_pair(depth, n);
        if depth == 1 {
            one = Some(e);
        }
        plain.push((depth, t));
        let (cg, sg) = if depth == 1 {
            ("<= +5 %", "<= +3 %")
        } else {
            ("reported", "reported")
        };
        rows(&format!("{depth} in flight"), &t, &e, (cg, sg));
    }
    // The encryption every call pays: plain tarpc over the same sealed stream.
    let sealed = per_call_sealed(1, n);
    let e = one.expect("measured at 1 in flight");
    rows(
        "1 in flight, against sealed tarpc (baseline column: sealed tarpc)",
        &sealed,
        &e,
        ("reported", "reported"),
    );
    // Like for like: easy-rpc with call encryption off against plain tarpc (the plain tarpc
    // figures of the same depth above).
    for (depth, t) in plain {
        let u = per_call_of(Imp::Unencrypted, depth, n);
        rows(
            &format!("{depth} in flight, easy-rpc unencrypted (`unencrypted_calls`)"),
            &t,
            &u,
            ("reported", "reported"),
        );
    }
    let (all, any) = all_vs_any(n / 4);
    println!(
        "| `all` over 8 nodes: client instructions per node-call vs one `any()` over the same 8 | `any()`: {any:.0} | `all`: {all:.0} per node | {:.2}x | <= 1.2x |",
        all / any
    );
    finish();
}

/// Says where the callgrind files are, or removes them.
fn finish() {
    match keep_dir() {
        Some(dir) => println!("\ncallgrind files kept in {}", dir.display()),
        None => {
            let _ = std::fs::remove_dir_all(out_dir());
        }
    }
}

/// The client and server rows of one comparison: `what` after the figure's name, the
/// baseline's counts, ours, and the goal of each row.
fn rows(what: &str, base: &PerCall, ours: &PerCall, goals: (&str, &str)) {
    println!(
        "| client instructions per call, {what} | {:.0} | {:.0} | {} | {} |",
        base.client,
        ours.client,
        pct(ours.client, base.client),
        goals.0
    );
    println!(
        "| server instructions per request, {what} | {:.0} | {:.0} | {} | {} |",
        base.server,
        ours.server,
        pct(ours.server, base.server),
        goals.1
    );
}
