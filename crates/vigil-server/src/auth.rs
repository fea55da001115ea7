//! Bearer tokens: required on writes when any are configured, on reads too
//! with `auth.require_on_reads`.

use std::path::Path;

use crate::config::AuthConfig;

/// Whether a call changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Creates, cancels or ingests.
    Write,
}

/// The tokens of `config` and its `tokens_file`.
pub fn load_tokens(config: &AuthConfig) -> Result<Vec<String>, std::io::Error> {
    let mut tokens: Vec<String> = config
        .tokens
        .iter()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect();
    if let Some(path) = &config.tokens_file {
        tokens.extend(read_tokens_file(path)?);
    }
    Ok(tokens)
}

fn read_tokens_file(path: &Path) -> Result<Vec<String>, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Equality whose time does not depend on where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request with `authorization` header value may do `access`.
pub fn allowed(
    tokens: &[String],
    require_on_reads: bool,
    access: Access,
    authorization: Option<&str>,
) -> bool {
    if tokens.is_empty() || (access == Access::Read && !require_on_reads) {
        return true;
    }
    let Some(given) = authorization.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
    }) else {
        return false;
    };
    tokens
        .iter()
        .fold(false, |ok, t| ok | same(t.as_bytes(), given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_guard_writes_and_optionally_reads() {
        let t = vec!["s3cret".to_owned()];
        assert!(allowed(&[], true, Access::Write, None));
        assert!(allowed(&t, false, Access::Read, None));
        assert!(!allowed(&t, true, Access::Read, None));
        assert!(!allowed(&t, false, Access::Write, None));
        assert!(!allowed(&t, false, Access::Write, Some("Bearer nope")));
        assert!(!allowed(&t, false, Access::Write, Some("s3cret")));
        assert!(allowed(&t, false, Access::Write, Some("Bearer s3cret")));
    }
}
