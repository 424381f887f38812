//! The management endpoint's routes: one request in, one response out, without reading a body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use cluster_helper::NodeStatus;

use crate::node::{Node, WeakNode};

use super::LONG_POLL;

/// The page at `/`: self-contained (inline style and script, no build step, nothing fetched
/// but `/cluster`).
const PAGE: &str = include_str!("page.html");

/// Whether `/readyz` says ready, and the word it answers with.
pub(crate) fn readiness(node: &Node) -> (bool, &'static str) {
    if node.is_leaving() {
        return (false, "leaving");
    }
    match node.status() {
        NodeStatus::Serving if node.is_ready() => (true, "ready"),
        NodeStatus::Leaving => (false, "leaving"),
        _ => (false, "joining"),
    }
}

/// The response to `req`.
pub(crate) async fn respond<B: Body>(node: &WeakNode, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // No route takes a body: refuse one rather than read it, and close the connection so
    // that hyper does not have to skip over it.
    let hint = req.body().size_hint();
    if hint.lower() > 0 || hint.upper() != Some(0) {
        let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "no request body expected\n");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let path = req.uri().path();
    let wait = match path {
        "/cluster" => match wait_param(req.uri().query()) {
            Ok(wait) => wait,
            Err(()) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "bad wait: expected /cluster?wait=<version>, the version of a /cluster answer\n",
                );
            }
        },
        _ => None,
    };
    if !matches!(path, "/" | "/livez" | "/readyz" | "/cluster" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /livez, /readyz, /cluster, /metrics or /\n",
        );
    }
    if let Some(version) = wait {
        wait_for_change(node, version).await;
    }
    let Some(node) = node.upgrade() else {
        // The node is gone; the endpoint is about to stop.
        return text(StatusCode::SERVICE_UNAVAILABLE, "stopped\n");
    };
    match path {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let (ready, word) = readiness(&node);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(
                status,
                match word {
                    "ready" => "ready\n",
                    "leaving" => "leaving\n",
                    _ => "joining\n",
                },
            )
        }
        "/metrics" => response(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Bytes::from(node.metrics_text()),
        ),
        "/cluster" => {
            let body = super::cluster::json(&node).await;
            response(StatusCode::OK, "application/json", Bytes::from(body))
        }
        _ => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        ),
    }
}

/// The `wait` parameter of a query string: `None` if absent, an error if not a number.
fn wait_param(query: Option<&str>) -> Result<Option<u64>, ()> {
    let Some(query) = query else {
        return Ok(None);
    };
    match query.split('&').find_map(|kv| kv.strip_prefix("wait=")) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ()),
    }
}

/// Returns once the registry's version is no longer `version`, after [`LONG_POLL`] at most,
/// or at once if the node is gone. Holds no strong reference to the node while it waits.
async fn wait_for_change(node: &WeakNode, version: u64) {
    let Some(mut snapshots) = node.upgrade().map(|n| n.registry().watch()) else {
        return;
    };
    // The receiver is marked as seen at subscription: `wait_for` checks the current snapshot
    // first, so a change between the caller's answer and this request returns at once.
    let _ = tokio::time::timeout(LONG_POLL, snapshots.wait_for(|s| s.version() != version)).await;
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::wait_param;

    #[test]
    fn the_wait_parameter() {
        assert_eq!(wait_param(None), Ok(None));
        assert_eq!(wait_param(Some("")), Ok(None));
        assert_eq!(wait_param(Some("x=1")), Ok(None));
        assert_eq!(wait_param(Some("wait=12")), Ok(Some(12)));
        assert_eq!(wait_param(Some("x=1&wait=0")), Ok(Some(0)));
        assert_eq!(wait_param(Some("wait=")), Err(()));
        assert_eq!(wait_param(Some("wait=-1")), Err(()));
        assert_eq!(wait_param(Some("wait=abc")), Err(()));
    }
}
