//! `easy-rpc`: the command line of easy-rpc.
//!
//! ```text
//! easy-rpc keygen [--hex]    print a new cluster secret (32 random bytes, base64 or hex)
//! easy-rpc help              this help
//! easy-rpc --version         the version
//! ```
//!
//! Each subcommand is a module with a `run(args) -> Result<String, String>` function that
//! returns what to print; [`COMMANDS`] lists them, and `help` is made from that list.

mod keygen;

use std::io::Write;
use std::process::ExitCode;

/// A subcommand: its name, its arguments as the help shows them, what it does, and its entry
/// point (the arguments after the subcommand's name; what to print, or an error message).
struct Command {
    name: &'static str,
    args: &'static str,
    about: &'static str,
    run: fn(&[String]) -> Result<String, String>,
}

/// Every subcommand, in the order `help` lists them.
const COMMANDS: &[Command] = &[Command {
    name: "keygen",
    args: "[--hex]",
    about: "print a new cluster secret: 32 random bytes from the operating system, in base64 \
            (or hex with --hex), for CLUSTER_SECRET or a CLUSTER_SECRET_FILE line",
    run: keygen::run,
}];

/// The help text.
fn usage() -> String {
    let mut text = format!(
        "easy-rpc {}: the easy-rpc command line\n\nusage: easy-rpc <command> [args]\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in COMMANDS {
        let call = format!("{} {}", c.name, c.args);
        text.push_str(&format!("  {call:<18} {}\n", c.about));
    }
    text.push_str("  help               this help\n");
    text
}

/// Runs the command line `args` (without the program name): what to print on success, or an
/// error message.
fn run(args: &[String]) -> Result<String, String> {
    let Some((name, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    match name.as_str() {
        "help" | "--help" | "-h" => Ok(usage()),
        "--version" | "-V" => Ok(format!("easy-rpc {}\n", env!("CARGO_PKG_VERSION"))),
        name => match COMMANDS.iter().find(|c| c.name == name) {
            Some(c) => (c.run)(rest).map_err(|e| format!("{}: {e}", c.name)),
            None => Err(format!("unknown command {name:?}")),
        },
    }
}

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))
        })
        .collect();
    match args.and_then(|args| run(&args)) {
        Ok(out) => {
            // A closed pipe (e.g. `| head -c0`) is not worth a panic.
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("easy-rpc: {e}\n\n{}", usage());
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dispatches_and_refuses_what_it_does_not_know() {
        assert!(run(&args(&["help"])).unwrap().contains("keygen [--hex]"));
        assert!(run(&args(&["--version"])).unwrap().starts_with("easy-rpc "));
        assert!(run(&args(&[])).unwrap_err().contains("no command"));
        assert!(
            run(&args(&["frobnicate"]))
                .unwrap_err()
                .contains("unknown command")
        );
        let e = run(&args(&["keygen", "--base32"])).unwrap_err();
        assert!(e.starts_with("keygen: ") && e.contains("--base32"), "{e}");
    }
}
