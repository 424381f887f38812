//! The cluster secret every node of a benchmark run shares: 32 random bytes, base64, made
//! once by the process that starts the others and handed to them in `BENCH_SECRET`.

use std::sync::OnceLock;

/// The environment variable that carries the secret to child processes.
pub(crate) const VAR: &str = "BENCH_SECRET";

/// This run's secret: inherited from the parent, or made here.
pub(crate) fn secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| std::env::var(VAR).unwrap_or_else(|_| generate()))
}

fn generate() -> String {
    cluster_helper::Secret::generate().to_base64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_generated_secret_parses() {
        let s = super::generate();
        assert_eq!(s.len(), 44);
        assert!(s.parse::<cluster_helper::Secret>().is_ok());
    }
}
