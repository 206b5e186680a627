//! [`ClientTls`]: the TLS settings of an HTTPS client to a store (ClickHouse, InfluxDB): extra
//! trusted CA certificates and an optional client certificate with its key, as PEM.
//!
//! Only data lives here (the adapters hand it to their HTTP client); the key is a [`Secret`],
//! so it never shows in debug output.

use crate::secret::Secret;

/// TLS settings for an `https://` store URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    /// PEM certificates to trust besides the built-in roots (a private CA).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate (chain) and its PEM private key, for mutual TLS.
    pub client: Option<(Vec<u8>, Secret)>,
}

impl ClientTls {
    /// Returns the client certificate and key as one PEM bundle (the form HTTP clients take).
    pub fn identity_pem(&self) -> Option<Vec<u8>> {
        self.client.as_ref().map(|(cert, key)| {
            let mut pem = cert.clone();
            if !pem.ends_with(b"\n") {
                pem.push(b'\n');
            }
            pem.extend_from_slice(key.expose().as_bytes());
            pem
        })
    }

    /// Checks that the PEM texts hold what they should: certificates in `ca_pem` and the
    /// client certificate, a private key in the key. Errors name the part.
    pub fn check(&self) -> Result<(), String> {
        if let Some(ca) = &self.ca_pem
            && !contains_block(ca, "CERTIFICATE")
        {
            return Err("the CA file holds no PEM certificate".into());
        }
        if let Some((cert, key)) = &self.client {
            if !contains_block(cert, "CERTIFICATE") {
                return Err("the client certificate file holds no PEM certificate".into());
            }
            if !contains_block(key.expose().as_bytes(), "PRIVATE KEY") {
                return Err("the client key file holds no PEM private key".into());
            }
        }
        Ok(())
    }
}

/// Adds the CA certificates and the client identity to a `reqwest` client builder.
#[cfg(feature = "http-client")]
pub fn apply(
    builder: reqwest::ClientBuilder,
    tls: &ClientTls,
) -> Result<reqwest::ClientBuilder, String> {
    tls.check()?;
    let mut b = builder;
    if let Some(ca) = &tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|_| "the CA file holds an unreadable PEM certificate".to_string())?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(pem) = tls.identity_pem() {
        // The error is not shown: it could quote the key.
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|_| "the client certificate and key are not a usable PEM pair".to_string())?;
        b = b.identity(id);
    }
    Ok(b)
}

/// Describes a failed request with the causes reqwest keeps in its source chain (a refused
/// connection, a TLS alert, an unknown certificate issuer), adding what to check when the
/// failure is a TLS certificate (`what` names the config section, e.g. `clickhouse`).
#[cfg(feature = "http-client")]
pub fn describe(e: &reqwest::Error, what: &str) -> String {
    let mut out = e.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    let lower = out.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        out.push_str(&format!(
            " (tls: the server's certificate is not trusted; check {what}.ca_file)"
        ));
    } else if lower.contains("handshake") || lower.contains("alert") {
        out.push_str(&format!(
            " (tls handshake failed; check {what}.client_cert_file and {what}.client_key_file)"
        ));
    }
    out
}

/// True when `pem` has a `-----BEGIN ...<kind>-----` line (`PRIVATE KEY` also matches
/// `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
fn contains_block(pem: &[u8], kind: &str) -> bool {
    String::from_utf8_lossy(pem)
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_parts_are_checked_and_the_key_stays_hidden() {
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec();
        let key =
            Secret::new("-----BEGIN PRIVATE KEY-----\nsecretkey\n-----END PRIVATE KEY-----\n");
        let t = ClientTls {
            ca_pem: Some(cert.clone()),
            client: Some((cert.clone(), key.clone())),
        };
        assert!(t.check().is_ok());
        assert!(!format!("{t:?}").contains("secretkey"));
        let id = String::from_utf8(t.identity_pem().unwrap()).unwrap();
        assert!(id.contains("BEGIN CERTIFICATE") && id.contains("secretkey"));
        let bad = ClientTls {
            ca_pem: Some(b"hello".to_vec()),
            client: None,
        };
        assert_eq!(
            bad.check().unwrap_err(),
            "the CA file holds no PEM certificate"
        );
        let bad = ClientTls {
            ca_pem: None,
            client: Some((cert, Secret::new("nope"))),
        };
        assert!(bad.check().unwrap_err().contains("no PEM private key"));
        assert_eq!(ClientTls::default().identity_pem(), None);
    }
}
