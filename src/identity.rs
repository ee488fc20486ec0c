//! Identities: the node's ed25519 signing key, its TLS certificate and key,
//! the federation CA, and the tools that create them (`vigil ca init`,
//! `vigil init`). No networking here.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::notice::seal::{key_file_text, parse_key_file, DecryptionKey};

/// A problem with an identity file, naming the file and the config field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct IdentityError {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

fn ierr(file: &Path, field: &str, message: impl Into<String>) -> IdentityError {
    IdentityError {
        file: file.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

pub use crate::keys::{format_public_key, parse_public_key};

/// Refuses a private file that group or others can read.
pub fn check_private(path: &Path, field: &str) -> Result<(), IdentityError> {
    let meta =
        std::fs::metadata(path).map_err(|e| ierr(path, field, format!("cannot read: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ierr(
                path,
                field,
                format!("is readable by group or others (mode {mode:o}); run chmod 600"),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

fn read_private(path: &Path, field: &str) -> Result<String, IdentityError> {
    check_private(path, field)?;
    std::fs::read_to_string(path).map_err(|e| ierr(path, field, format!("cannot read: {e}")))
}

/// Loads the node's ed25519 signing key (PKCS#8 PEM), refusing it if it is
/// readable by group or others.
pub fn load_signing_key(path: &Path, field: &str) -> Result<SigningKey, IdentityError> {
    let pem = read_private(path, field)?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| ierr(path, field, format!("not an ed25519 PKCS#8 PEM key: {e}")))
}

/// Where a rotation stages the new signing key until the rotation is
/// recorded: `F.next` beside the key file `F`.
pub fn staged_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".next");
    PathBuf::from(p)
}

/// Writes `key` as the staged next signing key (0600, synced), replacing
/// a stale one: the first step of a rotation, before it is recorded.
pub fn stage_signing_key(path: &Path, key: &SigningKey) -> Result<(), IdentityError> {
    let field = "identity.signing_key";
    let next = staged_key_path(path);
    let pem = signing_key_pem(key).map_err(|e| ierr(&next, field, e.to_string()))?;
    match std::fs::remove_file(&next) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ierr(&next, field, format!("cannot replace: {e}"))),
    }
    write_private(&next, pem).map_err(|e| ierr(&next, field, format!("cannot write: {e}")))?;
    // The rotation is recorded next: the staged file's name must be as
    // durable as its contents by then (the key file's folder is often on
    // another file system than the store, whose flush does not carry it).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ierr(dir, field, format!("cannot sync the folder: {e}")))?;
    }
    Ok(())
}

/// Puts the staged key in force as the key file once its rotation is
/// recorded: the old key is kept beside it as `F.retired-N` (N counting
/// up from 1), then `F.next` becomes `F`, and the folder is synced.
/// Returns where the old key went.
pub fn commit_signing_key(path: &Path) -> Result<PathBuf, IdentityError> {
    let field = "identity.signing_key";
    let next = staged_key_path(path);
    let retired = (1u32..)
        .map(|n| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".retired-{n}"));
            PathBuf::from(p)
        })
        .find(|p| !p.exists())
        .ok_or_else(|| ierr(path, field, "no free name for the retired key"))?;
    std::fs::hard_link(path, &retired)
        .map_err(|e| ierr(&retired, field, format!("cannot keep the old key: {e}")))?;
    std::fs::rename(&next, path)
        .map_err(|e| ierr(path, field, format!("cannot put the new key in place: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ierr(dir, field, format!("cannot sync the folder: {e}")))?;
    }
    Ok(retired)
}

/// At start, finishes or abandons a rotation cut short between its steps:
/// a staged key that `recorded` (the store's own latest rotated key) names
/// is put in place; any other staged key never took effect and is
/// removed. Returns the signing key to run with.
pub fn settle_signing_key(
    path: &Path,
    recorded: Option<VerifyingKey>,
    loaded: SigningKey,
) -> Result<SigningKey, IdentityError> {
    let next = staged_key_path(path);
    if !next.exists() {
        return Ok(loaded);
    }
    // A staged key no rotation can have recorded (none is, or the one
    // recorded is the key file's) never took effect: it goes whatever it
    // holds, even half a key from a crash while it was written.
    let never_recorded = recorded.is_none_or(|r| r == loaded.verifying_key());
    let staged = match load_signing_key(&next, "identity.signing_key") {
        Ok(k) => Some(k),
        Err(_) if never_recorded => None,
        Err(e) => return Err(e),
    };
    if let Some(staged) = staged.filter(|k| {
        recorded == Some(k.verifying_key()) && loaded.verifying_key() != k.verifying_key()
    }) {
        let retired = commit_signing_key(path)?;
        tracing::warn!(key_file = %path.display(), retired = %retired.display(), "a key rotation was cut short after it was recorded: the new key is now in place");
        return Ok(staged);
    }
    std::fs::remove_file(&next).map_err(|e| {
        ierr(
            &next,
            "identity.signing_key",
            format!("cannot remove a staged key that never took effect: {e}"),
        )
    })?;
    tracing::warn!(staged = %next.display(), "removed a staged signing key whose rotation was never recorded");
    Ok(loaded)
}

/// Loads the node's private encryption key (the X-Wing seed file written by
/// `vigil init`), refusing it if it is readable by group or others: it
/// opens every part members seal to this node.
pub fn load_decryption_key(path: &Path, field: &str) -> Result<DecryptionKey, IdentityError> {
    let text = read_private(path, field)?;
    parse_key_file(&text).map_err(|e| ierr(path, field, format!("not a vigil X-Wing key: {e}")))
}

/// Reads the admin bearer token.
pub fn load_token(path: &Path, field: &str) -> Result<String, IdentityError> {
    let t = read_private(path, field)?.trim().to_string();
    if t.len() < 16 {
        return Err(ierr(path, field, "token is shorter than 16 characters"));
    }
    Ok(t)
}

fn load_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = std::fs::read(path).map_err(|e| ierr(path, field, format!("cannot read: {e}")))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ierr(path, field, format!("bad PEM: {}", pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(ierr(path, field, "contains no certificate"));
    }
    Ok(certs)
}

/// What is wrong with PEM text, in words: `pem::Error`'s own `Display`
/// prints the section label and the offending line as byte arrays.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "section end \"-----END {}-----\" missing",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("illegal section start: {:?}", String::from_utf8_lossy(line))
        }
        other => other.to_string(),
    }
}

/// Why identity material held in memory (PEM text) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("bad PEM: {}", pem_problem(.0))]
    Pem(#[from] pem::Error),
    #[error("no private key in the PEM text")]
    NoKey,
}

/// Everything a node needs to prove who it is and whom it trusts.
pub struct Identity {
    pub node_id: String,
    pub signing: SigningKey,
    /// The TLS certificate and key it presents, and the CA it trusts.
    pub tls: TlsMaterial,
    /// Opens what members sealed to this node (`[identity]
    /// encryption_key`); `None` when the config names no key file.
    pub decryption: Option<DecryptionKey>,
}

impl Identity {
    /// An identity from PEM text in memory (benchmarks and tools that make
    /// throw-away identities without files).
    pub fn from_pems(
        node_id: &str,
        signing: SigningKey,
        tls: &NodeTls,
        ca_pem: &str,
    ) -> Result<Identity, PemError> {
        let certs = |pem: &str| -> Result<Vec<CertificateDer<'static>>, PemError> {
            Ok(CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>()?)
        };
        let tls_key =
            PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| match e {
                pem::Error::NoItemsFound => PemError::NoKey,
                e => PemError::Pem(e),
            })?;
        Ok(Identity {
            node_id: node_id.to_string(),
            signing,
            tls: TlsMaterial {
                chain: certs(&tls.cert_pem)?,
                key: tls_key,
                ca: certs(ca_pem)?,
            },
            decryption: None,
        })
    }

    /// Loads and checks every identity file named by the config; the first
    /// problem found, if any.
    pub fn load(cfg: &Config) -> Result<Identity, IdentityError> {
        Identity::load_all(cfg).map_err(|mut all| all.remove(0))
    }

    /// Like [`Identity::load`], but checks every file on its own and
    /// returns every problem found (`vigil check-config`), never an empty
    /// list.
    pub fn load_all(cfg: &Config) -> Result<Identity, Vec<IdentityError>> {
        let mut problems = Vec::new();
        let signing = keep(
            &mut problems,
            load_signing_key(&cfg.signing_key, "identity.signing_key"),
        );
        if let Some(i) = signing.as_ref().and_then(|k| {
            cfg.members
                .iter()
                .position(|m| m.signing_key == k.verifying_key())
        }) {
            problems.push(ierr(
                &cfg.path,
                &format!("members[{i}].signing_key"),
                "is this node's own signing key: a member must hold its own key",
            ));
        }
        let decryption = keep(
            &mut problems,
            cfg.encryption_key
                .as_deref()
                .map(|p| load_decryption_key(p, "identity.encryption_key"))
                .transpose(),
        );
        if let Some(i) = decryption
            .as_ref()
            .and_then(Option::as_ref)
            .and_then(|own| {
                cfg.members
                    .iter()
                    .position(|m| m.encryption_key.as_ref() == Some(own.public()))
            })
        {
            problems.push(ierr(
                &cfg.path,
                &format!("members[{i}].encryption_key"),
                "is this node's own encryption key: a member must hold its own key",
            ));
        }
        let tls = TlsMaterial::load_all(cfg).map_err(|all| problems.extend(all));
        match (signing, decryption, tls) {
            (Some(signing), Some(decryption), Ok(tls)) if problems.is_empty() => Ok(Identity {
                node_id: cfg.node_id.clone(),
                signing,
                tls,
                decryption,
            }),
            _ => Err(problems),
        }
    }
}

/// The TLS half of an identity: the certificate chain and private key the
/// node presents, and the federation CA certificates it checks members
/// against. Loaded at start and again on every reload (SIGHUP), so a
/// renewed certificate or a new CA takes effect without a restart.
pub struct TlsMaterial {
    /// The node's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The CA certificates members' certificates must chain to.
    pub ca: Vec<CertificateDer<'static>>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> TlsMaterial {
        TlsMaterial {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca: self.ca.clone(),
        }
    }
}

impl std::fmt::Debug for TlsMaterial {
    /// Never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain", &self.chain.len())
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

/// A missing certificate beside a signing request `vigil init --csr`
/// wrote: says so, since the next step is the CA's.
fn awaiting_ca(cfg: &Config, mut e: IdentityError) -> IdentityError {
    let csr = cfg.tls_cert.with_extension("csr");
    if !e.file.exists() && csr.is_file() {
        e.message = format!(
            "{}; the signing request {} is waiting for `vigil ca sign` on the CA's machine",
            e.message,
            csr.display()
        );
    }
    e
}

impl TlsMaterial {
    /// Reads `identity.tls_cert`, `identity.tls_key` (refused if group or
    /// others can read it) and `identity.ca_cert`, and checks that the
    /// certificate names the node; the first problem found, if any.
    pub fn load(cfg: &Config) -> Result<TlsMaterial, IdentityError> {
        TlsMaterial::load_all(cfg).map_err(|mut all| all.remove(0))
    }

    /// Like [`TlsMaterial::load`], with every problem found (never an
    /// empty list).
    fn load_all(cfg: &Config) -> Result<TlsMaterial, Vec<IdentityError>> {
        let mut problems = Vec::new();
        let chain = keep(
            &mut problems,
            load_certs(&cfg.tls_cert, "identity.tls_cert").map_err(|e| awaiting_ca(cfg, e)),
        );
        let key = keep(
            &mut problems,
            read_private(&cfg.tls_key, "identity.tls_key").and_then(|key_pem| {
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
                    let message = match e {
                        pem::Error::NoItemsFound => "contains no private key".to_string(),
                        e => format!("bad PEM: {}", pem_problem(&e)),
                    };
                    ierr(&cfg.tls_key, "identity.tls_key", message)
                })
            }),
        );
        let ca = keep(&mut problems, load_certs(&cfg.ca_cert, "identity.ca_cert"));
        if let Some(chain) = &chain {
            let names = cert_dns_names(&chain[0]);
            if !names.iter().any(|n| n == &cfg.node_id) {
                problems.push(ierr(
                    &cfg.tls_cert,
                    "identity.tls_cert",
                    format!(
                        "certificate names {names:?}, not this node's id `{}`",
                        cfg.node_id
                    ),
                ));
            }
        }
        match (chain, key, ca) {
            (Some(chain), Some(key), Some(ca)) if problems.is_empty() => {
                Ok(TlsMaterial { chain, key, ca })
            }
            _ => Err(problems),
        }
    }

    /// Checks that the material works together at `now` (Unix seconds):
    /// the private key belongs to the certificate, and the certificate
    /// chains to one of the CA certificates, is valid for both ends of a
    /// link and names `cfg.node_id`. A reload checks new material with it
    /// before putting it in force; the error names the file at fault.
    pub fn verify(&self, cfg: &Config, now: i64) -> Result<(), IdentityError> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::{CertificateError, Error as TlsError};
        let cert_err = |m: String| ierr(&cfg.tls_cert, "identity.tls_cert", m);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::sign::CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider)
            .map_err(|e| match e {
            TlsError::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => ierr(
                &cfg.tls_key,
                "identity.tls_key",
                format!(
                    "does not match the certificate in {}",
                    cfg.tls_cert.display()
                ),
            ),
            e => ierr(
                &cfg.tls_key,
                "identity.tls_key",
                format!("unusable private key: {e}"),
            ),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone()).map_err(|e| {
                ierr(
                    &cfg.ca_cert,
                    "identity.ca_cert",
                    format!("not a usable CA certificate: {e}"),
                )
            })?;
        }
        let roots = std::sync::Arc::new(roots);
        let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        let why = |e: TlsError| match e {
            // A CA with the same name as the one that signed (two `vigil
            // ca init`) makes webpki try its key: a bad signature.
            TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!(
                "is not signed by a CA certificate in {}",
                cfg.ca_cert.display()
            ),
            TlsError::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "has expired".to_string(),
            TlsError::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "is not valid yet".to_string(),
            e => format!("is refused against {}: {e}", cfg.ca_cert.display()),
        };
        let (leaf, intermediates) = (&self.chain[0], &self.chain[1..]);
        let name = rustls_pki_types::ServerName::try_from(cfg.node_id.clone())
            .map_err(|e| cert_err(format!("node id is not a DNS name: {e}")))?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| cert_err(format!("cannot check the certificate: {e}")))?
        .verify_server_cert(leaf, intermediates, &name, &[], at)
        .map_err(|e| cert_err(why(e)))?;
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| cert_err(format!("cannot check the certificate: {e}")))?
            .verify_client_cert(leaf, intermediates, at)
            .map_err(|e| cert_err(why(e)))?;
        Ok(())
    }

    /// Whether `other` is the same certificates, key and CA.
    pub fn same_as(&self, other: &TlsMaterial) -> bool {
        self.chain == other.chain
            && self.ca == other.ca
            && self.key.secret_der() == other.key.secret_der()
    }

    /// When the node's certificate (`"node"`) and each CA certificate
    /// (`"ca"`) expire; a certificate that does not parse is left out.
    pub fn expiries(&self) -> Vec<CertificateExpiry> {
        let node = self
            .chain
            .first()
            .and_then(cert_not_after)
            .map(|t| CertificateExpiry {
                certificate: "node".into(),
                not_after: t,
            });
        let ca = self
            .ca
            .iter()
            .filter_map(cert_not_after)
            .map(|t| CertificateExpiry {
                certificate: "ca".into(),
                not_after: t,
            });
        node.into_iter().chain(ca).collect()
    }
}

/// `r`'s value, or `None` with its error added to `problems`.
fn keep<T>(problems: &mut Vec<IdentityError>, r: Result<T, IdentityError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

/// The DNS subject-alternative names of a certificate (the node ids it
/// speaks for). An unparsable certificate has none.
pub fn cert_dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// SHA-256 of a certificate's DER, the value pinned in `cert_sha256`.
pub fn cert_sha256(der: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(der.as_ref()).into()
}

/// When one certificate stops being valid: the node's own (`"node"`), a
/// federation CA certificate (`"ca"`) or a member's pinned certificate
/// (the member's id). It exists because an expired certificate stops
/// every new link without another sign: the node warns in its log ahead
/// of time, and monitoring reads these (`/metrics`) to alert on the time
/// left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// `"node"`, `"ca"` or a member id.
    pub certificate: String,
    /// The certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

/// A certificate's notAfter in Unix seconds; `None` if it does not parse.
pub fn cert_not_after(der: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Days before expiry from which a certificate is warned about.
pub const EXPIRY_WARN_DAYS: i64 = 30;
/// Days before expiry from which the warning is an error.
pub const EXPIRY_URGENT_DAYS: i64 = 7;

/// How close a certificate is to its expiry, once it is worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpiryLevel {
    /// Within [`EXPIRY_WARN_DAYS`]: a warning.
    Soon,
    /// Within [`EXPIRY_URGENT_DAYS`], or already expired: an error.
    Urgent,
}

/// Whole days from `now` until `not_after` (Unix seconds), rounded down;
/// negative once expired.
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(crate::time::DAY)
}

/// The level a certificate expiring at `not_after` has at `now`, if any.
pub fn expiry_level(not_after: i64, now: i64) -> Option<ExpiryLevel> {
    let left = not_after - now;
    if left <= EXPIRY_URGENT_DAYS * crate::time::DAY {
        Some(ExpiryLevel::Urgent)
    } else if left <= EXPIRY_WARN_DAYS * crate::time::DAY {
        Some(ExpiryLevel::Soon)
    } else {
        None
    }
}

/// Logs a certificate's coming expiry at `level`, with the fields
/// `certificate`, `not_after` (RFC 3339) and `days_left`.
fn log_expiry(e: &CertificateExpiry, level: ExpiryLevel, now: i64) {
    let not_after = crate::time::rfc3339(e.not_after);
    let days_left = days_left(e.not_after, now);
    match level {
        ExpiryLevel::Soon => tracing::warn!(
            certificate = %e.certificate,
            not_after = %not_after,
            days_left,
            "certificate expires within {EXPIRY_WARN_DAYS} days"
        ),
        ExpiryLevel::Urgent if e.not_after <= now => tracing::error!(
            certificate = %e.certificate,
            not_after = %not_after,
            days_left,
            "certificate has expired"
        ),
        ExpiryLevel::Urgent => tracing::error!(
            certificate = %e.certificate,
            not_after = %not_after,
            days_left,
            "certificate expires within {EXPIRY_URGENT_DAYS} days"
        ),
    }
}

/// The expiry of every certificate the node relies on: its own and the
/// CA's (replaced at each reload), and the certificates of members whose
/// `cert_sha256` pins them, recorded when they connect. It warns in the
/// log as expiry nears (see [`ExpiryWatch::check`]) and answers
/// [`ExpiryWatch::expiries`] for monitoring.
#[derive(Debug, Default)]
pub struct ExpiryWatch {
    state: std::sync::Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    own: Vec<CertificateExpiry>,
    /// Member id: the pinned certificate's SHA-256 and notAfter.
    members: std::collections::BTreeMap<String, ([u8; 32], i64)>,
    /// (member, level): the day (Unix days) it was last warned about.
    warned: std::collections::HashMap<(String, ExpiryLevel), i64>,
}

impl ExpiryWatch {
    /// A watch over the node's own certificates (see
    /// [`TlsMaterial::expiries`]).
    pub fn new(own: Vec<CertificateExpiry>) -> ExpiryWatch {
        ExpiryWatch {
            state: std::sync::Mutex::new(WatchState {
                own,
                ..WatchState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the node's own certificates (a reload installed new ones).
    pub fn set_own(&self, own: Vec<CertificateExpiry>) {
        self.state().own = own;
    }

    /// Keeps only the members whose pin `pinned` still gives as the
    /// recorded certificate's SHA-256 (a reload removed a member or
    /// changed its pin).
    pub fn retain_members(&self, pinned: impl Fn(&str) -> Option<[u8; 32]>) {
        let mut st = self.state();
        st.members
            .retain(|id, (sha, _)| pinned(id).as_ref() == Some(&*sha));
        let WatchState {
            members, warned, ..
        } = &mut *st;
        warned.retain(|(id, _), _| members.contains_key(id));
    }

    /// Records the pinned certificate a member presented (its SHA-256 and
    /// notAfter) when it connected, and warns if it expires soon: at most
    /// once per member and level a day, however often it reconnects.
    /// Returns the level it warned at, if it did.
    pub fn member_seen(
        &self,
        member: &str,
        sha256: [u8; 32],
        not_after: i64,
        now: i64,
    ) -> Option<ExpiryLevel> {
        let mut st = self.state();
        st.members.insert(member.to_string(), (sha256, not_after));
        let e = CertificateExpiry {
            certificate: member.to_string(),
            not_after,
        };
        warn_member(&mut st, &e, now)
    }

    /// Warns about every certificate that expires soon: the node's own and
    /// the CA's each time (at start, at each reload and once a day), the
    /// members' at most once per member and level a day.
    pub fn check(&self, now: i64) {
        let mut st = self.state();
        for e in &st.own {
            if let Some(level) = expiry_level(e.not_after, now) {
                log_expiry(e, level, now);
            }
        }
        let members: Vec<CertificateExpiry> = st
            .members
            .iter()
            .map(|(id, (_, t))| CertificateExpiry {
                certificate: id.clone(),
                not_after: *t,
            })
            .collect();
        for e in &members {
            warn_member(&mut st, e, now);
        }
    }

    /// Every certificate watched as `/metrics` labels them, each label
    /// once: `node`, `ca` (then `ca-2`, `ca-3`, … for a CA bundle) and
    /// `member:ID` for each member seen with a pinned certificate, with
    /// its not-after time.
    pub fn metric_labels(&self) -> Vec<(String, i64)> {
        let st = self.state();
        let mut cas = 0;
        let own = st.own.iter().map(|e| {
            let label = match e.certificate.as_str() {
                "ca" => {
                    cas += 1;
                    if cas == 1 {
                        "ca".to_string()
                    } else {
                        format!("ca-{cas}")
                    }
                }
                other => other.to_string(),
            };
            (label, e.not_after)
        });
        let mut out: Vec<(String, i64)> = own.collect();
        out.extend(
            st.members
                .iter()
                .map(|(id, (_, t))| (format!("member:{id}"), *t)),
        );
        out
    }

    /// Every certificate watched: `"node"`, `"ca"` (one per CA
    /// certificate) and each member seen with a pinned certificate.
    pub fn expiries(&self) -> Vec<CertificateExpiry> {
        let st = self.state();
        st.own
            .iter()
            .cloned()
            .chain(st.members.iter().map(|(id, (_, t))| CertificateExpiry {
                certificate: id.clone(),
                not_after: *t,
            }))
            .collect()
    }
}

/// Warns about a member's certificate unless already done today at this
/// level; the level warned at, if it did.
fn warn_member(st: &mut WatchState, e: &CertificateExpiry, now: i64) -> Option<ExpiryLevel> {
    let level = expiry_level(e.not_after, now)?;
    let today = now.div_euclid(crate::time::DAY);
    let key = (e.certificate.clone(), level);
    if st.warned.get(&key) == Some(&today) {
        return None;
    }
    st.warned.insert(key, today);
    log_expiry(e, level, now);
    Some(level)
}

/// A CA certificate and key, PEM-encoded.
pub struct CaFiles {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Creates a federation CA for tests and pilots.
pub fn generate_ca(name: &str) -> Result<CaFiles, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now - ::time::Duration::days(1);
    params.not_after = now + ::time::Duration::days(365 * 20);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CaFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A node's TLS certificate and key, PEM-encoded.
pub struct NodeTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What every node certificate says, whoever asked for it: the node id as
/// its common name and only DNS name, a leaf (never a CA) for TLS client
/// and server use, valid five years. A signing request only supplies the
/// public key and the name; everything else is the CA's decision.
fn node_cert_params(node_id: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
    let mut params = CertificateParams::new(vec![node_id.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, node_id);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now - ::time::Duration::days(1);
    params.not_after = now + ::time::Duration::days(365 * 5);
    Ok(params)
}

/// The CA as an issuer of certificates.
fn ca_issuer(ca: &CaFiles) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, rcgen::Error> {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem)?;
    rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
}

/// Issues a node certificate with the node id as its DNS name, signed by the CA.
pub fn issue_node_cert(ca: &CaFiles, node_id: &str) -> Result<NodeTls, rcgen::Error> {
    let issuer = ca_issuer(ca)?;
    let key = rcgen::KeyPair::generate()?;
    let cert = node_cert_params(node_id)?.signed_by(&key, &issuer)?;
    Ok(NodeTls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A node's TLS key and the signing request for its certificate (PEM),
/// for enrolment without the CA key: the key never leaves the node, the
/// request goes to whoever holds the CA.
pub struct NodeCsr {
    pub csr_pem: String,
    pub key_pem: String,
}

/// Makes a TLS key and a certificate signing request naming `node_id`.
pub fn node_csr(node_id: &str) -> Result<NodeCsr, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let csr = node_cert_params(node_id)?.serialize_request(&key)?;
    Ok(NodeCsr {
        csr_pem: csr.pem()?,
        key_pem: key.serialize_pem(),
    })
}

/// Why a certificate signing request was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("not a certificate signing request whose signature verifies ({0})")]
    Unreadable(rcgen::Error),
    #[error("the request names no node: it needs the node id as its common name")]
    NoName,
    #[error("the request's name `{0}` is not a node id ({rule})", rule = crate::config::NODE_ID_RULE)]
    BadName(String),
    #[error("the request's DNS names {sans:?} are not exactly its common name `{cn}`")]
    NamesDisagree { cn: String, sans: Vec<String> },
    #[error("the CA certificate or key: {0}")]
    Ca(rcgen::Error),
}

/// The node a signing request names, once its signature and names are
/// checked: its common name is a node id and its only DNS name is the same.
pub fn csr_node_id(csr_pem: &str) -> Result<String, CsrError> {
    Ok(read_csr(csr_pem)?.0)
}

fn read_csr(csr_pem: &str) -> Result<(String, rcgen::PublicKey), CsrError> {
    use rcgen::{DnType, DnValue, SanType};
    let req =
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(CsrError::Unreadable)?;
    let cn = match req.params.distinguished_name.get(&DnType::CommonName) {
        Some(DnValue::Utf8String(s)) => s.clone(),
        Some(DnValue::PrintableString(s)) => s.as_str().to_string(),
        _ => return Err(CsrError::NoName),
    };
    if !crate::config::valid_node_id(&cn) {
        return Err(CsrError::BadName(cn));
    }
    let sans: Vec<String> = req
        .params
        .subject_alt_names
        .iter()
        .map(|s| match s {
            SanType::DnsName(n) => n.as_str().to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    if sans != [cn.clone()] {
        return Err(CsrError::NamesDisagree { cn, sans });
    }
    Ok((cn, req.public_key))
}

/// Signs a node's certificate signing request with the CA: the node id
/// and public key come from the request (checked by [`csr_node_id`]'s
/// rules), everything else from [`node_cert_params`]. Returns the node id
/// and the certificate (PEM).
pub fn sign_csr(ca: &CaFiles, csr_pem: &str) -> Result<(String, String), CsrError> {
    let (id, public_key) = read_csr(csr_pem)?;
    let issuer = ca_issuer(ca).map_err(CsrError::Ca)?;
    let req = rcgen::CertificateSigningRequestParams {
        params: node_cert_params(&id).map_err(CsrError::Ca)?,
        public_key,
    };
    let cert = req.signed_by(&issuer).map_err(CsrError::Ca)?;
    Ok((id, cert.pem()))
}

/// The operating system's random generator, for keys, salts and HPKE.
/// A failure to read it is not something a node can go on from, so it
/// panics (as `rand`'s `OsRng` did before 0.10); on Linux it cannot fail
/// once the kernel's pool is initialised.
pub fn os_rng() -> rand::rand_core::UnwrapErr<rand::rngs::SysRng> {
    rand::rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// A fresh ed25519 signing key.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut os_rng())
}

/// PKCS#8 PEM of a signing key, for its key file.
pub fn signing_key_pem(key: &SigningKey) -> Result<String, ed25519_dalek::pkcs8::Error> {
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|p| p.to_string())
}

/// A fresh admin bearer token (256 bits, hex).
pub fn generate_token() -> String {
    use rand::Rng;
    let mut b = [0u8; 32];
    os_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes a file readable only by its owner; refuses to overwrite.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_ref())?;
    f.sync_all()
}

/// Writes a public file; refuses to overwrite.
pub fn write_public(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(contents.as_ref())?;
    f.sync_all()
}

/// What `vigil init` needs to create a node.
pub struct InitParams<'a> {
    pub node_id: &'a str,
    pub dir: &'a Path,
    /// With the CA's key, the certificate is signed here; without it,
    /// `vigil init --csr` writes a signing request for the CA instead.
    pub ca: Option<&'a CaFiles>,
    /// The CA certificate path as it should appear in the config (relative
    /// to `dir` or absolute).
    pub ca_cert_ref: &'a str,
    pub listen: &'a str,
    pub admin_listen: &'a str,
}

/// Why `vigil init` could not create a node.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0}: already exists; refusing to overwrite")]
    Exists(PathBuf),
    #[error("signing key: {0}")]
    Key(#[from] ed25519_dalek::pkcs8::Error),
}

/// Creates a node's files: signing key, encryption key, TLS key and
/// certificate (or, without the CA, the signing request `N.csr` for it),
/// admin token and `vigil.toml`. Returns the public signing key. Refuses
/// before writing anything if any of those files exists.
pub fn init_node(p: &InitParams<'_>) -> Result<VerifyingKey, InitError> {
    let id = p.node_id;
    std::fs::create_dir_all(p.dir).map_err(|e| InitError::Io {
        path: p.dir.to_path_buf(),
        source: e,
    })?;
    let at = |name: String| p.dir.join(name);
    for name in [
        "vigil.toml".to_string(),
        format!("{id}.signing.pem"),
        format!("{id}.encryption.key"),
        format!("{id}.key"),
        format!("{id}.crt"),
        format!("{id}.csr"),
        format!("{id}.admin.token"),
    ] {
        if at(name.clone()).exists() {
            return Err(InitError::Exists(at(name)));
        }
    }
    let signing = generate_signing_key();
    let (tls, csr) = match p.ca {
        Some(ca) => (issue_node_cert(ca, id)?, None),
        None => {
            let r = node_csr(id)?;
            let tls = NodeTls {
                cert_pem: String::new(),
                key_pem: r.key_pem,
            };
            (tls, Some(r.csr_pem))
        }
    };
    let io =
        |path: PathBuf, r: std::io::Result<()>| r.map_err(|e| InitError::Io { path, source: e });
    let pem = signing_key_pem(&signing)?;
    let f = at(format!("{id}.signing.pem"));
    io(f.clone(), write_private(&f, &pem))?;
    let decryption = DecryptionKey::generate(&mut os_rng());
    let f = at(format!("{id}.encryption.key"));
    io(f.clone(), write_private(&f, key_file_text(&decryption)))?;
    let f = at(format!("{id}.key"));
    io(f.clone(), write_private(&f, &tls.key_pem))?;
    match csr {
        None => {
            let f = at(format!("{id}.crt"));
            io(f.clone(), write_public(&f, &tls.cert_pem))?;
        }
        Some(csr) => {
            let f = at(format!("{id}.csr"));
            io(f.clone(), write_public(&f, &csr))?;
        }
    }
    let f = at(format!("{id}.admin.token"));
    io(
        f.clone(),
        write_private(&f, format!("{}\n", generate_token())),
    )?;
    let toml = node_config_toml(id, p.listen, "data", p.ca_cert_ref, p.admin_listen);
    let f = at("vigil.toml".into());
    io(f.clone(), write_public(&f, &toml))?;
    Ok(signing.verifying_key())
}

/// The config file `vigil init` writes; members are appended by the operator.
pub fn node_config_toml(
    id: &str,
    listen: &str,
    data_dir: &str,
    ca_cert: &str,
    admin: &str,
) -> String {
    format!(
        r#"# vigil node configuration for `{id}` (docs/config.md). Paths are relative to this file.
[node]
id = "{id}"
listen = "{listen}"
data_dir = "{data_dir}"
relay = false

[identity]
signing_key = "{id}.signing.pem"   # refused if group/others can read it
encryption_key = "{id}.encryption.key"   # refused if group/others can read it
tls_cert = "{id}.crt"
tls_key = "{id}.key"
ca_cert = "{ca_cert}"

[admin]
listen = "{admin}"
token_file = "{id}.admin.token"

[policy.inbound]
max_retention_days = 1825
special_categories = "accept"

# Add one [[members]] entry per partner, e.g.:
# [[members]]
# id = "bravo"
# signing_key = "ed25519:BASE64"      # from `vigil id` on bravo
# encryption_key = "xwing:BASE64"     # line 2 of `vigil id` on bravo
# address = "127.0.0.1:7402"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::seal::format_encryption_key;

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn an_encryption_key_file_loads_and_bad_ones_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let key = DecryptionKey::from_seed(&[4; 32]).unwrap();
        let path = dir.path().join("n.encryption.key");
        write_private(&path, key_file_text(&key)).unwrap();
        let got = load_decryption_key(&path, "identity.encryption_key").unwrap();
        assert_eq!(got.public(), key.public());

        let bad = dir.path().join("bad.key");
        write_private(&bad, "hello").unwrap();
        let e = load_decryption_key(&bad, "identity.encryption_key")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("bad.key: identity.encryption_key: not a vigil X-Wing key"),
            "{e}"
        );

        #[cfg(unix)]
        {
            chmod(&path, 0o644);
            let e = load_decryption_key(&path, "identity.encryption_key")
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("n.encryption.key: identity.encryption_key: is readable by group or others (mode 644)"),
                "{e}"
            );
        }
    }

    /// A node `alpha` made by `vigil init` in a fresh folder, with its CA.
    fn init_alpha() -> (tempfile::TempDir, CaFiles) {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca("test CA").unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        init_node(&InitParams {
            node_id: "alpha",
            dir: &dir.path().join("alpha"),
            ca: Some(&ca),
            ca_cert_ref: "../ca.crt",
            listen: "127.0.0.1:7401",
            admin_listen: "127.0.0.1:7501",
        })
        .unwrap();
        (dir, ca)
    }

    #[test]
    fn pem_problems_keep_their_messages() {
        let (dir, ca) = init_alpha();
        let node = dir.path().join("alpha");
        let cfg = Config::load(&node.join("vigil.toml")).unwrap();
        Identity::load(&cfg).unwrap();
        let cert_pem = std::fs::read_to_string(&cfg.tls_cert).unwrap();
        let key_pem = std::fs::read_to_string(&cfg.tls_key).unwrap();
        // A PEM section cut off before its END line.
        let cut = |pem: &str| pem[..pem.find("-----END").unwrap()].to_string();
        let load_err = || Identity::load(&cfg).err().unwrap().to_string();

        std::fs::write(&cfg.tls_cert, "").unwrap();
        let e = load_err();
        assert!(
            e.ends_with("identity.tls_cert: contains no certificate"),
            "{e}"
        );
        // A key is not a certificate.
        std::fs::write(&cfg.tls_cert, &key_pem).unwrap();
        let e = load_err();
        assert!(
            e.ends_with("identity.tls_cert: contains no certificate"),
            "{e}"
        );
        std::fs::write(&cfg.tls_cert, cut(&cert_pem)).unwrap();
        let e = load_err();
        assert!(
            e.contains(
                "identity.tls_cert: bad PEM: section end \"-----END CERTIFICATE-----\" missing"
            ),
            "{e}"
        );
        std::fs::write(&cfg.tls_cert, &cert_pem).unwrap();

        std::fs::write(&cfg.tls_key, &cert_pem).unwrap();
        let e = load_err();
        assert!(
            e.ends_with("identity.tls_key: contains no private key"),
            "{e}"
        );
        std::fs::write(&cfg.tls_key, cut(&key_pem)).unwrap();
        let e = load_err();
        assert!(
            e.contains(
                "identity.tls_key: bad PEM: section end \"-----END PRIVATE KEY-----\" missing"
            ),
            "{e}"
        );
        std::fs::write(
            &cfg.tls_key,
            key_pem.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY----"),
        )
        .unwrap();
        let e = load_err();
        assert!(
            e.contains(
                "identity.tls_key: bad PEM: illegal section start: \"-----BEGIN PRIVATE KEY----\""
            ),
            "{e}"
        );
        std::fs::write(&cfg.tls_key, &key_pem).unwrap();
        Identity::load(&cfg).unwrap();

        // The same problems in PEM text held in memory.
        let signing = || SigningKey::from_bytes(&[7; 32]);
        let tls = NodeTls {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
        };
        Identity::from_pems("alpha", signing(), &tls, &ca.cert_pem).unwrap();
        let no_key = NodeTls {
            cert_pem: cert_pem.clone(),
            key_pem: cert_pem.clone(),
        };
        let e = Identity::from_pems("alpha", signing(), &no_key, &ca.cert_pem);
        assert!(matches!(e, Err(PemError::NoKey)));
        let e = Identity::from_pems("alpha", signing(), &tls, &cut(&ca.cert_pem));
        let e = e.err().unwrap();
        assert!(matches!(e, PemError::Pem(_)));
        assert_eq!(
            e.to_string(),
            "bad PEM: section end \"-----END CERTIFICATE-----\" missing"
        );
    }

    #[test]
    fn init_writes_a_private_encryption_key_that_the_identity_loads() {
        let (dir, _) = init_alpha();
        let node = dir.path().join("alpha");
        let key_path = node.join("alpha.encryption.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let cfg = Config::load(&node.join("vigil.toml")).unwrap();
        assert_eq!(cfg.encryption_key.as_deref(), Some(key_path.as_path()));
        let identity = Identity::load(&cfg).unwrap();
        let own = identity.decryption.as_ref().expect("a decryption key");
        let on_disk = load_decryption_key(&key_path, "identity.encryption_key").unwrap();
        assert_eq!(own.public(), on_disk.public());

        // A member pinning this node's own encryption key is refused.
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let text = std::fs::read_to_string(node.join("vigil.toml")).unwrap()
            + &format!(
                "\n[[members]]\nid = \"bravo\"\nsigning_key = \"{}\"\nencryption_key = \"{}\"\n",
                format_public_key(&other),
                format_encryption_key(own.public())
            );
        let cfg = Config::parse(&node.join("vigil.toml"), &text).unwrap();
        let e = Identity::load(&cfg).err().unwrap().to_string();
        assert!(
            e.contains("vigil.toml: members[0].encryption_key: is this node's own encryption key"),
            "{e}"
        );
    }
    #[test]
    fn reloaded_tls_material_must_match_its_key_chain_to_the_ca_and_name_the_node() {
        let (dir, ca) = init_alpha();
        let node = dir.path().join("alpha");
        let cfg = Config::load(&node.join("vigil.toml")).unwrap();
        let now = crate::time::now();
        let tls = TlsMaterial::load(&cfg).unwrap();
        tls.verify(&cfg, now).unwrap();
        assert!(tls.same_as(&TlsMaterial::load(&cfg).unwrap()));
        let (cert_pem, key_pem) = (
            std::fs::read_to_string(&cfg.tls_cert).unwrap(),
            std::fs::read_to_string(&cfg.tls_key).unwrap(),
        );
        let put = |cert: &str, key: &str| {
            std::fs::write(&cfg.tls_cert, cert).unwrap();
            std::fs::write(&cfg.tls_key, key).unwrap();
        };
        let verify_err = || {
            TlsMaterial::load(&cfg)
                .unwrap()
                .verify(&cfg, now)
                .err()
                .unwrap()
                .to_string()
        };

        // A key that is not the certificate's.
        let other = issue_node_cert(&ca, "alpha").unwrap();
        put(&cert_pem, &other.key_pem);
        let e = verify_err();
        assert!(
            e.contains("identity.tls_key: does not match the certificate in"),
            "{e}"
        );
        // A certificate (and its key) from a CA the node does not trust.
        let stranger = generate_ca("another CA").unwrap();
        let foreign = issue_node_cert(&stranger, "alpha").unwrap();
        put(&foreign.cert_pem, &foreign.key_pem);
        assert!(!tls.same_as(&TlsMaterial::load(&cfg).unwrap()));
        let e = verify_err();
        assert!(
            e.contains("identity.tls_cert: is not signed by a CA certificate in"),
            "{e}"
        );
        // ... until the CA file holds that CA too (a bundle).
        std::fs::write(
            &cfg.ca_cert,
            format!("{}{}", ca.cert_pem, stranger.cert_pem),
        )
        .unwrap();
        let bundle = TlsMaterial::load(&cfg).unwrap();
        bundle.verify(&cfg, now).unwrap();
        assert_eq!(bundle.ca.len(), 2);
        // The CA's checks apply at the time given.
        let e = bundle
            .verify(&cfg, now + 6 * 365 * crate::time::DAY)
            .err()
            .unwrap()
            .to_string();
        assert!(e.ends_with("identity.tls_cert: has expired"), "{e}");
        // A certificate for another node.
        let bravo = issue_node_cert(&ca, "bravo").unwrap();
        put(&bravo.cert_pem, &bravo.key_pem);
        let e = TlsMaterial::load(&cfg).err().unwrap().to_string();
        assert!(
            e.contains(
                "identity.tls_cert: certificate names [\"bravo\"], not this node's id `alpha`"
            ),
            "{e}"
        );
        put(&cert_pem, &key_pem);
        TlsMaterial::load(&cfg).unwrap().verify(&cfg, now).unwrap();
        // A key others can read, and a certificate file that is gone.
        #[cfg(unix)]
        {
            chmod(&cfg.tls_key, 0o644);
            let e = TlsMaterial::load(&cfg).err().unwrap().to_string();
            assert!(
                e.contains("identity.tls_key: is readable by group or others"),
                "{e}"
            );
            chmod(&cfg.tls_key, 0o600);
        }
        std::fs::remove_file(&cfg.tls_cert).unwrap();
        let e = TlsMaterial::load(&cfg).err().unwrap().to_string();
        assert!(e.contains("identity.tls_cert: cannot read"), "{e}");
    }

    #[test]
    fn expiry_levels_and_member_warnings_at_most_once_a_day() {
        use crate::time::DAY;
        let now = 1_800_000_000;
        assert_eq!(expiry_level(now + 31 * DAY, now), None);
        assert_eq!(expiry_level(now + 30 * DAY, now), Some(ExpiryLevel::Soon));
        assert_eq!(expiry_level(now + 8 * DAY, now), Some(ExpiryLevel::Soon));
        assert_eq!(expiry_level(now + 7 * DAY, now), Some(ExpiryLevel::Urgent));
        assert_eq!(expiry_level(now - DAY, now), Some(ExpiryLevel::Urgent));
        assert_eq!(days_left(now + 20 * DAY - 1, now), 19);
        assert_eq!(days_left(now - 1, now), -1);

        let ca = generate_ca("test CA").unwrap();
        let tls = issue_node_cert(&ca, "alpha").unwrap();
        let id = Identity::from_pems(
            "alpha",
            SigningKey::from_bytes(&[7; 32]),
            &tls,
            &ca.cert_pem,
        )
        .unwrap();
        let own = id.tls.expiries();
        let names: Vec<&str> = own.iter().map(|e| e.certificate.as_str()).collect();
        assert_eq!(names, ["node", "ca"]);
        let five_years = crate::time::now() + 5 * 365 * DAY;
        assert!((own[0].not_after - five_years).abs() < DAY, "{own:?}");

        let watch = ExpiryWatch::new(own.clone());
        let at = now + 20 * DAY;
        // Warned once a day and level, however often the member connects.
        assert_eq!(
            watch.member_seen("bravo", [1; 32], at, now),
            Some(ExpiryLevel::Soon)
        );
        assert_eq!(watch.member_seen("bravo", [1; 32], at, now + 60), None);
        assert_eq!(
            watch.member_seen("bravo", [1; 32], at, now + DAY),
            Some(ExpiryLevel::Soon)
        );
        let late = now + 15 * DAY;
        assert_eq!(
            watch.member_seen("bravo", [1; 32], at, late),
            Some(ExpiryLevel::Urgent)
        );
        assert_eq!(watch.member_seen("bravo", [1; 32], at, late + 1), None);
        assert_eq!(
            watch.member_seen("charlie", [2; 32], now + 90 * DAY, now),
            None
        );
        let listed = watch.expiries();
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert!(listed.contains(&CertificateExpiry {
            certificate: "bravo".into(),
            not_after: at
        }));
        // A reload that changed charlie's pin forgets its certificate.
        watch.retain_members(|m| match m {
            "bravo" => Some([1; 32]),
            _ => Some([3; 32]),
        });
        let names: Vec<String> = watch
            .expiries()
            .into_iter()
            .map(|e| e.certificate)
            .collect();
        assert_eq!(names, ["node", "ca", "bravo"]);
        watch.set_own(Vec::new());
        assert_eq!(watch.expiries().len(), 1);
    }

    /// A signing request from `params` with a fresh key (PEM).
    fn request(params: rcgen::CertificateParams) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_signing_request_is_signed_only_for_one_node_name_and_on_the_cas_terms() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa};
        use x509_parser::prelude::*;
        let ca = generate_ca("test CA").unwrap();

        let req = node_csr("alpha").unwrap();
        assert_eq!(csr_node_id(&req.csr_pem).unwrap(), "alpha");
        let (id, pem) = sign_csr(&ca, &req.csr_pem).unwrap();
        assert_eq!(id, "alpha");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(cert_dns_names(&der), ["alpha"]);
        // The certificate carries the request's key, which stayed with the
        // node, and the CA's signature.
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let node_key = rcgen::KeyPair::from_pem(&req.key_pem).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            node_key.public_key_raw()
        );

        // A request that asks to be a CA gets a leaf certificate anyway.
        let mut params = CertificateParams::new(vec!["bravo".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "bravo");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let (_, pem) = sign_csr(&ca, &request(params)).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.is_ca(), "a node certificate must not be a CA");

        let refused = |params: CertificateParams| sign_csr(&ca, &request(params)).unwrap_err();
        // No common name.
        let mut params = CertificateParams::new(vec!["alpha".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        assert!(matches!(refused(params), CsrError::NoName));
        // Not a node id.
        let mut params = CertificateParams::new(vec!["Alpha_1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Alpha_1");
        let e = refused(params);
        assert!(matches!(&e, CsrError::BadName(n) if n == "Alpha_1"), "{e}");
        // A second name beside the node's.
        let mut params =
            CertificateParams::new(vec!["alpha".to_string(), "bravo".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "alpha");
        let e = refused(params);
        assert!(
            e.to_string().contains(
                r#"DNS names ["alpha", "bravo"] are not exactly its common name `alpha`"#
            ),
            "{e}"
        );
        // A request whose signature does not verify (one byte of its
        // signature changed) or that is not a request at all.
        let der = pem_body(&req.csr_pem);
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad_pem = pem_text("CERTIFICATE REQUEST", &bad);
        assert!(matches!(
            sign_csr(&ca, &bad_pem).unwrap_err(),
            CsrError::Unreadable(_)
        ));
        assert!(matches!(
            csr_node_id(&ca.cert_pem).unwrap_err(),
            CsrError::Unreadable(_)
        ));
    }

    fn pem_body(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    fn pem_text(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    /// the crash points of a rotation that the code
    /// handles. A staged key its store never recorded is dropped; one it
    /// recorded is put in place with the old key kept as `F.retired-1`.
    #[test]
    fn a_rotation_cut_short_is_settled_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("alpha.signing.pem");
        let (old, new) = (generate_signing_key(), generate_signing_key());
        write_private(&f, signing_key_pem(&old).unwrap()).unwrap();
        // Cut short before it was recorded.
        stage_signing_key(&f, &new).unwrap();
        let k = settle_signing_key(&f, None, old.clone()).unwrap();
        assert_eq!(k.verifying_key(), old.verifying_key());
        assert!(!staged_key_path(&f).exists());
        // Cut short after it was recorded.
        stage_signing_key(&f, &new).unwrap();
        let k = settle_signing_key(&f, Some(new.verifying_key()), old.clone()).unwrap();
        assert_eq!(k.verifying_key(), new.verifying_key());
        assert_eq!(
            load_signing_key(&f, "f").unwrap().verifying_key(),
            new.verifying_key()
        );
        let retired = dir.path().join("alpha.signing.pem.retired-1");
        assert_eq!(
            load_signing_key(&retired, "f").unwrap().verifying_key(),
            old.verifying_key()
        );
    }

    /// a crash while `F.next` is being written (before
    /// the rotation can have been recorded: stage_signing_key writes it in
    /// place, not by rename) leaves half a key there. docs/protocol.md says
    /// "the next start removes `F.next`"; settle_signing_key instead fails
    /// to parse it and the node refuses to start until an operator deletes
    /// the file by hand.
    #[test]
    fn a_key_file_cut_short_while_staged_does_not_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("alpha.signing.pem");
        let (old, new) = (generate_signing_key(), generate_signing_key());
        write_private(&f, signing_key_pem(&old).unwrap()).unwrap();
        let pem = signing_key_pem(&new).unwrap();
        write_private(&staged_key_path(&f), &pem[..pem.len() / 2]).unwrap();
        let k = settle_signing_key(&f, None, old.clone())
            .expect("a staged key no rotation recorded is dropped, whole or not");
        assert_eq!(k.verifying_key(), old.verifying_key());
        assert!(!staged_key_path(&f).exists());
    }
}
