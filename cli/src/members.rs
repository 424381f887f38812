//! `easy-rpc members`: every member the node sees, with status, roles, services, addresses
//! and when the node last heard it.

use std::io::Write;

use crate::Failure;
use crate::cluster::{fetch, joined};
use crate::options::{Extra, parse};
use crate::table::table;

pub(crate) fn run(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let o = parse(args, Extra::None, crate::http_env())?;
    let cluster = fetch(&o.endpoint).map_err(Failure::Failed)?;
    if o.json {
        crate::write_json(out, &cluster.doc["members"])?;
        return Ok(0);
    }
    let me = cluster.doc["node"]["id"].as_str().unwrap_or_default();
    let rows: Vec<Vec<String>> = cluster
        .members
        .values()
        .map(|m| {
            let name = if m.id == me {
                format!("{}*", m.name)
            } else {
                m.name.clone()
            };
            vec![
                name,
                m.incarnation.clone(),
                m.status.clone(),
                joined(&m.roles),
                joined(&m.services),
                m.gossip.clone(),
                m.rpc.clone(),
                m.heard.clone(),
            ]
        })
        .collect();
    let text = table(
        &[
            "NAME",
            "INCARNATION",
            "STATUS",
            "ROLES",
            "SERVICES",
            "GOSSIP",
            "RPC",
            "LAST HEARD",
        ],
        &rows,
    );
    crate::write_out(out, &text)?;
    Ok(0)
}
