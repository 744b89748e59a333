//! Certificates for TLS tests: a CA and node certificates made with rcgen,
//! written as PEM files into a directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pub pem: PathBuf,
    dir: PathBuf,
}

/// The PEM files of one certificate.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Ca {
            cert,
            key,
            pem,
            dir: dir.to_owned(),
        }
    }

    /// A certificate for 127.0.0.1 and localhost, naming `node` (SAN URI
    /// `concord:node:<id>`) when given.
    pub fn issue(&self, name: &str, node: Option<u64>) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        if let Some(id) = node {
            params.subject_alt_names.push(SanType::URI(
                format!("concord:node:{id}").try_into().expect("uri"),
            ));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let issued = Issued {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write cert");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}
