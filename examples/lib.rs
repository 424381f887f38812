//! Small helpers shared by the examples: logging set-up and printing the role table.

use std::fmt::Write;

use cluster_helper::{NodeId, Snapshot};

/// Installs a log subscriber; `RUST_LOG` decides the level (default `warn`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Renders the registry as a table: one line per role with its serving nodes, then every
/// member with its status. `me` is marked with `*`.
pub fn render_role_table(snapshot: &Snapshot, me: &NodeId) -> String {
    let mut out = String::new();
    let mut roles: Vec<_> = snapshot.roles().collect();
    roles.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "--- role table (version {}) ---", snapshot.version());
    for (role, nodes) in roles {
        let names: Vec<String> = nodes.iter().map(|m| mark(&m.id, me)).collect();
        let _ = writeln!(out, "  {role:<12} {}", names.join(", "));
    }
    let _ = writeln!(out, "  members:");
    for m in snapshot.members() {
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "    {:<32} {:<8} [{}]",
            mark(&m.id, me),
            m.status.to_string(),
            roles.join(",")
        );
    }
    out
}

fn mark(id: &NodeId, me: &NodeId) -> String {
    if id == me {
        format!("{id}*")
    } else {
        id.to_string()
    }
}
