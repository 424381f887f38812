//! Child processes of a benchmark run: this program re-executed with a subcommand, optionally
//! behind `taskset` or `valgrind`, spoken to one line at a time over stdin and stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// One child process. Dropping it kills it.
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

/// `prefix... <this program>` with the cluster secret in its environment, stdin and stdout
/// piped, stderr inherited under `BENCH_VERBOSE` (else discarded): how every benchmark process
/// is started.
pub(crate) fn command(prefix: &[String]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.env(crate::secret::VAR, crate::secret::secret())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("BENCH_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    cmd
}

impl Proc {
    /// Starts `prefix... <this program> args...` (the prefix is e.g. `taskset -c 0`) and waits
    /// for its first line, which it returns with the process.
    pub(crate) fn spawn(name: &str, prefix: &[String], args: &[&str]) -> (Proc, String) {
        let mut child = command(prefix)
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({prefix:?}): {e}"));
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut p = Proc {
            name: name.to_owned(),
            child,
            stdin,
            out,
        };
        let first = p.line();
        (p, first)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints; panics if it exited.
    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.out.read_line(&mut line).expect("read child");
        assert!(n > 0, "{} exited early", self.name);
        line.trim().to_owned()
    }

    /// Sends one command line and returns the answer line.
    pub(crate) fn ask(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        self.line()
    }

    /// Like [`Proc::ask`], the answer parsed as JSON.
    pub(crate) fn ask_json(&mut self, cmd: &str) -> serde_json::Value {
        let line = self.ask(cmd);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    /// Closes its stdin (the subcommands exit at end of input) and waits for it to exit.
    pub(crate) fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    /// SIGSTOP: the process takes no CPU until [`Proc::resume`].
    pub(crate) fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A thread that ends this process when its stdin closes or says `exit`: the parent's way
/// to stop a server cleanly (so that `valgrind` writes its counts).
pub(crate) fn exit_on_stdin_close() {
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "exit" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
}

/// CPU time, in nanoseconds, this process's threads have run so far (the kernel's
/// per-thread `schedstat`, summed).
pub(crate) fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// What a report says about the machine it ran on.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} cores ({cpu}), Linux {}, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
