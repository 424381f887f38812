//! `/cluster` as the commands read it: fetched from the endpoint, members as rows.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::Endpoint;

/// One member, as `/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) incarnation: String,
    pub(crate) status: String,
    pub(crate) roles: Vec<String>,
    pub(crate) services: Vec<String>,
    pub(crate) gossip: String,
    pub(crate) rpc: String,
    /// How long ago the node last heard the member's heartbeat (`-` for the node itself).
    pub(crate) heard: String,
    /// The member as JSON, unchanged.
    pub(crate) raw: Value,
}

/// The document, with its members by id.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) doc: Value,
    pub(crate) members: BTreeMap<String, Member>,
}

/// Fetches and reads `/cluster`.
pub(crate) fn fetch(endpoint: &Endpoint) -> Result<Cluster, String> {
    let (status, body) = endpoint.get("/cluster")?;
    if status != 200 {
        return Err(format!(
            "GET http://{}/cluster: HTTP {status}: {}",
            endpoint.host,
            body.trim()
        ));
    }
    let doc: Value = serde_json::from_str(&body)
        .map_err(|e| format!("GET http://{}/cluster: not JSON: {e}", endpoint.host))?;
    let members = doc["members"]
        .as_array()
        .ok_or_else(|| format!("GET http://{}/cluster: no members list", endpoint.host))?
        .iter()
        .map(|m| {
            let member = Member::from_json(m);
            (member.id.clone(), member)
        })
        .collect();
    Ok(Cluster { doc, members })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

impl Member {
    fn from_json(m: &Value) -> Member {
        Member {
            id: text(&m["id"]),
            name: text(&m["name"]),
            incarnation: text(&m["incarnation"]),
            status: text(&m["status"]),
            roles: list(&m["roles"]),
            services: list(&m["services"]),
            gossip: text(&m["gossip_addr"]),
            rpc: text(&m["rpc_addr"]),
            heard: m["last_heard_ms"]
                .as_u64()
                .map_or_else(|| "-".into(), |ms| format!("{ms} ms ago")),
            raw: m.clone(),
        }
    }
}

/// A list for a table cell: comma-separated, `-` if empty.
pub(crate) fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}
