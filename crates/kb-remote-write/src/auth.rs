//! Data sources and HTTP Basic auth, checked in constant time.
//!
//! A data source is named by the `Cloud-Account-Id` header and maps to one cluster. Its
//! credentials are compared as the whole `base64(username:password)` token (what CloudTuner's
//! proxy compares, and what Prometheus's `basic_auth` sends) with a compare whose time does not
//! depend on where the bytes differ. An unknown `Cloud-Account-Id` is checked against a dummy
//! token so that it takes the same time and gets the same 401 as a wrong password: the answer
//! never tells which data sources exist.

use std::collections::HashMap;
use std::sync::Arc;

pub use kb_pipeline::secret::Secret;

/// One data source allowed to remote_write (config `remote_write.sources[]`, with the password
/// already read from its file or environment variable by the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Value of the `Cloud-Account-Id` header.
    pub cloud_account_id: String,
    /// Cluster every series of this source is stored under.
    pub cluster: String,
    /// Basic auth user name.
    pub username: String,
    /// Basic auth password.
    pub password: Secret,
}

/// Why a data source configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("remote_write source {index}: cloud_account_id is empty")]
    EmptyId { index: usize },
    #[error("remote_write source {index}: cluster is empty")]
    EmptyCluster { index: usize },
    #[error("remote_write source {index}: username is empty or contains ':'")]
    BadUsername { index: usize },
    #[error("remote_write source {index}: password is empty")]
    EmptyPassword { index: usize },
    #[error("remote_write source {index}: cloud_account_id {id:?} is configured twice")]
    Duplicate { index: usize, id: String },
}

/// Why a request was not authenticated (all of them answer 401, except `MissingAccountId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Cloud-Account-Id header")]
    MissingAccountId,
    #[error("invalid credentials")]
    Invalid,
}

#[derive(Debug)]
struct Entry {
    cluster: Arc<str>,
    token: Secret,
}

/// The configured data sources, indexed by `Cloud-Account-Id`.
#[derive(Debug)]
pub struct Sources {
    by_id: HashMap<String, Entry>,
    dummy: Secret,
}

impl Sources {
    /// Validates and indexes the sources.
    pub fn new(sources: &[Source]) -> Result<Sources, SourceError> {
        let mut by_id = HashMap::new();
        for (index, s) in sources.iter().enumerate() {
            if s.cloud_account_id.trim().is_empty() {
                return Err(SourceError::EmptyId { index });
            }
            if s.cluster.trim().is_empty() {
                return Err(SourceError::EmptyCluster { index });
            }
            if s.username.is_empty() || s.username.contains(':') {
                return Err(SourceError::BadUsername { index });
            }
            if s.password.expose().is_empty() {
                return Err(SourceError::EmptyPassword { index });
            }
            let token = Secret::new(base64(
                format!("{}:{}", s.username, s.password.expose()).as_bytes(),
            ));
            let e = Entry {
                cluster: Arc::from(s.cluster.as_str()),
                token,
            };
            if by_id.insert(s.cloud_account_id.clone(), e).is_some() {
                return Err(SourceError::Duplicate {
                    index,
                    id: s.cloud_account_id.clone(),
                });
            }
        }
        Ok(Sources {
            by_id,
            dummy: Secret::new(base64(b"no-such-user:no-such-password-0123456789")),
        })
    }

    /// Checks a request's `Cloud-Account-Id` and `Authorization` header values; returns the
    /// source's cluster.
    pub fn authenticate(
        &self,
        account_id: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<str>, AuthError> {
        let id = account_id
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty())
            .ok_or(AuthError::MissingAccountId)?;
        let entry = std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.by_id.get(id));
        let token = authorization.and_then(basic_token).unwrap_or(&[]);
        let expected = entry.map_or(&self.dummy, |e| &e.token);
        let ok = ct_eq(token, expected.expose().as_bytes());
        match entry {
            Some(e) if ok => Ok(e.cluster.clone()),
            _ => Err(AuthError::Invalid),
        }
    }
}

/// The token of `Basic <token>` (scheme case-insensitive).
fn basic_token(h: &[u8]) -> Option<&[u8]> {
    let h = h.trim_ascii();
    let (scheme, rest) = h.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

/// The `Authorization` header value for Basic auth (for clients and tests).
pub fn basic_auth_header(username: &str, password: &Secret) -> String {
    format!(
        "Basic {}",
        base64(format!("{username}:{}", password.expose()).as_bytes())
    )
}

/// Standard base64 with padding.
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let idx = |shift: u32| char::from(T[((n >> shift) & 63) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        Sources::new(&[Source {
            cloud_account_id: "ds-1".into(),
            cluster: "cluster-1".into(),
            username: "user".into(),
            password: Secret::new("pa:ss"),
        }])
        .unwrap()
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn authenticates() {
        let s = sources();
        let good = format!("Basic {}", base64(b"user:pa:ss"));
        assert_eq!(
            &*s.authenticate(Some(b"ds-1"), Some(good.as_bytes()))
                .unwrap(),
            "cluster-1"
        );
        let lower = format!("basic {}", base64(b"user:pa:ss"));
        assert!(
            s.authenticate(Some(b" ds-1 "), Some(lower.as_bytes()))
                .is_ok()
        );
        assert_eq!(
            s.authenticate(None, Some(good.as_bytes())),
            Err(AuthError::MissingAccountId)
        );
        assert_eq!(
            s.authenticate(Some(b"ds-2"), Some(good.as_bytes())),
            Err(AuthError::Invalid)
        );
        let bad = format!("Basic {}", base64(b"user:pa:sS"));
        assert_eq!(
            s.authenticate(Some(b"ds-1"), Some(bad.as_bytes())),
            Err(AuthError::Invalid)
        );
        assert_eq!(s.authenticate(Some(b"ds-1"), None), Err(AuthError::Invalid));
        assert_eq!(format!("{:?}", Secret::new("x")), "***");
        assert!(!format!("{s:?}").contains("pa:ss"));
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
