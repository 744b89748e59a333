//! TLS for client connections and peer links, on rustls (ring provider).
//!
//! Why rustls and not OpenSSL: no C library to keep patched beside the
//! binary, memory safety in the parser that faces the network, and TLS 1.2
//! and 1.3 only.
//!
//! Certificates are read from PEM files and can be read again while the
//! node runs (SIGHUP, `CONFIG SET tls-cert-file ...`): [`TlsFiles::reload`]
//! builds new configurations and swaps them in; connections already open
//! keep the session they negotiated, new ones get the new certificate. A
//! reload that fails (a half-written file) keeps the old configuration and
//! says why.
//!
//! Peers use mutual TLS with one CA: a node presents its certificate both
//! when it connects and when it accepts. The chain must lead to the CA; host
//! names are not checked (peers are often addressed by IP, and a small
//! cluster may share one certificate). Instead a certificate may name the
//! node it belongs to with a SAN URI `concord:node:<id>`; when it does, the
//! node id the peer claims in its hello must be that one (checked by the
//! transport with [`node_ids`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The SAN URI prefix that names the node a certificate belongs to.
pub const NODE_URI_PREFIX: &str = "concord:node:";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Whether clients must present a certificate (`tls-auth-clients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthClients {
    /// Every client presents a certificate signed by the CA.
    #[default]
    Yes,
    /// No client certificate is asked for.
    No,
    /// A certificate is checked when a client presents one.
    Optional,
}

impl fmt::Display for AuthClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthClients::Yes => "yes",
            AuthClients::No => "no",
            AuthClients::Optional => "optional",
        })
    }
}

impl std::str::FromStr for AuthClients {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Ok(AuthClients::Yes),
            "no" => Ok(AuthClients::No),
            "optional" => Ok(AuthClients::Optional),
            _ => Err(()),
        }
    }
}

/// Where the PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs client and peer certificates; None when clients
    /// are not asked for certificates and peers do not use TLS.
    pub ca: Option<PathBuf>,
    pub auth_clients: AuthClients,
}

/// The configurations built from one reading of the files.
struct Built {
    client_facing: Arc<ServerConfig>,
    /// The admin port: the node's certificate, no client certificate.
    admin: Arc<ServerConfig>,
    /// For peer links (mutual TLS), when a CA is given.
    peer_accept: Option<Arc<ServerConfig>>,
    peer_connect: Option<Arc<ClientConfig>>,
}

/// The node's TLS material, reloadable.
pub struct TlsFiles {
    paths: RwLock<TlsPaths>,
    built: RwLock<Arc<Built>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("paths", &*self.paths.read().expect("tls paths"))
            .finish()
    }
}

impl TlsFiles {
    /// Reads the files once; an error names the file.
    pub fn load(paths: TlsPaths) -> Result<TlsFiles, TlsError> {
        let built = build(&paths)?;
        Ok(TlsFiles {
            paths: RwLock::new(paths),
            built: RwLock::new(Arc::new(built)),
        })
    }

    /// Reads the files again (with `change` applied to their paths first);
    /// on error the old configuration and paths stay in force.
    pub fn reload(&self, change: impl FnOnce(&mut TlsPaths)) -> Result<(), TlsError> {
        let mut paths = self.paths.read().expect("tls paths").clone();
        change(&mut paths);
        let built = build(&paths)?;
        *self.built.write().expect("tls built") = Arc::new(built);
        *self.paths.write().expect("tls paths") = paths;
        Ok(())
    }

    pub fn paths(&self) -> TlsPaths {
        self.paths.read().expect("tls paths").clone()
    }

    fn current(&self) -> Arc<Built> {
        self.built.read().expect("tls built").clone()
    }

    /// The acceptor for a client connection, with the current certificate.
    pub fn client_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current().client_facing.clone())
    }

    /// The acceptor for the admin port (no client certificate asked).
    pub fn admin_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current().admin.clone())
    }

    /// The acceptor for an incoming peer link (client certificate required).
    pub fn peer_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.current()
            .peer_accept
            .clone()
            .map(tokio_rustls::TlsAcceptor::from)
    }

    /// The connector for an outgoing peer link (presents this node's
    /// certificate, checks the peer's chain against the CA).
    pub fn peer_connector(&self) -> Option<tokio_rustls::TlsConnector> {
        self.current()
            .peer_connect
            .clone()
            .map(tokio_rustls::TlsConnector::from)
    }
}

/// ring, not aws-lc-rs: aws-lc builds a large C library with cmake, which
/// a fresh build machine may lack. ring's provider offers no post-quantum
/// key exchange (hence rustls's deprecation note); X25519 and the NIST
/// curves are offered.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file, at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error("certificate file", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("certificate file", path, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "certificate file",
            path,
            "holds no PEM certificate",
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("key file", path, e))
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error("CA certificate file", path, e))?;
    }
    Ok(Arc::new(roots))
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn build(paths: &TlsPaths) -> Result<Built, TlsError> {
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let certs = read_certs(&paths.cert)?;
    let key = read_key(&paths.key)?;
    let roots = paths.ca.as_deref().map(read_roots).transpose()?;
    let server =
        || ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS);
    let verifier = |roots: &Arc<RootCertStore>, optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| TlsError::Config(e.to_string()))
    };
    let client_facing = match (paths.auth_clients, &roots) {
        (AuthClients::No, _) => server()
            .map_err(config)?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(config)?,
        (auth, Some(roots)) => server()
            .map_err(config)?
            .with_client_cert_verifier(verifier(roots, auth == AuthClients::Optional)?)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(config)?,
        (_, None) => {
            return Err(TlsError::Config(
                "tls-auth-clients yes or optional needs --tls-ca-cert-file".into(),
            ))
        }
    };
    let (peer_accept, peer_connect) = match &roots {
        Some(roots) => {
            let accept = server()
                .map_err(config)?
                .with_client_cert_verifier(verifier(roots, false)?)
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(config)?;
            let connect = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .map_err(config)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PeerVerifier {
                    roots: Some(roots.clone()),
                    provider: provider(),
                }))
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(config)?;
            (Some(Arc::new(accept)), Some(Arc::new(connect)))
        }
        None => (None, None),
    };
    let admin = server()
        .map_err(config)?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(config)?;
    Ok(Built {
        client_facing: Arc::new(client_facing),
        admin: Arc::new(admin),
        peer_accept,
        peer_connect,
    })
}

/// Checks a server's chain against `roots` without a host name check:
/// peers are identified by the node id in their certificate (or by holding
/// any certificate of the CA), not by the address they were reached at.
/// Without roots it accepts any certificate (`concord health` beside its
/// node, `concord ctl --insecure-skip-verify`); the handshake's signatures
/// are checked either way.
#[derive(Debug)]
struct PeerVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The node ids a certificate names (SAN URIs `concord:node:<id>`); empty
/// when it names none, and then it may serve any node of the cluster.
pub fn node_ids(cert: &CertificateDer<'_>) -> Vec<u64> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX)?.parse().ok(),
            _ => None,
        })
        .collect()
}

/// Whether a peer presenting `certs` may act as node `claimed`: its
/// certificate names that node, or names no node at all.
pub fn may_be_node(certs: Option<&[CertificateDer<'_>]>, claimed: u64) -> Result<(), String> {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Err("presented no certificate".into());
    };
    let named = node_ids(leaf);
    if named.is_empty() || named.contains(&claimed) {
        Ok(())
    } else {
        Err(format!(
            "claims to be node {claimed} but its certificate names node {}",
            named
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A client that accepts any certificate: for `concord health`, which asks
/// the admin port of the node beside it. Never used for client or peer
/// traffic.
pub fn insecure_connector() -> tokio_rustls::TlsConnector {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("TLS 1.2 and 1.3 are supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier {
            roots: None,
            provider: provider(),
        }))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A client of the Redis port (`concord ctl`): trusts the CA in `ca` (or
/// any certificate with `skip_verify`) and presents `identity` (certificate
/// and key files) when given, for `tls-auth-clients yes`.
pub fn client_connector(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    skip_verify: bool,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier {
                roots: None,
                provider: provider(),
            }))
    } else {
        let ca = ca.ok_or_else(|| {
            TlsError::Config(
                "give the CA that signed the server's certificate (--cacert), or --insecure-skip-verify".into(),
            )
        })?;
        builder.with_root_certificates(read_roots(ca)?)
    };
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
