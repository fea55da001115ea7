//! Tokens: required on writes when any are configured, on reads too with
//! `auth.require_on_reads`.
//!
//! A token comes in the `Authorization` header, as `Bearer TOKEN` or as
//! HTTP Basic credentials whose password (or, with no password, user name)
//! is the token. Basic is for rollout controllers that cannot set headers
//! but whose HTTP client turns credentials in the URL
//! (`http://vigil:TOKEN@host/`) into a Basic header, as Go's does: Argo
//! Rollouts' `kayenta` provider and Flagger's webhooks. The token never
//! travels in a path or query string, so it stays out of access logs.

use std::path::Path;

use base64::Engine as _;

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

/// The token an `Authorization` header value carries: `Bearer TOKEN`, or
/// `Basic base64(USER:TOKEN)` (`base64(TOKEN:)` when the token is the user
/// name, as in `http://TOKEN@host/`).
fn presented(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
    let token = if password.is_empty() { user } else { password };
    Some(token.to_owned())
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
    let Some(given) = authorization.and_then(presented) else {
        return false;
    };
    if given.is_empty() {
        return false;
    }
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
        assert!(allowed(&t, false, Access::Write, Some("bearer s3cret")));
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn basic_credentials_carry_the_token() {
        let t = vec!["s3cret".to_owned()];
        let ok = |h: &str| allowed(&t, true, Access::Write, Some(h));
        // http://vigil:s3cret@host/ and http://s3cret@host/
        assert!(ok(&basic("vigil:s3cret")));
        assert!(ok(&basic("s3cret:")));
        assert!(ok(&basic("s3cret")));
        assert!(!ok(&basic("s3cret:nope")), "the password is the token");
        assert!(!ok(&basic("vigil:nope")));
        assert!(!ok(&basic("vigil:")));
        assert!(!ok(&basic(":")));
        assert!(!ok("Basic not-base64!"));
        assert!(!ok("Basic"));
        assert!(!ok("Bearer "));
        assert!(!ok("Digest s3cret"));
    }
}
