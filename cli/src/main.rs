//! `easy-rpc`: the command line of easy-rpc.
//!
//! ```text
//! easy-rpc keygen [--hex]    print a new cluster secret (32 random bytes, base64 or hex)
//! easy-rpc members [--http <addr>] [--json]         the members a node sees
//! easy-rpc roles [--http <addr>] [--json]           each role's serving nodes
//! easy-rpc watch [--http <addr>] [--json] [--for <duration>] [--interval <duration>]
//! easy-rpc health [--http <addr>] [--json]          /livez and /readyz; exit 0 only if ready
//! easy-rpc help              this help
//! easy-rpc --version         the version
//! ```
//!
//! `members`, `roles`, `watch` and `health` read a node's management endpoint (its
//! `CLUSTER_HTTP_LISTEN`), given by `--http` or `EASY_RPC_HTTP`, with a plain HTTP/1.1 `GET`.
//!
//! Each subcommand is a module with a `run(args, out)` function that writes what to print to
//! `out` and returns the exit code, or a [`Failure`]; [`COMMANDS`] lists them, and `help` is
//! made from that list. Exit codes: 0 done (for `health`: live and ready), 1 failed (endpoint
//! unreachable or not ready), 2 a usage mistake.

mod cluster;
mod health;
mod http;
mod keygen;
mod members;
mod options;
mod roles;
mod table;
mod watch;

use std::io::Write;
use std::process::ExitCode;

/// Why a command did not finish with exit code 0 by itself.
#[derive(Debug)]
enum Failure {
    /// A mistake in the command line: the message and the usage, exit code 2.
    Usage(String),
    /// The command could not do its work (e.g. the endpoint is unreachable): exit code 1.
    Failed(String),
    /// The output was closed (e.g. `| head`): stop quietly.
    OutputClosed,
}

/// A subcommand: its name, its arguments as the help shows them, what it does, and its entry
/// point (the arguments after the subcommand's name, where to write; the exit code).
struct Command {
    name: &'static str,
    args: &'static str,
    about: &'static str,
    run: fn(&[String], &mut dyn Write) -> Result<u8, Failure>,
}

/// The arguments of the commands that read a management endpoint.
const HTTP_ARGS: &str = "[--http <addr>] [--json]";

/// Every subcommand, in the order `help` lists them.
const COMMANDS: &[Command] = &[
    Command {
        name: "keygen",
        args: "[--hex]",
        about: "print a new cluster secret: 32 random bytes from the operating system, in base64 \
                (or hex with --hex), for CLUSTER_SECRET or a CLUSTER_SECRET_FILE line",
        run: keygen_command,
    },
    Command {
        name: "members",
        args: HTTP_ARGS,
        about: "the members the node sees: name (* = that node), incarnation, status, roles, \
                services, gossip and RPC addresses, when the node last heard each",
        run: members::run,
    },
    Command {
        name: "roles",
        args: HTTP_ARGS,
        about: "each role with its serving nodes (what calls to the role pick from)",
        run: roles::run,
    },
    Command {
        name: "watch",
        args: "[--http <addr>] [--json] [--for <duration>] [--interval <duration>]",
        about: "print each change (member up, down, status, roles, services) as it happens, \
                polling every --interval (500ms), until interrupted or for --for (e.g. 30s)",
        run: watch::run,
    },
    Command {
        name: "health",
        args: HTTP_ARGS,
        about: "the node's /livez and /readyz; exit code 0 only when it is live and ready",
        run: health::run,
    },
];

fn keygen_command(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let text = keygen::run(args).map_err(Failure::Usage)?;
    write_out(out, &text)?;
    Ok(0)
}

/// `EASY_RPC_HTTP`, if set.
fn http_env() -> Option<String> {
    std::env::var(options::HTTP_VAR).ok()
}

/// Writes `text` to the output.
fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes()).map_err(output_error)
}

/// Writes `value` as pretty JSON and a newline.
fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Failed(e.to_string()))?;
    write_out(out, &(text + "\n"))
}

fn output_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::OutputClosed
    } else {
        Failure::Failed(format!("cannot write the output: {e}"))
    }
}

/// The help text.
fn usage() -> String {
    let mut text = format!(
        "easy-rpc {}: the easy-rpc command line\n\nusage: easy-rpc <command> [args]\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in COMMANDS {
        text.push_str(&format!("  {} {}\n      {}\n", c.name, c.args, c.about));
    }
    text.push_str("  help\n      this help\n");
    text.push_str(&format!(
        "\n<addr> is a node's management endpoint (its CLUSTER_HTTP_LISTEN), host:port; \
         without --http, {} is read.\n",
        options::HTTP_VAR
    ));
    text
}

/// Runs the command line `args` (without the program name), writing to `out`: the exit code.
fn run(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let Some((name, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    match name.as_str() {
        "help" | "--help" | "-h" => write_out(out, &usage()).map(|()| 0),
        "--version" | "-V" => {
            write_out(out, &format!("easy-rpc {}\n", env!("CARGO_PKG_VERSION"))).map(|()| 0)
        }
        name => match COMMANDS.iter().find(|c| c.name == name) {
            Some(c) => (c.run)(rest, out).map_err(|e| match e {
                Failure::Usage(e) => Failure::Usage(format!("{}: {e}", c.name)),
                Failure::Failed(e) => Failure::Failed(format!("{}: {e}", c.name)),
                Failure::OutputClosed => Failure::OutputClosed,
            }),
            None => Err(Failure::Usage(format!("unknown command {name:?}"))),
        },
    }
}

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| Failure::Usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = args.and_then(|args| run(&args, &mut out));
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(e)) => {
            eprintln!("easy-rpc: {e}\n\n{}", usage());
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("easy-rpc: {e}");
            ExitCode::from(1)
        }
        Err(Failure::OutputClosed) => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn output(a: &[&str]) -> Result<String, String> {
        let mut out = Vec::new();
        match run(&args(a), &mut out) {
            Ok(0) => Ok(String::from_utf8(out).unwrap()),
            Ok(code) => Err(format!("exit {code}")),
            Err(Failure::Usage(e) | Failure::Failed(e)) => Err(e),
            Err(Failure::OutputClosed) => Err("closed".into()),
        }
    }

    #[test]
    fn dispatches_and_refuses_what_it_does_not_know() {
        let help = output(&["help"]).unwrap();
        for c in COMMANDS {
            assert!(help.contains(&format!("{} {}", c.name, c.args)), "{help}");
        }
        assert!(output(&["--version"]).unwrap().starts_with("easy-rpc "));
        assert!(output(&[]).unwrap_err().contains("no command"));
        assert!(
            output(&["frobnicate"])
                .unwrap_err()
                .contains("unknown command")
        );
        let e = output(&["keygen", "--base32"]).unwrap_err();
        assert!(e.starts_with("keygen: ") && e.contains("--base32"), "{e}");
        let e = output(&["members", "--http", "127.0.0.1:9090", "--bogus"]).unwrap_err();
        assert!(e.starts_with("members: ") && e.contains("--bogus"), "{e}");
    }
}
