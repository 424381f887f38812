//! `easy-rpc health`: the node's `/livez` and `/readyz`; exits 0 only when it is ready.

use std::io::Write;

use serde_json::json;

use crate::Failure;
use crate::options::{Extra, parse};

pub(crate) fn run(args: &[String], out: &mut dyn Write) -> Result<u8, Failure> {
    let o = parse(args, Extra::None, crate::http_env())?;
    let live = o.endpoint.get("/livez");
    let ready = o.endpoint.get("/readyz");
    let is = |r: &Result<(u16, String), String>| matches!(r, Ok((200, _)));
    let say = |r: &Result<(u16, String), String>| match r {
        Ok((code, body)) => format!("{} (HTTP {code})", body.trim()),
        Err(e) => e.clone(),
    };
    let healthy = is(&live) && is(&ready);
    if o.json {
        let detail = |r: &Result<(u16, String), String>| match r {
            Ok((code, body)) => json!({ "status": code, "body": body.trim() }),
            Err(e) => json!({ "error": e }),
        };
        crate::write_json(
            out,
            &json!({
                "endpoint": o.endpoint.host,
                "live": is(&live),
                "ready": is(&ready),
                "livez": detail(&live),
                "readyz": detail(&ready),
            }),
        )?;
    } else {
        let text = format!(
            "endpoint  {}\nlive      {}: {}\nready     {}: {}\n",
            o.endpoint.host,
            if is(&live) { "yes" } else { "no" },
            say(&live),
            if is(&ready) { "yes" } else { "no" },
            say(&ready),
        );
        crate::write_out(out, &text)?;
    }
    Ok(if healthy { 0 } else { 1 })
}
