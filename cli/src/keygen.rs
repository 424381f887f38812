//! `easy-rpc keygen [--hex]`: prints a new cluster secret.

use cluster_helper::Secret;

/// Makes a secret from the operating system's randomness and returns it as one line: base64
/// (44 characters), or hex (64 digits) with `--hex`. Both parse as a [`Secret`].
pub(crate) fn run(args: &[String]) -> Result<String, String> {
    let mut hex = false;
    for arg in args {
        match arg.as_str() {
            "--hex" => hex = true,
            other => return Err(format!("unexpected argument {other:?} (only --hex)")),
        }
    }
    let secret = Secret::generate();
    let text = if hex {
        secret.to_hex()
    } else {
        secret.to_base64()
    };
    Ok(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_secret_that_parses_back() {
        let line = run(&[]).unwrap();
        assert_eq!(line.len(), 45);
        Secret::parse(&line).unwrap();
        let line = run(&["--hex".into()]).unwrap();
        assert_eq!(line.trim().len(), 64);
        Secret::parse(&line).unwrap();
    }
}
