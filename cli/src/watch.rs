//! `easy-rpc watch`: polls `/cluster` and prints what changed (members up and down, status,
//! roles, services, addresses, the endpoint unreachable and back), one line per change, until
//! interrupted or for `--for <duration>`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::Failure;
use crate::cluster::{Member, fetch, joined};
use crate::options::{Extra, parse};

pub(crate) fn run(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let o = parse(args, Extra::Watch, crate::http_env())?;
    let deadline = o.run_for.map(|d| Instant::now() + d);
    let mut seen: Option<BTreeMap<String, Member>> = None;
    let mut reachable: Option<bool> = None;
    let mut events = Vec::new();
    loop {
        match fetch(&o.endpoint) {
            Ok(cluster) => {
                if reachable == Some(false) {
                    events.push(Event::plain("reachable", &o.endpoint.host));
                }
                reachable = Some(true);
                match &seen {
                    None => {
                        let cluster_name = cluster.doc["cluster"].as_str().unwrap_or("?");
                        events.push(Event {
                            kind: "watching",
                            id: o.endpoint.host.clone(),
                            text: format!(
                                "cluster {cluster_name}, {} members (one line per change)",
                                cluster.members.len()
                            ),
                            json: json!({ "cluster": cluster_name, "members": cluster.members.len() }),
                        });
                        for m in cluster.members.values() {
                            events.push(Event::member("member", m));
                        }
                    }
                    Some(old) => diff(old, &cluster.members, &mut events),
                }
                seen = Some(cluster.members);
            }
            Err(e) => {
                if reachable != Some(false) {
                    events.push(Event {
                        kind: "unreachable",
                        id: o.endpoint.host.clone(),
                        text: e.clone(),
                        json: json!({ "error": e }),
                    });
                }
                reachable = Some(false);
            }
        }
        for event in events.drain(..) {
            event.write(out, o.json)?;
        }
        out.flush().map_err(crate::output_error)?;
        let now = Instant::now();
        let pause = match deadline {
            Some(d) if now >= d => return Ok(0),
            Some(d) => o.interval.min(d - now),
            None => o.interval,
        };
        std::thread::sleep(pause);
    }
}

/// One change.
struct Event {
    kind: &'static str,
    id: String,
    text: String,
    json: Value,
}

impl Event {
    fn plain(kind: &'static str, id: &str) -> Event {
        Event {
            kind,
            id: id.to_owned(),
            text: String::new(),
            json: json!({}),
        }
    }

    fn member(kind: &'static str, m: &Member) -> Event {
        Event {
            kind,
            id: m.id.clone(),
            text: format!(
                "{} roles={} services={} gossip={} rpc={}",
                m.status,
                joined(&m.roles),
                joined(&m.services),
                m.gossip,
                m.rpc
            ),
            json: json!({ "member": m.raw }),
        }
    }

    fn write(self, out: &mut dyn Write, as_json: bool) -> Result<(), Failure> {
        let time = now_utc();
        let line = if as_json {
            let mut v = json!({ "time": time, "event": self.kind, "id": self.id });
            if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), self.json) {
                obj.extend(extra);
            }
            format!("{v}\n")
        } else {
            format!("{time}  {:<11} {}  {}", self.kind, self.id, self.text)
                .trim_end()
                .to_owned()
                + "\n"
        };
        crate::write_out(out, &line)
    }
}

/// The changes from `old` to `new`: members gone (`down`), new (`up`), and per member still
/// there, its status, roles, services and addresses.
fn diff(old: &BTreeMap<String, Member>, new: &BTreeMap<String, Member>, events: &mut Vec<Event>) {
    for (id, m) in old {
        if !new.contains_key(id) {
            events.push(Event {
                kind: "down",
                id: id.clone(),
                text: format!("(was {}) gone from the registry", m.status),
                json: json!({ "was": m.raw }),
            });
        }
    }
    for (id, m) in new {
        let Some(before) = old.get(id) else {
            events.push(Event::member("up", m));
            continue;
        };
        if before.status != m.status {
            events.push(Event {
                kind: "status",
                id: id.clone(),
                text: format!("{} -> {}", before.status, m.status),
                json: json!({ "from": before.status, "to": m.status }),
            });
        }
        for (kind, a, b) in [
            ("roles", &before.roles, &m.roles),
            ("services", &before.services, &m.services),
        ] {
            let added: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
            let removed: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            let text = added
                .iter()
                .map(|x| format!("+{x}"))
                .chain(removed.iter().map(|x| format!("-{x}")))
                .collect::<Vec<_>>()
                .join(" ");
            events.push(Event {
                kind,
                id: id.clone(),
                text,
                json: json!({ "added": added, "removed": removed }),
            });
        }
        if (&before.gossip, &before.rpc) != (&m.gossip, &m.rpc) {
            events.push(Event {
                kind: "addresses",
                id: id.clone(),
                text: format!("gossip={} rpc={}", m.gossip, m.rpc),
                json: json!({ "gossip_addr": m.raw["gossip_addr"], "rpc_addr": m.raw["rpc_addr"] }),
            });
        }
    }
}

/// The time of day in UTC, `HH:MM:SS.mmm`.
fn now_utc() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let s = t.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, status: &str, roles: &[&str]) -> (String, Member) {
        let name = id.split('#').next().unwrap().to_owned();
        (
            id.to_owned(),
            Member {
                id: id.into(),
                name,
                incarnation: "1".into(),
                status: status.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                services: vec![],
                gossip: "127.0.0.1:1".into(),
                rpc: "-".into(),
                heard: "-".into(),
                raw: json!({ "id": id }),
            },
        )
    }

    #[test]
    fn changes() {
        let old: BTreeMap<_, _> = [
            member("a#1", "serving", &["billing"]),
            member("b#1", "serving", &[]),
            member("c#1", "joining", &[]),
        ]
        .into();
        let new: BTreeMap<_, _> = [
            member("a#1", "serving", &["audit"]),
            member("c#1", "serving", &[]),
            member("b#2", "joining", &[]),
        ]
        .into();
        let mut events = Vec::new();
        diff(&old, &new, &mut events);
        let got: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|e| (e.kind, e.id.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("down", "b#1", "(was serving) gone from the registry"),
                ("roles", "a#1", "+audit -billing"),
                (
                    "up",
                    "b#2",
                    "joining roles=- services=- gossip=127.0.0.1:1 rpc=-"
                ),
                ("status", "c#1", "joining -> serving"),
            ]
        );
        let mut none = Vec::new();
        diff(&new, &new, &mut none);
        assert!(none.is_empty());
    }
}
