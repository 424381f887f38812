//! `easy-rpc roles`: each role with the serving nodes that have it (what role lookups return).

use std::io::Write;

use crate::Failure;
use crate::cluster::fetch;
use crate::options::{Extra, parse};
use crate::table::table;

pub(crate) fn run(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let o = parse(args, Extra::None, crate::http_env())?;
    let cluster = fetch(&o.endpoint).map_err(Failure::Failed)?;
    let roles = &cluster.doc["roles"];
    if o.json {
        crate::write_json(out, roles)?;
        return Ok(0);
    }
    let mut rows = Vec::new();
    if let Some(roles) = roles.as_object() {
        for (role, ids) in roles {
            let names: Vec<String> = ids
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|id| id.as_str())
                        .map(|id| cluster.members.get(id).map_or(id, |m| &m.name).to_owned())
                        .collect()
                })
                .unwrap_or_default();
            rows.push(vec![role.clone(), names.len().to_string(), names.join(",")]);
        }
    }
    rows.sort();
    crate::write_out(out, &table(&["ROLE", "COUNT", "NODES"], &rows))?;
    Ok(0)
}
