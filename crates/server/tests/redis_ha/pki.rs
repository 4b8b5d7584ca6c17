//! A throwaway public key infrastructure for the TLS tests, made at test time with the
//! `openssl` command line: a private CA, a certificate for 127.0.0.1 signed by it (what
//! every `redis-server` of a test presents, as a server and, on the cluster bus, as a
//! client), and a second, unrelated CA (what a
//! hubbub given the wrong `--redis-ca-file` trusts). Keys are P-256; certificates last two
//! days; everything lives in a temporary directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TlsFiles;

/// The files, in a private temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes the two CAs and the server certificate.
    pub fn make() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hubbub-redis-pki")
            .tempdir()
            .unwrap();
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [("ca", "hubbub redis test CA"), ("other-ca", "unrelated CA")] {
            run_openssl(
                dir.path(),
                &[&["req", "-x509", "-days", "2"], &key[..]].concat(),
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-subj",
                    &format!("/CN={subject}"),
                ],
            );
        }
        // The server certificate, issued by the CA in one step (`req -x509 -CA`, OpenSSL 3):
        // an end-entity certificate for the IP address the tests connect to.
        run_openssl(
            dir.path(),
            &[&["req", "-x509", "-days", "2"], &key[..]].concat(),
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.pem",
                "-subj",
                "/CN=127.0.0.1",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                // clientAuth too: cluster nodes present it to each other on the bus,
                // where Redis always checks the peer's certificate.
                "-addext",
                "extendedKeyUsage=serverAuth,clientAuth",
            ],
        );
        Self { dir }
    }

    /// A file of the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What a `redis-server` needs to listen for TLS with the server certificate.
    pub fn server_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.path("ca.pem"),
            cert: self.path("server.pem"),
            key: self.path("server.key"),
        }
    }

    /// The CA that signed the servers' certificate (`--redis-ca-file`).
    pub fn ca(&self) -> String {
        self.path("ca.pem").to_str().unwrap().to_owned()
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> String {
        self.path("other-ca.pem").to_str().unwrap().to_owned()
    }
}

/// Runs `openssl` with `args` then `more` in `dir`; panics with its stderr when it fails.
fn run_openssl(dir: &Path, args: &[&str], more: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .args(more)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it: apt-get install openssl")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} {more:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
