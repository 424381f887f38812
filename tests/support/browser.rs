//! A real browser in real time: headless `chromium` (Debian's package) driven over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`), so that a page runs on the wall
//! clock (its timers, its `fetch`es, its `Date.now()`) while a test or a benchmark reads its
//! DOM.
//!
//! The protocol on the pipe is JSON messages ending in a NUL byte: commands on the browser's
//! file descriptor 3, answers and events on its descriptor 4. The browser is started through
//! `sh`, which points those two descriptors at the pipes of the child's stdin and stdout (so
//! no descriptor juggling is needed here). Every exchange is bounded in time.
//!
//! ```no_run
//! use std::time::Duration;
//! use easy_rpc_tests::browser::Browser;
//!
//! let mut browser = Browser::launch(std::env::temp_dir().join("profile")).unwrap();
//! let page = browser.open("http://127.0.0.1:8080/").unwrap();
//! std::thread::sleep(Duration::from_secs(1));
//! let rows = browser.eval(&page, "document.querySelectorAll('tr').length").unwrap();
//! println!("{rows} rows");
//! browser.close();
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// When a registry dropped each node, by node id (wall clock, [`wall_ms`]), filled from
/// `events` as their `NodeDown`s arrive by the returned future (spawn it).
pub fn down_times(
    mut events: cluster_helper::Events,
) -> (
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    use cluster_helper::{ClusterEvent, EventsError};
    let dropped =
        std::sync::Arc::<std::sync::Mutex<std::collections::HashMap<String, u64>>>::default();
    let record = dropped.clone();
    let fill = async move {
        loop {
            match events.recv().await {
                Ok(ClusterEvent::NodeDown(m)) => {
                    record.lock().unwrap().insert(m.id.to_string(), wall_ms());
                }
                Ok(_) | Err(EventsError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    };
    (dropped, fill)
}

/// How long one protocol command may take (opening a page included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// `chromium` if it runs here (`chromium --version` succeeds), else `None`.
pub fn chromium() -> Option<&'static str> {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some("chromium")
}

/// The milliseconds since the Unix epoch now (the clock a page's `Date.now()` reads).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A headless `chromium` process under this program's control. Dropping it kills the process
/// (by its id) and removes its profile directory.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    profile: PathBuf,
}

/// A page (tab) of a [`Browser`].
#[derive(Debug, Clone)]
pub struct Page {
    session: String,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

impl Browser {
    /// Starts headless `chromium` with a fresh profile in `profile` (created; removed when the
    /// browser is dropped), a 1280x900 window and no sandbox (tests run as root in containers).
    pub fn launch(profile: PathBuf) -> io::Result<Browser> {
        let exe = chromium().ok_or_else(|| other("chromium is not installed"))?;
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new("sh")
            .arg("-c")
            // Descriptor 3 reads our commands (the child's stdin), 4 writes to our reader (its
            // stdout); the browser's own stdin and stdout are left out of it.
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--window-size=1280,900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let commands = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, answers) = mpsc::channel();
        // The reader keeps the answers to commands (messages with an id) and drops events; it
        // ends when the browser closes its end.
        std::thread::spawn(move || {
            let mut from = BufReader::new(stdout);
            let mut message = Vec::new();
            loop {
                message.clear();
                match from.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(v) = serde_json::from_slice::<Value>(&message) else {
                    continue;
                };
                if v.get("id").is_some() && tx.send(v).is_err() {
                    return;
                }
            }
        });
        Ok(Browser {
            child,
            commands,
            answers,
            next_id: 1,
            profile,
        })
    }

    /// Sends `method` with `params` (to a page's session, or to the browser) and returns the
    /// answer's `result`, or the protocol's error, within [`COMMAND_TIMEOUT`].
    pub fn call(&mut self, page: Option<&Page>, method: &str, params: Value) -> io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(page) = page {
            message["sessionId"] = json!(page.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.commands.write_all(&bytes)?;
        self.commands.flush()?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.answers.recv_timeout(left).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => other(format!(
                    "chromium: no answer to {method} within {COMMAND_TIMEOUT:?}"
                )),
                mpsc::RecvTimeoutError::Disconnected => {
                    other(format!("chromium exited before answering {method}"))
                }
            })?;
            if answer["id"] != id {
                // The late answer to an earlier command that timed out.
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(other(format!("chromium: {method}: {error}")));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Opens `url` in a new page and attaches to it. The page loads on its own; poll it with
    /// [`eval`](Browser::eval) for what it should show.
    pub fn open(&mut self, url: &str) -> io::Result<Page> {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| other(format!("Target.createTarget answered {target}")))?
            .to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| other(format!("Target.attachToTarget answered {attached}")))?
            .to_owned();
        Ok(Page { session })
    }

    /// The value of the JavaScript `expression` in `page` (JSON-serialisable values only); a
    /// thrown exception is an error.
    pub fn eval(&mut self, page: &Page, expression: &str) -> io::Result<Value> {
        let r = self.call(
            Some(page),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(other(format!("{expression}: {e}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expression` in `page` every 20 ms until it is neither `null`, `undefined` nor
    /// `false` (a thrown exception counts as not yet), for at most `within`. Returns its
    /// value, or `None` if time ran out.
    pub fn wait_for(&mut self, page: &Page, expression: &str, within: Duration) -> Option<Value> {
        let start = Instant::now();
        loop {
            match self.eval(page, expression) {
                Ok(Value::Null | Value::Bool(false)) | Err(_) => {}
                Ok(v) => return Some(v),
            }
            if start.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a PNG screenshot of what `page` shows to `path`.
    pub fn screenshot(&mut self, page: &Page, path: &Path) -> io::Result<()> {
        let r = self.call(
            Some(page),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        )?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| other("Page.captureScreenshot: no data"))?;
        std::fs::write(path, base64_decode(data)?)
    }

    /// Closes the browser and waits (at most 10 s) for it to exit; kills it if it does not.
    pub fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({}));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (with padding), as the protocol sends binary data.
fn base64_decode(text: &str) -> io::Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().take_while(|&c| c != b'=').collect();
        if data.len() < 2 {
            return Err(other("bad base64"));
        }
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c).ok_or_else(|| other("bad base64"))? << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..data.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(super::base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(super::base64_decode("YQ==").unwrap(), b"a");
        assert!(super::base64_decode("a").is_err());
    }
}
