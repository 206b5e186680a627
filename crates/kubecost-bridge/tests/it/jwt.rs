//! `api.auth.jwt` with `jwks_url`: `run` fetches the key set from the IdP's URL (here a server
//! on loopback), accepts tokens it signs, and picks up a rotated key set on its next refresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use crate::{Sim, bin, sim_config, write_config};

/// An ES256 key: its PKCS#8 document and its public JWK.
fn key(kid: &str) -> (Vec<u8>, serde_json::Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])});
    (pkcs8.as_ref().to_vec(), jwk)
}

fn token(pkcs8: &[u8], kid: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_string());
    let claims = json!({"iss": "https://idp.test", "aud": "kubecost-bridge", "sub": "alice",
        "scope": "read", "exp": now + 600});
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
}

/// Serves whatever `doc` holds at `/certs`.
fn idp(doc: Arc<Mutex<String>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/certs",
                axum::routing::get(move || {
                    let doc = doc.clone();
                    async move { doc.lock().unwrap().clone() }
                }),
            );
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}/certs", rx.recv().unwrap())
}

fn status(url: &str, bearer: &str) -> Option<u16> {
    crate::http_get(url, Some(bearer)).map(|(code, _)| code)
}

fn wait_for(url: &str, bearer: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = status(url, bearer);
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: {got:?}, expected {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_fetches_the_jwks_from_its_url_and_follows_rotation() {
    let (old_key, old_jwk) = key("old");
    let (new_key, new_jwk) = key("new");
    let doc = Arc::new(Mutex::new(json!({"keys": [old_jwk]}).to_string()));
    let certs = idp(doc.clone());
    let sim = Sim::start(sim_config(1, 5));
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "extract:\n  lookback: 1h\n  settle: 0s\napi:\n  listen: \"127.0.0.1:{port}\"\n  audit_log: \"off\"\n  auth:\n    jwt:\n      issuer: https://idp.test\n      audience: kubecost-bridge\n      jwks_url: \"{certs}\"\n      jwks_refresh: 1s\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let mut child = bin().args(["run", "--config"]).arg(&cfg).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/costs/kubernetes");
    let (old, new) = (token(&old_key, "old"), token(&new_key, "new"));

    wait_for(&url, &old, 200);
    assert_eq!(status(&url, &new), Some(401));
    assert_eq!(status(&url, "not-a-token"), Some(401));
    // The IdP rotates its keys; the next refresh (1 s) follows.
    *doc.lock().unwrap() = json!({"keys": [new_jwk]}).to_string();
    wait_for(&url, &new, 200);
    assert_eq!(status(&url, &old), Some(401));
    // A broken document keeps the keys in use.
    *doc.lock().unwrap() = "{\"keys\": [".to_string();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&url, &new), Some(200));

    let _ = child.kill();
    let _ = child.wait();
}
