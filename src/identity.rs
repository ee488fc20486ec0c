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
    pub tls_chain: Vec<CertificateDer<'static>>,
    pub tls_key: PrivateKeyDer<'static>,
    pub ca: Vec<CertificateDer<'static>>,
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
            tls_chain: certs(&tls.cert_pem)?,
            tls_key,
            ca: certs(ca_pem)?,
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
        let tls_chain = keep(
            &mut problems,
            load_certs(&cfg.tls_cert, "identity.tls_cert"),
        );
        let tls_key = keep(
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
        if let Some(chain) = &tls_chain {
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
        match (signing, decryption, tls_chain, tls_key, ca) {
            (Some(signing), Some(decryption), Some(tls_chain), Some(tls_key), Some(ca))
                if problems.is_empty() =>
            {
                Ok(Identity {
                    node_id: cfg.node_id.clone(),
                    signing,
                    tls_chain,
                    tls_key,
                    ca,
                    decryption,
                })
            }
            _ => Err(problems),
        }
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

/// Issues a node certificate with the node id as its DNS name, signed by the CA.
pub fn issue_node_cert(ca: &CaFiles, node_id: &str) -> Result<NodeTls, rcgen::Error> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca.cert_pem)?.self_signed(&ca_key)?;
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
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(NodeTls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A fresh ed25519 signing key.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// PKCS#8 PEM of a signing key, for its key file.
pub fn signing_key_pem(key: &SigningKey) -> Result<String, ed25519_dalek::pkcs8::Error> {
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|p| p.to_string())
}

/// A fresh admin bearer token (256 bits, hex).
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
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
    pub ca: &'a CaFiles,
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
    #[error("signing key: {0}")]
    Key(#[from] ed25519_dalek::pkcs8::Error),
}

/// Creates a node's files: signing key, encryption key, TLS key and
/// certificate, admin token and `vigil.toml`. Returns the public signing
/// key.
pub fn init_node(p: &InitParams<'_>) -> Result<VerifyingKey, InitError> {
    let id = p.node_id;
    std::fs::create_dir_all(p.dir).map_err(|e| InitError::Io {
        path: p.dir.to_path_buf(),
        source: e,
    })?;
    let signing = generate_signing_key();
    let tls = issue_node_cert(p.ca, id)?;
    let at = |name: String| p.dir.join(name);
    let io =
        |path: PathBuf, r: std::io::Result<()>| r.map_err(|e| InitError::Io { path, source: e });
    let pem = signing_key_pem(&signing)?;
    let f = at(format!("{id}.signing.pem"));
    io(f.clone(), write_private(&f, &pem))?;
    let decryption = DecryptionKey::generate(&mut rand::rngs::OsRng);
    let f = at(format!("{id}.encryption.key"));
    io(f.clone(), write_private(&f, key_file_text(&decryption)))?;
    let f = at(format!("{id}.key"));
    io(f.clone(), write_private(&f, &tls.key_pem))?;
    let f = at(format!("{id}.crt"));
    io(f.clone(), write_public(&f, &tls.cert_pem))?;
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
            ca: &ca,
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
}
