//! OIDC/JWT bearer tokens beside the API keys: ES256 tokens signed in the test with keys made
//! by ring, checked against a JWKS; scopes with a prefix, per-cluster access from a claim,
//! every way a token can be wrong (401), key rotation, and the audit log naming the subject.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kb_api::{AuthConfig, Jwks, JwtAuth, JwtConfig, Limits};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::*;

const ISS: &str = "https://idp.test/realms/platform";
const AUD: &str = "kubecost-bridge";

/// An EC P-256 signing key with its public JWK.
struct SigningKey {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65);
    SigningKey {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
        }),
    }
}

fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }))
        .unwrap()
}

fn now() -> i64 {
    kb_api::unix_now()
}

fn claims(sub: &str, scope: &str, clusters: Option<&[&str]>) -> Value {
    let mut c = json!({
        "iss": ISS, "aud": [AUD, "other"], "sub": sub, "scope": scope,
        "iat": now(), "exp": now() + 300,
    });
    if let Some(cl) = clusters {
        c["clusters"] = json!(cl);
    }
    c
}

fn sign(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn server(keys: Arc<Jwks>) -> Server {
    let mut cfg = JwtConfig::new(ISS, AUD);
    cfg.scope_prefix = "kubecost-bridge:".to_string();
    cfg.clusters_claim = Some("clusters".to_string());
    Server::start_with(
        AuthConfig {
            jwt: Some(JwtAuth {
                config: cfg,
                jwks: keys,
            }),
            ..auth()
        },
        Limits::default(),
    )
}

const NS: &str = "/api/v1/costs/kubernetes/cluster-1/namespaces";
const NS2: &str = "/api/v1/costs/kubernetes/cluster-2/namespaces";

#[test]
fn a_valid_token_reads_its_clusters_only_with_its_scopes() {
    let k = signing_key("k1");
    let s = server(Arc::new(Jwks::from_json(&jwks(&[&k])).unwrap()));
    let t = sign(
        &k,
        Some("k1"),
        &claims("alice", "openid kubecost-bridge:read", Some(&["cluster-1"])),
    );
    assert_eq!(s.get(Some(&t), NS).0, 200);
    // Another tenant's cluster is a 404, as with keys.
    assert_eq!(s.get(Some(&t), NS2).0, 404);
    // read does not reach the admin endpoints.
    assert_eq!(s.get(Some(&t), "/api/v1/admin/keys").0, 403);
    // Without the prefix a scope is not one of ours.
    let plain = sign(&k, Some("k1"), &claims("bob", "read", Some(&["cluster-1"])));
    assert_eq!(s.get(Some(&plain), NS).0, 403);
    // Scopes as an array; admin sees the admin endpoints; no clusters claim sees nothing.
    let mut c = claims("carol", "", None);
    c["scope"] = json!(["kubecost-bridge:admin"]);
    let admin = sign(&k, Some("k1"), &c);
    assert_eq!(s.get(Some(&admin), "/api/v1/admin/keys").0, 200);
    assert_eq!(s.get(Some(&admin), NS).0, 404);
    // API keys still work beside JWTs.
    assert_eq!(s.get(Some(ADMIN), NS2).0, 200);
    // The audit log names the subject, never the token.
    let lines = s.audit.lines(7);
    assert!(
        lines.iter().any(|l| l["key_id"] == "jwt:alice"),
        "{lines:?}"
    );
    assert!(!s.audit.text().contains(&t));
}

#[test]
fn every_kind_of_bad_token_is_a_401() {
    let k = signing_key("k1");
    let other = signing_key("k1");
    let s = server(Arc::new(Jwks::from_json(&jwks(&[&k])).unwrap()));
    let good = claims("alice", "kubecost-bridge:read", Some(&["cluster-1"]));
    assert_eq!(s.get(Some(&sign(&k, Some("k1"), &good)), NS).0, 200);
    // No kid: every key of the set is tried.
    assert_eq!(s.get(Some(&sign(&k, None, &good)), NS).0, 200);

    let mut bad: Vec<(&str, String)> = Vec::new();
    bad.push(("signed by another key", sign(&other, Some("k1"), &good)));
    bad.push(("unknown kid", sign(&k, Some("k9"), &good)));
    for (what, field, value) in [
        ("expired", "exp", json!(now() - 3600)),
        ("not yet valid", "nbf", json!(now() + 3600)),
        ("wrong issuer", "iss", json!("https://evil.test")),
        ("wrong audience", "aud", json!("someone-else")),
        ("no subject", "sub", json!("")),
    ] {
        let mut c = good.clone();
        c[field] = value;
        bad.push((what, sign(&k, Some("k1"), &c)));
    }
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    bad.push(("no exp", sign(&k, Some("k1"), &no_exp)));
    // alg none, and HS256 keyed with the public key's JWK text: both refused.
    let payload = B64.encode(serde_json::to_vec(&good).unwrap());
    bad.push((
        "alg none",
        format!(
            "{}.{payload}.",
            B64.encode(br#"{"alg":"none","typ":"JWT"}"#)
        ),
    ));
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(k.jwk.to_string().as_bytes()),
    )
    .unwrap();
    bad.push(("hs256", hs));
    // A tampered payload.
    let t = sign(&k, Some("k1"), &good);
    let parts: Vec<&str> = t.split('.').collect();
    let mut evil = good.clone();
    evil["clusters"] = json!(["cluster-1", "cluster-2"]);
    bad.push((
        "tampered",
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&evil).unwrap()),
            parts[2]
        ),
    ));
    for (what, token) in &bad {
        let (st, _, body) = s.get(Some(token), NS);
        assert_eq!(st, 401, "{what}: {body}");
        assert!(!body.contains(token.as_str()));
    }
}

#[test]
fn rotating_the_key_set_takes_effect_at_once() {
    let old = signing_key("2025");
    let new = signing_key("2026");
    let set = Arc::new(Jwks::from_json(&jwks(&[&old])).unwrap());
    let s = server(set.clone());
    let c = claims("alice", "kubecost-bridge:read", Some(&["cluster-1"]));
    let t_old = sign(&old, Some("2025"), &c);
    let t_new = sign(&new, Some("2026"), &c);
    assert_eq!(s.get(Some(&t_old), NS).0, 200);
    assert_eq!(s.get(Some(&t_new), NS).0, 401);
    assert_eq!(set.replace(&jwks(&[&new])).unwrap(), 1);
    assert_eq!(s.get(Some(&t_old), NS).0, 401);
    assert_eq!(s.get(Some(&t_new), NS).0, 200);
    // A bad document keeps the current keys.
    assert!(set.replace(b"{\"keys\": []}").is_err());
    assert_eq!(s.get(Some(&t_new), NS).0, 200);
    // An empty set (a URL not fetched yet) refuses every token.
    let s = server(Arc::new(Jwks::empty()));
    assert_eq!(s.get(Some(&t_new), NS).0, 401);
}
