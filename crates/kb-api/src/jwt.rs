//! OIDC/JWT bearer tokens, beside the API keys (`api.auth.jwt`).
//!
//! A bearer token with the JWS compact shape (`header.payload.signature`) is validated as a JWT
//! when JWT auth is configured; anything else is looked up as an API key. Validation:
//!
//! - the signature, with the key of the set whose `kid` the token's header names (or, for a
//!   token without `kid`, every key of the set in turn); asymmetric algorithms only (RS*, PS*,
//!   ES256/ES384, EdDSA): `none` and HMAC are refused, and JWKs of type `oct` are never loaded,
//!   so a public key can never be used as an HMAC secret;
//! - `iss` equal to the configured issuer, `aud` containing the configured audience, `exp`
//!   required and in the future, `nbf` (when present) in the past, with a leeway;
//! - scopes from a claim (default `scope`: a space-separated string as OAuth 2.0 gives it, or an
//!   array), each optionally prefixed (`scope_prefix: "kubecost-bridge:"` turns
//!   `kubecost-bridge:read` into `read`); a token without `read` or `admin` is a 403 on every
//!   endpoint;
//! - cluster access from a claim when `clusters_claim` is set (an array of names; a token
//!   without it sees nothing), else every cluster.
//!
//! The key set (JWKS) comes from a file or a URL; the binary loads it and refreshes it
//! ([`Jwks::replace`]). Principals are named `jwt:<sub>` in the audit log, and rate limits apply
//! per subject.

use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::auth::{AuthConfigError, Principal, RateLimit, Scope};
use crate::error::ApiError;

/// The algorithms a token may be signed with.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// JWT validation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// The `iss` every token must carry (the OIDC issuer URL).
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    /// The claim holding the scopes.
    pub scopes_claim: String,
    /// Stripped from each scope before it is read as `read` or `admin`.
    pub scope_prefix: String,
    /// The claim listing the clusters a token may see; `None`: every cluster.
    pub clusters_claim: Option<String>,
    /// Rate limit per subject; `None`: `AuthConfig::default_rate_limit`.
    pub rate_limit: Option<RateLimit>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl JwtConfig {
    /// Settings with the default claims (`scope`, no prefix, every cluster) and 60 s leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> JwtConfig {
        JwtConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            scopes_claim: "scope".to_string(),
            scope_prefix: String::new(),
            clusters_claim: None,
            rate_limit: None,
            leeway_secs: 60,
        }
    }
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// The signing keys tokens are checked against: a JWKS document, replaceable at runtime.
pub struct Jwks {
    keys: RwLock<Arc<Vec<Key>>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("keys", &self.len()).finish()
    }
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`); errors when it holds no usable key.
    pub fn from_json(json: &[u8]) -> Result<Jwks, AuthConfigError> {
        Ok(Jwks {
            keys: RwLock::new(Arc::new(parse(json)?)),
        })
    }

    /// A set with no keys yet (refuses every token until [`Jwks::replace`] loads some).
    pub fn empty() -> Jwks {
        Jwks {
            keys: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Replaces the keys with those of a new JWKS document, keeping the old ones when it is
    /// bad; returns how many keys are now loaded.
    pub fn replace(&self, json: &[u8]) -> Result<usize, AuthConfigError> {
        let keys = parse(json)?;
        let n = keys.len();
        let mut g = match self.keys.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(keys);
        Ok(n)
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether no key is loaded (never after a successful parse).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Vec<Key>> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn parse(json: &[u8]) -> Result<Vec<Key>, AuthConfigError> {
    let set: JwkSet = serde_json::from_slice(json)
        .map_err(|e| AuthConfigError(format!("jwt: the JWKS is not a JSON Web Key Set: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| AuthConfigError(format!("jwt: a JWKS key is malformed: {e}")))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(AuthConfigError(
            "jwt: the JWKS holds no RSA, EC or OKP public key".to_string(),
        ));
    }
    Ok(keys)
}

/// JWT auth: the settings and the key set.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub config: JwtConfig,
    pub jwks: Arc<Jwks>,
}

impl PartialEq for JwtAuth {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && Arc::ptr_eq(&self.jwks, &other.jwks)
    }
}

/// Whether a bearer token has the JWS compact shape: three non-empty base64url segments.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for p in token.split('.') {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
        parts += 1;
    }
    parts == 3
}

impl JwtAuth {
    /// Validates a token and returns whom it names; 401 for any invalid token (the reason is
    /// logged at debug level, never the token).
    pub(crate) fn verify(
        &self,
        token: &str,
        default_rate_limit: Option<RateLimit>,
    ) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| reject("header", &e))?;
        if !ASYMMETRIC.contains(&header.alg) {
            tracing::debug!(alg = ?header.alg, "jwt refused: not an asymmetric algorithm");
            return Err(ApiError::unauthorized());
        }
        let c = &self.config;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[c.issuer.as_str()]);
        v.set_audience(&[c.audience.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = c.leeway_secs;
        v.validate_nbf = true;
        let keys = self.jwks.snapshot();
        let mut last = None;
        let mut claims = None;
        for k in keys.iter().filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, _) => true,
        }) {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token, &k.key, &v,
            ) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(claims) = claims else {
            return Err(match last {
                Some(e) => reject("validation", &e),
                None => {
                    tracing::debug!(kid = ?header.kid, "jwt refused: no key with this kid");
                    ApiError::unauthorized()
                }
            });
        };
        let sub = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                tracing::debug!("jwt refused: no sub claim");
                ApiError::unauthorized()
            })?;
        let scopes = strings(claims.get(&c.scopes_claim))
            .into_iter()
            .filter_map(|s| Scope::parse(s.strip_prefix(c.scope_prefix.as_str())?))
            .collect();
        let clusters = c.clusters_claim.as_ref().map(|name| {
            strings(claims.get(name))
                .into_iter()
                .map(str::to_string)
                .collect()
        });
        let sub: String = sub.chars().take(256).collect();
        Ok(Principal {
            key_id: format!("jwt:{sub}"),
            key_name: "oidc".to_string(),
            scopes,
            clusters,
            rate_limit: c.rate_limit.or(default_rate_limit),
        })
    }
}

/// A claim as a list of strings: a space-separated string, or an array of strings.
fn strings(v: Option<&serde_json::Value>) -> Vec<&str> {
    match v {
        Some(serde_json::Value::String(s)) => s.split_ascii_whitespace().collect(),
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(serde_json::Value::as_str).collect()
        }
        _ => Vec::new(),
    }
}

fn reject(stage: &str, e: &jsonwebtoken::errors::Error) -> ApiError {
    tracing::debug!(stage, error = %e, "jwt refused");
    ApiError::unauthorized()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_segments_look_like_a_jwt() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("a-_b.c.d"));
        for t in [
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c=",
            "0123456789abcdef",
            "a.b c.d",
            "",
        ] {
            assert!(!looks_like_jwt(t), "{t}");
        }
    }

    #[test]
    fn scopes_come_from_a_string_or_an_array() {
        let s = serde_json::json!("read  admin");
        assert_eq!(strings(Some(&s)), ["read", "admin"]);
        let a = serde_json::json!(["read", 3, "x"]);
        assert_eq!(strings(Some(&a)), ["read", "x"]);
        assert!(strings(Some(&serde_json::json!(7))).is_empty());
        assert!(strings(None).is_empty());
    }

    #[test]
    fn a_jwks_without_public_keys_is_refused() {
        let hmac = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#;
        assert!(Jwks::from_json(hmac).is_err());
        assert!(Jwks::from_json(b"{}").is_err());
        assert!(Jwks::from_json(b"not json").is_err());
    }
}
