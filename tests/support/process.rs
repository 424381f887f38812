//! Nodes as real OS processes (the `cluster_node` binary of this package), with their stdout
//! lines collected so tests can wait for what a node printed.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// A running `cluster_node` process. Dropping it kills the process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// The process id.
    pub pid: u32,
    /// The node name it was started with.
    pub name: String,
}

impl NodeProcess {
    /// Starts the binary at `exe` with `env` (plus fast test gossip defaults that `env` may
    /// override).
    pub fn spawn(exe: &str, name: &str, env: &[(&str, String)]) -> NodeProcess {
        Self::spawn_with(&[], exe, name, env)
    }

    /// Like [`spawn`](NodeProcess::spawn), through a command prefix (e.g. `ip netns exec ns`).
    pub fn spawn_with(
        prefix: &[String],
        exe: &str,
        name: &str,
        env: &[(&str, String)],
    ) -> NodeProcess {
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("CLUSTER_NODE_NAME", name.to_owned()),
            ("CLUSTER_LISTEN", "127.0.0.1:0".to_owned()),
            ("CLUSTER_SECRET", crate::cluster::TEST_SECRET.to_owned()),
            ("CLUSTER_GOSSIP_INTERVAL", "100ms".to_owned()),
            ("CLUSTER_LEAVE_GRACE", "300ms".to_owned()),
            ("CLUSTER_JOIN_TIMEOUT", "3s".to_owned()),
        ]);
        for (k, v) in env {
            vars.insert(k, v.clone());
        }
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.envs(vars)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn node process");
        let pid = child.id().expect("pid");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut readers = Vec::new();
        for (stream, prefix) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                "",
            ),
            (Box::new(stderr), "stderr: "),
        ] {
            let lines = lines.clone();
            readers.push(tokio::spawn(async move {
                let mut r = BufReader::new(stream).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    lines.lock().unwrap().push(format!("{prefix}{l}"));
                }
            }));
        }
        NodeProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            readers,
            pid,
            name: name.to_owned(),
        }
    }

    /// Everything printed so far (stderr lines prefixed with `stderr: `).
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The last line starting with `prefix`.
    pub fn last(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    /// Waits until the last line starting with `prefix` satisfies `pred`; panics after
    /// `within`, showing the output. Returns the time waited.
    pub async fn wait_for(
        &self,
        within: Duration,
        prefix: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if self.last(prefix).is_some_and(|l| pred(&l)) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                panic!(
                    "{}: timed out after {within:?} waiting for a {prefix:?} line; output:\n{}",
                    self.name,
                    self.output().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The gossip address from the `STARTED` line (waits for it).
    pub async fn gossip_addr(&self) -> String {
        self.wait_for(Duration::from_secs(10), "STARTED ", |_| true)
            .await;
        let line = self.last("STARTED ").unwrap();
        line.split_whitespace().nth(2).unwrap().to_owned()
    }

    /// The node id from the `STARTED` line (waits for it).
    pub async fn node_id(&self) -> String {
        self.wait_for(Duration::from_secs(10), "STARTED ", |_| true)
            .await;
        let line = self.last("STARTED ").unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Sends a command line to the process's stdin.
    pub async fn command(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends `signal` (e.g. `"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
    }

    /// Waits for the process to exit and returns its exit code (None if killed by a signal).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {within:?}", self.name))
            .expect("wait");
        // Collect what it printed up to the end.
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        status.code()
    }
}

/// Whether a `TABLE` line lists exactly `names` (comma separated, sorted) for `role`.
pub fn table_has(line: &str, role: &str, names: &str) -> bool {
    let want = format!("{role}={names}");
    if names.is_empty() {
        return !line
            .split_whitespace()
            .any(|t| t.starts_with(&format!("{role}=")));
    }
    line.split_whitespace().any(|t| t == want)
}
