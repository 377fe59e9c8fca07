//! A test PKI made with rcgen: a CA, and certificates it signs, as PEM
//! files in a temporary folder, for the coordinator's TLS and the
//! workers' change service.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM files of a test PKI, in a folder removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA (`ca.pem`, `ca-key.pem`) and a certificate it signed for
    /// `names` (`server.pem`, `server-key.pem`).
    pub fn new(names: &[&str]) -> Self {
        let pki = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let ca_key = KeyPair::generate().expect("key");
        let ca = ca_params().self_signed(&ca_key).expect("CA certificate");
        pki.write("ca.pem", &ca.pem());
        pki.write("ca-key.pem", &ca_key.serialize_pem());
        pki.issue("server", names);
        pki
    }

    /// A certificate for `names` signed by this PKI's CA, as `NAME.pem`
    /// and `NAME-key.pem`.
    pub fn issue(&self, name: &str, names: &[&str]) {
        let ca_key = std::fs::read_to_string(self.path("ca-key.pem")).expect("the CA's key");
        let ca_key = KeyPair::from_pem(&ca_key).expect("a key");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("names")
            .signed_by(&key, &Issuer::new(ca_params(), &ca_key))
            .expect("certificate");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}-key.pem"), &key.serialize_pem());
    }

    /// The flags of a worker serving its changes over TLS with the
    /// certificate `name` issued by [`issue`](Self::issue).
    pub fn change_tls(&self, name: &str) -> [String; 4] {
        let path = |file: String| self.path(&file).display().to_string();
        [
            "--change-tls-cert".into(),
            path(format!("{name}.pem")),
            "--change-tls-key".into(),
            path(format!("{name}-key.pem")),
        ]
    }

    /// Writes `pem` to the file `name`.
    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.path(name), pem).expect("write PEM");
    }

    /// The file `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A CA's settings: CA:TRUE, allowed to sign certificates.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "dreamfarm test CA");
    params
}
