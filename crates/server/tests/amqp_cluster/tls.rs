//! RabbitMQ over TLS (`amqps://`): a private node with a TLS listener whose certificate is
//! signed by a CA this test makes with `openssl`; hubbub trusts that CA only through
//! `--amqp-ca-file`. A message crosses replicas over amqps; a broker certificate that the
//! given CA (or the system's roots) did not sign stops start-up naming the setting.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::broker::RabbitNode;
use crate::failures::run_until_exit;
use crate::harness::{Driver, Hubbub};
use crate::replicas::{clients, converse, metric};
use crate::support::free_port;

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA, in a
/// temporary directory removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("hubbub-amqps-pki-{}", free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (name, cn) in [("ca", "hubbub test CA"), ("other-ca", "some other CA")] {
            openssl(
                &dir,
                &["req", "-x509", "-nodes", "-days", "2"],
                &ec,
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            );
        }
        openssl(
            &dir,
            &["req", "-nodes"],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &["x509", "-req", "-days", "2", "-in", "server.csr"],
            &[],
            &[
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `openssl` with the argument groups in `dir`; panics with its output on failure.
fn openssl(dir: &Path, a: &[&str], b: &[&str], c: &[&str]) {
    let out = Command::new("openssl")
        .args(a)
        .args(b)
        .args(c)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {a:?} {c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_a_private_ca() {
    let pki = Pki::make();
    let tls_port = free_port();
    let rabbit = RabbitNode::start_tls(
        tls_port,
        &pki.path("ca.pem"),
        &pki.path("server.pem"),
        &pki.path("server.key"),
    );
    let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();

    // Two replicas trusting the test's CA: a conversation crosses them over TLS.
    let replicas: Vec<Hubbub> = (0..2)
        .map(|_| Hubbub::start_with_redis(&[], &["--amqp-url", &url, "--amqp-ca-file", ca]))
        .collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    // Both connections the broker holds are TLS ones, on the TLS listener.
    let connections = rabbit.ctl(&["list_connections", "--no-table-headers", "ssl", "port"]);
    let rows: Vec<Vec<&str>> = connections
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| !r.is_empty())
        .collect();
    let expected = vec!["true".to_owned(), tls_port.to_string()];
    assert_eq!(rows.len(), 2, "{connections}");
    assert!(
        rows.iter()
            .all(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>() == expected),
        "{connections}"
    );
    let driver = Driver::start().await;
    let mut cs = clients(&driver, &replicas, 2, "tls").await;
    converse(&mut cs, "tls").await;
    let hello = cs[0].ask("messages", json!(["over amqps"])).await;
    assert_eq!(hello[0]["ok"], json!(true), "{hello}");
    cs[1]
        .wait_event("messages", |a| {
            a.first().is_some_and(|m| m["text"] == "over amqps")
        })
        .await;
    for r in &replicas {
        let m = r.metrics();
        assert_eq!(metric(&m, "hubbub_amqp_connected"), 1.0, "{m}");
        assert!(metric(&m, "hubbub_amqp_lag_seconds_count") > 0.0, "{m}");
    }

    // A CA that did not sign the broker's certificate, or none (the system's roots do not
    // know the test's CA): start-up stops, naming the setting to fix.
    let other = pki.path("other-ca.pem");
    for args in [
        vec![
            "--amqp-url",
            &url,
            "--amqp-ca-file",
            other.to_str().unwrap(),
        ],
        vec!["--amqp-url", &url],
    ] {
        let (status, out) = run_until_exit(&args);
        assert!(!status.success(), "{args:?}: {out}");
        for says in [
            "not trusted",
            "--amqp-ca-file",
            "HUBBUB_AMQP_CA_FILE",
            "invalid peer certificate",
        ] {
            assert!(out.contains(says), "{args:?} does not say {says:?}: {out}");
        }
        assert!(!out.contains("panicked"), "{out}");
    }
    // A file that holds no certificate is refused before any connection.
    let (status, out) = run_until_exit(&[
        "--amqp-url",
        &url,
        "--amqp-ca-file",
        pki.path("server.csr").to_str().unwrap(),
    ]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("invalid setting --amqp-ca-file (HUBBUB_AMQP_CA_FILE)"),
        "{out}"
    );
}
