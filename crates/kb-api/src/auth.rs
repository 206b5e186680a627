//! API keys: bearer tokens kept as SHA-256 digests, compared in constant time, with scopes,
//! per-cluster access and per-key rate limits (token buckets).
//!
//! - A key that matches no configured digest, or no `Authorization: Bearer` header, is a 401.
//! - A key restricted to clusters gets 404 for every other cluster (the same answer as for a
//!   cluster that does not exist), so cluster names do not leak across tenants.
//! - A key without a scope an endpoint needs gets 403 (admin endpoints need `admin`; `admin`
//!   implies `read`).
//! - Rate limits are per key: a token bucket of `burst` requests refilled at `per_second`; an
//!   empty bucket answers 429 with `Retry-After`. The bootstrap admin token has none unless
//!   configured.
//!
//! - With `jwt` configured, bearer tokens shaped like a JWT are validated as OIDC tokens instead
//!   (see [`crate::jwt`]).
//!
//! The buckets are kept per key id (per subject for JWTs), at most [`MAX_BUCKETS`]; idle ones
//! are dropped first when that is reached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

pub use kb_pipeline::secret::Secret;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read cost data.
    Read,
    /// Everything `Read` may, plus the admin endpoints.
    Admin,
}

impl Scope {
    /// Parses `read` or `admin`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// How a key's secret is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySecret {
    /// The token itself (from config or a secret file); hashed at startup, then dropped.
    Plain(Secret),
    /// The hex SHA-256 digest of the token (64 hex digits), so config never holds the token.
    Sha256Hex(String),
}

/// One configured API key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyConfig {
    /// Stable id written to the audit log (never the secret).
    pub id: String,
    /// Human-readable name for the audit log.
    pub name: String,
    pub secret: KeySecret,
    pub scopes: Vec<Scope>,
    /// Clusters this key may see; `None` = every cluster.
    pub clusters: Option<Vec<String>>,
    /// This key's rate limit; `None` = `AuthConfig::default_rate_limit`.
    pub rate_limit: Option<RateLimit>,
}

/// Authentication settings of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// `false` serves everything without a key (as an anonymous admin): only for local demos.
    pub enabled: bool,
    pub keys: Vec<ApiKeyConfig>,
    /// The bootstrap admin token (`KUBECOST_BRIDGE_ADMIN_TOKEN`, read by the binary): scopes
    /// read and admin, every cluster, no rate limit unless `bootstrap_rate_limit`.
    pub bootstrap_admin: Option<Secret>,
    pub bootstrap_rate_limit: Option<RateLimit>,
    /// Rate limit of keys that set none; `None` = unlimited.
    pub default_rate_limit: Option<RateLimit>,
    /// OIDC/JWT bearer tokens beside the keys; `None`: keys only.
    pub jwt: Option<crate::jwt::JwtAuth>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            keys: Vec::new(),
            bootstrap_admin: None,
            bootstrap_rate_limit: None,
            default_rate_limit: None,
            jwt: None,
        }
    }
}

/// A configuration problem (a bad digest, a duplicate id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("api.auth: {0}")]
pub struct AuthConfigError(pub String);

/// The identity a request acts as.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: String,
    pub key_name: String,
    pub scopes: Vec<Scope>,
    pub clusters: Option<Vec<String>>,
    pub rate_limit: Option<RateLimit>,
}

/// The id written to the audit log for the bootstrap admin token.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap-admin";

impl Principal {
    /// Whether the key has `scope` (`admin` implies `read`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }

    /// Whether the key may see `cluster`.
    pub fn may_see(&self, cluster: &str) -> bool {
        self.clusters
            .as_ref()
            .is_none_or(|cs| cs.iter().any(|c| c == cluster))
    }

    /// Errors with 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope.as_str()))
        }
    }

    fn anonymous_admin() -> Principal {
        Principal {
            key_id: "anonymous".to_string(),
            key_name: "auth disabled".to_string(),
            scopes: vec![Scope::Read, Scope::Admin],
            clusters: None,
            rate_limit: None,
        }
    }
}

struct StoredKey {
    digest: [u8; 32],
    principal: Principal,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The keys in memory (digests only) and the rate-limit buckets.
pub struct KeyRing {
    enabled: bool,
    keys: Vec<StoredKey>,
    jwt: Option<crate::jwt::JwtAuth>,
    default_rate_limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Rate-limit buckets kept at most (JWT subjects are not known in advance).
pub const MAX_BUCKETS: usize = 65_536;

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("enabled", &self.enabled)
            .field("keys", &self.keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

fn sha256(s: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(s.as_bytes());
    h.finalize().into()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.trim().as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair.first()?.to_ascii_lowercase() as char).to_digit(16)?;
        let lo = (pair.get(1)?.to_ascii_lowercase() as char).to_digit(16)?;
        *out.get_mut(i)? = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 digest of a token, as [`KeySecret::Sha256Hex`] expects it.
pub fn token_digest_hex(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyRing {
    /// Hashes the configured keys. Errors on a malformed digest, an empty token, a duplicate
    /// id or a key without scopes.
    pub fn new(cfg: &AuthConfig) -> Result<KeyRing, AuthConfigError> {
        let mut keys = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            if k.id.is_empty() {
                return Err(AuthConfigError(format!("keys[{i}].id is empty")));
            }
            if k.id == BOOTSTRAP_KEY_ID || !ids.insert(k.id.clone()) {
                return Err(AuthConfigError(format!(
                    "keys[{i}].id {:?} is used twice or reserved",
                    k.id
                )));
            }
            if k.scopes.is_empty() {
                return Err(AuthConfigError(format!("keys[{i}].scopes is empty")));
            }
            let digest = match &k.secret {
                KeySecret::Plain(s) if s.expose().is_empty() => {
                    return Err(AuthConfigError(format!("keys[{i}]: the token is empty")));
                }
                KeySecret::Plain(s) => sha256(s.expose()),
                KeySecret::Sha256Hex(h) => parse_hex32(h).ok_or_else(|| {
                    AuthConfigError(format!("keys[{i}].token_sha256 is not 64 hex digits"))
                })?,
            };
            keys.push(StoredKey {
                digest,
                principal: Principal {
                    key_id: k.id.clone(),
                    key_name: k.name.clone(),
                    scopes: k.scopes.clone(),
                    clusters: k.clusters.clone(),
                    rate_limit: k.rate_limit.or(cfg.default_rate_limit),
                },
            });
        }
        if let Some(s) = cfg
            .bootstrap_admin
            .as_ref()
            .filter(|s| !s.expose().is_empty())
        {
            keys.push(StoredKey {
                digest: sha256(s.expose()),
                principal: Principal {
                    key_id: BOOTSTRAP_KEY_ID.to_string(),
                    key_name: "bootstrap admin token".to_string(),
                    scopes: vec![Scope::Read, Scope::Admin],
                    clusters: None,
                    rate_limit: cfg.bootstrap_rate_limit,
                },
            });
        }
        if let Some(j) = &cfg.jwt {
            if j.config.issuer.is_empty() || j.config.audience.is_empty() {
                return Err(AuthConfigError(
                    "jwt: issuer and audience are required".to_string(),
                ));
            }
        }
        Ok(KeyRing {
            enabled: cfg.enabled,
            keys,
            jwt: cfg.jwt.clone(),
            default_rate_limit: cfg.default_rate_limit,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The principals (for the admin key listing), without digests.
    pub fn principals(&self) -> Vec<Principal> {
        self.keys.iter().map(|k| k.principal.clone()).collect()
    }

    /// Finds the key of an `Authorization` header value. Every stored digest is compared (in
    /// constant time), so timing does not tell which key was close.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, ApiError> {
        if !self.enabled {
            return Ok(Principal::anonymous_admin());
        }
        let token = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(j) = &self.jwt {
            if crate::jwt::looks_like_jwt(token) {
                return j.verify(token, self.default_rate_limit);
            }
        }
        let digest = sha256(token);
        let mut found: Option<&StoredKey> = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(k);
            }
        }
        found
            .map(|k| k.principal.clone())
            .ok_or_else(ApiError::unauthorized)
    }

    /// Takes one token from the key's bucket, or returns 429 with the seconds until one is
    /// there.
    pub fn admit(&self, p: &Principal, now: Instant) -> Result<(), ApiError> {
        let Some(limit) = p.rate_limit else {
            return Ok(());
        };
        let rate = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            0.0
        };
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&p.key_id) {
            // A bucket idle for a minute is full again for any limit of at least one request
            // per minute, so dropping it changes nothing; past that, start over.
            buckets.retain(|_, b| now.saturating_duration_since(b.at).as_secs() < 60);
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        let b = buckets.entry(p.key_id.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if rate > 0.0 {
                ((1.0 - b.tokens) / rate).ceil().max(1.0)
            } else {
                3600.0
            };
            Err(ApiError::rate_limited(wait as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, token: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            id: id.to_string(),
            name: id.to_string(),
            secret: KeySecret::Plain(Secret::new(token)),
            scopes: vec![Scope::Read],
            clusters: Some(vec!["a".to_string()]),
            rate_limit: Some(RateLimit {
                per_second: 1.0,
                burst: 2,
            }),
        }
    }

    #[test]
    fn keys_authenticate_by_digest() {
        let mut k2 = key("two", "unused");
        k2.secret = KeySecret::Sha256Hex(token_digest_hex("tok-2").to_uppercase());
        let ring = KeyRing::new(&AuthConfig {
            keys: vec![key("one", "tok-1"), k2],
            bootstrap_admin: Some(Secret::new("boot")),
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(
            ring.authenticate(Some(b"Bearer tok-1")).unwrap().key_id,
            "one"
        );
        assert_eq!(
            ring.authenticate(Some(b"bearer  tok-2 ")).unwrap().key_id,
            "two"
        );
        let admin = ring.authenticate(Some(b"Bearer boot")).unwrap();
        assert!(admin.has(Scope::Admin) && admin.may_see("zzz"));
        assert!(ring.authenticate(Some(b"Bearer nope")).is_err());
        assert!(ring.authenticate(Some(b"Basic tok-1")).is_err());
        assert!(ring.authenticate(None).is_err());
        assert!(ring.authenticate(Some(&[0xff, 0xfe])).is_err());
        assert!(format!("{ring:?}").contains("keys: 3"));
        assert!(!format!("{:?}", Secret::new("boot")).contains("boot"));
    }

    #[test]
    fn bad_config_is_refused() {
        let mut k = key("one", "t");
        k.secret = KeySecret::Sha256Hex("abc".to_string());
        assert!(
            KeyRing::new(&AuthConfig {
                keys: vec![k],
                ..AuthConfig::default()
            })
            .is_err()
        );
        assert!(
            KeyRing::new(&AuthConfig {
                keys: vec![key("x", "a"), key("x", "b")],
                ..AuthConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn bucket_refills() {
        let ring = KeyRing::new(&AuthConfig {
            keys: vec![key("one", "tok-1")],
            ..AuthConfig::default()
        })
        .unwrap();
        let p = ring.authenticate(Some(b"Bearer tok-1")).unwrap();
        let t0 = Instant::now();
        assert!(ring.admit(&p, t0).is_ok());
        assert!(ring.admit(&p, t0).is_ok());
        let e = ring.admit(&p, t0).unwrap_err();
        assert_eq!(e.retry_after, Some(1));
        assert!(
            ring.admit(&p, t0 + std::time::Duration::from_millis(1100))
                .is_ok()
        );
    }
}
