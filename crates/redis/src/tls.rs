//! TLS to Redis ([`tls_config`]): the roots a connection trusts — the system's, plus the
//! CA certificates of `--redis-ca-file` for a Redis whose certificate a private CA signed —
//! the same for every connection of a topology (Sentinels, data nodes, cluster nodes);
//! the check of that file at start-up ([`check_ca_pem`]); and [`is_certificate_error`],
//! which tells a certificate the roots do not trust from other handshake failures, so
//! that the start-up probe can name the right setting.
//!
//! `fred`'s own `TlsConnector::default_rustls()` (used by `rediss://` URLs in
//! `Config::from_url`) trusts the system's roots only and fails as a whole when a single
//! system certificate cannot be read; this module builds the `rustls` configuration
//! itself so that neither holds. Client certificates (`tls-auth-clients yes`) are not
//! supported.

use std::sync::Arc;

use fred::rustls::{ClientConfig, RootCertStore};
use fred::types::config::{TlsConfig, TlsConnector};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::settings::ClusterError;

/// The certificates of a PEM text, each checked to be usable as a trust anchor; an error
/// says what is wrong (not PEM, no certificate, a certificate that does not parse).
pub fn ca_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file ({e})"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let mut store = RootCertStore::empty();
    for (i, certificate) in certificates.iter().enumerate() {
        store
            .add(certificate.clone())
            .map_err(|e| format!("certificate {} is not a usable CA certificate ({e})", i + 1))?;
    }
    Ok(certificates)
}

/// How many certificates `pem` holds, when every one of them can be trusted as a CA;
/// what `--redis-ca-file` is checked with at start-up.
pub fn check_ca_pem(pem: &str) -> Result<usize, String> {
    ca_certificates(pem).map(|c| c.len())
}

/// The TLS configuration of every connection when TLS is on: the system's roots (those
/// that can be read) plus the certificates of `ca_pem`.
pub fn tls_config(ca_pem: Option<&str>) -> Result<TlsConfig, ClusterError> {
    let mut roots = RootCertStore::empty();
    // A system certificate that cannot be read is skipped, not fatal: the private CA may
    // be all that is needed.
    let system = fred::rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(pem) = ca_pem {
        for certificate in ca_certificates(pem)
            .map_err(|e| ClusterError::Config(format!("--redis-ca-file: {e}")))?
        {
            roots
                .add(certificate)
                .map_err(|e| ClusterError::Config(format!("--redis-ca-file: {e}")))?;
        }
    }
    let config = ClientConfig::builder()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    Ok(TlsConnector::from(config).into())
}

/// Whether a connection error is the server's certificate being refused (unknown issuer,
/// wrong name, expired...), as opposed to a TLS or network failure of another kind.
pub fn is_certificate_error(text: &str) -> bool {
    [
        "InvalidCertificate",
        "UnknownIssuer",
        "invalid peer certificate",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256), made once with `openssl req -x509`; the server's
    /// configuration tests use the same file.
    const TEST_CA: &str = include_str!("../testdata/unit-test-ca.pem");

    #[test]
    fn ca_files_must_hold_pem_certificates() {
        assert_eq!(check_ca_pem(TEST_CA), Ok(1));
        assert_eq!(check_ca_pem(&TEST_CA.repeat(2)), Ok(2));
        let e = check_ca_pem("just text\n").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = check_ca_pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.contains("not a PEM file"), "{e}");
        // Valid base64, but not a certificate.
        let e = check_ca_pem("-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(
            e.contains("certificate 1 is not a usable CA certificate"),
            "{e}"
        );
    }

    #[test]
    fn certificate_errors_are_told_apart() {
        assert!(is_certificate_error(
            "IO Error: Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }"
        ));
        assert!(!is_certificate_error(
            "IO Error: Os { code: 111, kind: ConnectionRefused }"
        ));
    }

    #[test]
    fn tls_is_configured_with_or_without_a_private_ca() {
        assert!(tls_config(None).is_ok());
        assert!(tls_config(Some(TEST_CA)).is_ok());
        let e = tls_config(Some("nothing")).unwrap_err().to_string();
        assert!(e.contains("--redis-ca-file"), "{e}");
    }
}
