//! Depending on easy-rpc from a crate outside this workspace, as a user does.
//!
//! The test writes a small crate into a temporary directory (outside the workspace, so no
//! setting of this workspace applies to it), which depends on `easy-rpc`, `serde` and `tokio`,
//! defines a service with `#[easy_rpc::service]`, starts two nodes on loopback in one process
//! and makes one call from one to the other. It builds and runs that crate twice:
//!
//! - (a) with `easy-rpc = { path = "<this checkout>/easy-rpc" }`: the working tree as it is,
//!   uncommitted changes included;
//! - (b) with `easy-rpc = { git = "file://<this checkout>", rev = "<HEAD>" }`: the committed
//!   `HEAD` only, fetched from the repository as any git dependency is (a shallow clone works
//!   too).
//!
//! The generated crate builds in `target/outside-crate` (its own directory, so it never waits
//! for the build lock of the `cargo test` that runs this test) and starts from a copy of this
//! workspace's `Cargo.lock`, so it resolves the same versions of everything. Its sources stay
//! in one temporary directory per checkout, rewritten only when they change, so that a rerun
//! rebuilds nothing that did not change. It is the heaviest test of the workspace (a first run
//! compiles the dependency graph once more); cargo runs test binaries one after another, so it
//! does not overlap the timing-sensitive tests, and it prints its own wall time.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The program the generated crate runs: only the public API, as the README shows it.
const MAIN_RS: &str = r#"use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Greeting {
    pub text: String,
    pub from: String,
}

#[easy_rpc::service]
pub trait Greeter {
    async fn greet(name: String) -> Greeting;
}

struct GreeterImpl;

impl Greeter for GreeterImpl {
    async fn greet(&self, name: String) -> Greeting {
        Greeting { text: format!("hello, {name}"), from: "server".into() }
    }
}

// One error type for start-up and calls: `?` works on both.
#[tokio::main]
async fn main() -> Result<(), easy_rpc::Error> {
    let cluster = format!("outside-crate-{}", std::process::id());
    // Both nodes share the cluster secret (from `easy-rpc keygen`, usually in CLUSTER_SECRET).
    let secret = easy_rpc::cluster_helper::Secret::generate();
    let server = easy_rpc::Node::builder()
        .cluster(&cluster)
        .name("server")
        .listen("127.0.0.1:0")
        .secret_key(secret.clone())
        .roles(["greeter"])
        .serve(GreeterImpl.serve())
        .start()
        .await?;
    let client = easy_rpc::Node::builder()
        .cluster(&cluster)
        .name("client")
        .listen("127.0.0.1:0")
        .secret_key(secret)
        .seeds([server.gossip_addr().to_string()])
        .start()
        .await?;
    let waiting = Instant::now();
    while client.registry().nodes_with_role("greeter").is_empty() {
        if waiting.elapsed() > Duration::from_secs(30) {
            eprintln!("the client did not see the greeter within 30 s");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = client.any("greeter").greet("outside".into()).await?;
    println!("answer: {} (from {})", answer.text, answer.from);
    client.shutdown().await;
    server.shutdown().await;
    Ok(())
}
"#;

/// What the program prints when the call went through.
const EXPECTED: &str = "answer: hello, outside (from server)";

/// The longest a `cargo run` may take, a first build of the whole graph on a busy machine
/// included. Past it, cargo and the compilers it started are killed.
const CARGO_TIMEOUT: Duration = Duration::from_secs(25 * 60);

#[test]
fn an_outside_crate_builds_and_calls_through_path_and_git_dependencies() {
    let started = Instant::now();
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
        .to_path_buf();
    // The workspace's target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("outside-crate");
    let lock = fs::read_to_string(checkout.join("Cargo.lock")).expect("workspace Cargo.lock");
    let head = git_head(&checkout);
    forget_other_commits(&target_dir, &head);
    let sources = std::env::temp_dir().join(format!(
        "easy-rpc-outside-crate-{:016x}",
        fnv1a(checkout.to_string_lossy().as_bytes())
    ));

    // (a) By path: the checkout as it is now.
    let path_dep = format!(
        "easy-rpc = {{ path = {} }}",
        toml_string(&checkout.join("easy-rpc"))
    );
    let took_path = build_and_run(&sources.join("by-path"), &path_dep, &lock, &target_dir);

    // (b) By git: the committed HEAD of the checkout.
    let url = format!("file://{}", checkout.display());
    let git_dep = format!(
        "easy-rpc = {{ git = {}, rev = \"{head}\" }}",
        toml_string(Path::new(&url))
    );
    let took_git = build_and_run(&sources.join("by-git"), &git_dep, &lock, &target_dir);

    report(&format!(
        "outside_crate: by path {:.1} s; by git (committed HEAD {}, uncommitted changes are only \
         in the path variant) {:.1} s; total {:.1} s",
        took_path.as_secs_f64(),
        &head[..12],
        took_git.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
}

/// Writes the crate into `dir` with `dependency` as its easy-rpc line, runs it, checks what it
/// printed and how it exited; returns how long that took.
fn build_and_run(dir: &Path, dependency: &str, lock: &str, target_dir: &Path) -> Duration {
    fs::create_dir_all(dir.join("src")).expect("create crate dir");
    write_if_changed(
        &dir.join("Cargo.toml"),
        &format!(
            "[package]\n\
             name = \"outside-crate\"\n\
             version = \"0.0.0\"\n\
             edition = \"2024\"\n\
             publish = false\n\
             \n\
             [dependencies]\n\
             {dependency}\n\
             serde = {{ version = \"1\", features = [\"derive\"] }}\n\
             tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\
             \n\
             # Its own workspace: no enclosing directory's settings apply.\n\
             [workspace]\n"
        ),
    );
    // The workspace's lock file, so that the crate resolves the versions the workspace is
    // tested with (cargo adds the new root package and the dependency's new source to it, and
    // drops the workspace's own test and example packages).
    fs::write(dir.join("Cargo.lock"), lock).expect("write Cargo.lock");
    write_if_changed(&dir.join("src").join("main.rs"), MAIN_RS);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .arg("run")
        .arg("--quiet")
        .arg("--target-dir")
        .arg(target_dir)
        // The git program fetches the file:// dependency, as in CI setups and for users whose
        // git configuration (credentials, proxies) cargo should follow; a shallow checkout
        // works as a source either way.
        .env("CARGO_NET_GIT_FETCH_WITH_CLI", "true")
        .env("CARGO_TERM_COLOR", "never")
        // Incremental data of the easy-rpc crates would take more room than it saves time.
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let (status, stdout, stderr) = run_bounded(command, dir, CARGO_TIMEOUT);
    let took = started.elapsed();
    assert!(
        status.success(),
        "`cargo run` of the outside crate ({dependency}) failed: {status}\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l == EXPECTED),
        "the outside crate ({dependency}) did not print {EXPECTED:?}\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    took
}

/// Runs `command` in a process group of its own, output to files in `dir`; past `timeout`
/// the group (cargo and the compilers it started) is killed by its id.
fn run_bounded(
    mut command: Command,
    dir: &Path,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    use std::os::unix::process::CommandExt as _;
    let stdout_path = dir.join("cargo-run.stdout");
    let stderr_path = dir.join("cargo-run.stderr");
    command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .process_group(0);
    let mut child = command.spawn().expect("spawn cargo");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if started.elapsed() > timeout {
            // The group's id is the child's id (process_group(0)).
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`cargo run` of the outside crate did not finish within {timeout:?}\n\
                 --- stderr\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    (status, stdout, stderr)
}

/// The checkout's `HEAD` commit.
fn git_head(checkout: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(checkout)
        .args(["rev-parse", "--verify", "HEAD^{commit}"])
        .stdin(Stdio::null())
        .output()
        .expect("run git (the git variant needs the checkout to be a git repository)");
    assert!(
        out.status.success(),
        "git rev-parse HEAD failed in {}: {}",
        checkout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_eq!(head.len(), 40, "not a commit id: {head:?}");
    head
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let s = path.to_str().expect("a UTF-8 path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Prints past the test harness's capture, so that the time shows in `cargo test`'s output.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The crates whose build outputs depend on the commit the git variant builds.
const OWN_CRATES: [&str; 5] = [
    "easy_rpc",
    "cluster_helper",
    "easy_rpc_chitchat",
    "easy_rpc_macros",
    "outside_crate",
];

/// Keeps `target/outside-crate` from growing with every commit: cargo names a git
/// dependency's outputs after its commit, so each new `HEAD` would add a full set of
/// easy-rpc's crates and a program binary. When `HEAD` is not the one of the last run, the
/// outputs of this workspace's crates and of the generated crate are removed (both variants
/// rebuild them; cargo rebuilds whatever output is missing); dependencies from crates.io stay.
fn forget_other_commits(target_dir: &Path, head: &str) {
    let marker = target_dir.join("built-head");
    if fs::read_to_string(&marker).is_ok_and(|last| last == head) {
        return;
    }
    if let Ok(entries) = fs::read_dir(target_dir.join("debug").join("deps")) {
        for entry in entries.flatten() {
            if is_own_output(&entry.file_name().to_string_lossy()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    fs::create_dir_all(target_dir).expect("create the outside crate's target dir");
    fs::write(&marker, head).expect("write the outside crate's head marker");
}

/// `lib<crate>-<16 hex digits>.<ext>` or `<crate>-<16 hex digits>[.<ext>]` for one of
/// [`OWN_CRATES`].
fn is_own_output(file: &str) -> bool {
    let stem = file.split('.').next().unwrap_or(file);
    let Some((name, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    let name = name.strip_prefix("lib").unwrap_or(name);
    hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && OWN_CRATES.contains(&name)
}

/// Writes `contents` to `path` unless the file already holds exactly that (cargo rebuilds a
/// crate whose files' modification times change).
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// FNV-1a, 64 bits: names the sources directory after the checkout's path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
