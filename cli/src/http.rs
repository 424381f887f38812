//! A plain HTTP/1.1 `GET` over a `TcpStream`, enough for a node's management endpoint (ours,
//! simple: `Content-Length` bodies, `Connection: close`), with bounded time and size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, and each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response read.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// A management endpoint: where to connect, and the `Host` header to send.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// As given (without `http://` and a trailing `/`), for messages and `Host`.
    pub(crate) host: String,
}

impl Endpoint {
    /// Parses `host:port`, `ip:port`, `[v6]:port`, `http://host:port[/]`, or a bare port
    /// (meaning `127.0.0.1:port`).
    pub(crate) fn parse(text: &str) -> Result<Endpoint, String> {
        let t = text.trim();
        let t = t.strip_prefix("http://").unwrap_or(t);
        let t = t.strip_suffix('/').unwrap_or(t);
        if t.starts_with("https://") {
            return Err(format!(
                "{text:?}: the management endpoint speaks plain HTTP (http://host:port)"
            ));
        }
        let host = if t.parse::<u16>().is_ok() {
            format!("127.0.0.1:{t}")
        } else {
            t.to_owned()
        };
        match host.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() && !host.contains('/') => {
                Ok(Endpoint { host })
            }
            _ => Err(format!(
                "{text:?} is not a management address: expected host:port (e.g. 127.0.0.1:9090)"
            )),
        }
    }

    fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.host
            .to_socket_addrs()
            .map(|a| a.collect())
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))
    }

    /// `GET path`: the status code and the body.
    pub(crate) fn get(&self, path: &str) -> Result<(u16, String), String> {
        let what = format!("GET http://{}{path}", self.host);
        let mut last = format!("{what}: no address");
        for addr in self.addrs()? {
            match self.get_from(addr, path) {
                Ok(r) => return Ok(r),
                Err(e) => last = format!("{what}: {e}"),
            }
        }
        Err(last)
    }

    fn get_from(&self, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: easy-rpc-cli/{}\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            self.host,
            env!("CARGO_PKG_VERSION")
        );
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(|e| e.to_string())?;
        parse_response(&raw)
    }
}

/// The status code and body of a whole HTTP/1.1 response (`Content-Length` or read to the
/// end; chunked bodies are not something the endpoint sends).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("not an HTTP response (no end of head)")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response ({status_line:?})"))?;
    let mut body = &raw[end + 4..];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let len: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if body.len() < len {
                return Err(format!(
                    "the response ended early ({} of {len} bytes)",
                    body.len()
                ));
            }
            body = &body[..len];
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err("unexpected Transfer-Encoding: is this a management endpoint?".into());
        }
    }
    String::from_utf8(body.to_vec())
        .map(|b| (status, b))
        .map_err(|_| "the response body is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:9090").unwrap().host,
            "127.0.0.1:9090"
        );
        assert_eq!(
            Endpoint::parse("http://node-0:9090/").unwrap().host,
            "node-0:9090"
        );
        assert_eq!(Endpoint::parse("9090").unwrap().host, "127.0.0.1:9090");
        assert_eq!(Endpoint::parse("[::1]:9090").unwrap().host, "[::1]:9090");
        for bad in [
            "",
            "node-0",
            ":9090",
            "node:99999",
            "https://x:1",
            "http://x:1/cluster",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\n\r\nleaving\nextra",
        );
        assert_eq!(r.unwrap(), (503, "leaving\n".to_owned()));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nall").unwrap(),
            (200, "all".to_owned())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
