//! Names as newtypes: a service is not a version is not a metric.
//!
//! Each is an `Arc<str>` so the store's keys clone cheaply, validated on
//! construction (non-empty, at most 256 bytes, no control characters) so a
//! malformed message cannot create an unprintable or unbounded series.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Longest accepted name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

fn check(what: &'static str, s: &str) -> Result<(), CoreError> {
    if s.is_empty() {
        return Err(CoreError::InvalidName {
            what,
            reason: "is empty".into(),
        });
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(CoreError::InvalidName {
            what,
            reason: format!("is longer than {MAX_NAME_BYTES} bytes"),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(CoreError::InvalidName {
            what,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps a name.
            pub fn new(s: impl AsRef<str>) -> Result<Self, CoreError> {
                let s = s.as_ref();
                check($what, s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = CoreError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A service, as `service.name` or the `service` field of an event.
    ServiceName,
    "service"
);
name_type!(
    /// A version of a service (`v8`, a git sha, an image tag).
    Version,
    "version"
);
name_type!(
    /// A metric in the stream (`latency`, `error_rate`, `cpu_seconds`).
    MetricName,
    "metric"
);

/// Label pairs kept on a series, sorted by key. Only labels on the store's
/// allow-list survive ingestion, so the set is small and bounded. Shared
/// (`Arc`), so the keys the store builds for every sample clone for free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels(Arc<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// No labels: the aggregate series.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a label set, sorted by key; later duplicates of a key win.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut v: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .map(|(k, v)| (Arc::from(k.as_ref()), Arc::from(v.as_ref())))
            .collect();
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Self(v.into())
    }

    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// What identifies a series: one metric of one version of one service,
/// with its kept labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The service.
    pub service: ServiceName,
    /// Its version.
    pub version: Version,
    /// The metric.
    pub metric: MetricName,
    /// Kept labels (empty for the aggregate).
    pub labels: Labels,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(ServiceName::new("payment").is_ok());
        assert!(ServiceName::new("").is_err());
        assert!(Version::new("v1\n").is_err());
        assert!(MetricName::new("x".repeat(300)).is_err());
        let v: Result<Version, _> = serde_json::from_str("\"\"");
        assert!(v.is_err());
    }

    #[test]
    fn labels_are_sorted_and_deduplicated() {
        let l = Labels::from_pairs([("region", "eu"), ("endpoint", "/a"), ("endpoint", "/b")]);
        assert_eq!(l.to_string(), "endpoint=/b,region=eu");
        assert_eq!(l.get("endpoint"), Some("/b"));
    }
}
