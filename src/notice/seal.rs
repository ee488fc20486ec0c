//! Sealing to one member (docs/format.md#sealed-parts): HPKE (RFC 9180)
//! with the hybrid post-quantum X-Wing KEM (ML-KEM-768 + X25519),
//! HKDF-SHA256 and ChaCha20-Poly1305, in base mode.
//!
//! Why: a relay carries notices addressed to others. What it may not read
//! (the disclosures of a notice, a hit report) is sealed to the
//! recipient's encryption key, bound to the notice it belongs to, so a
//! relay can neither read it nor move it to another notice. Notices about
//! persons are kept for years; a hybrid KEM keeps what is recorded in
//! transit today unreadable by a quantum computer later, as long as either
//! half holds.
//!
//! Pure logic: randomness comes from the generator the caller passes.

use base64::Engine;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::XWing;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

/// The text prefix of a public encryption key: `xwing:BASE64`.
pub const KEY_PREFIX: &str = "xwing:";
/// Bytes of an X-Wing public key.
pub const PUBLIC_KEY_LEN: usize = 1216;
/// Bytes of an X-Wing encapsulated key.
pub const ENC_LEN: usize = 1120;
/// Domain separation of every sealed part: the HPKE `info` starts with it.
pub const SEAL_DOMAIN: &[u8] = b"vigil/seal/v1\0";
/// Largest plaintext sealed or opened (a notice's disclosures fit in an
/// envelope of 512 KiB).
pub const MAX_SEALED: usize = 512 * 1024;

/// A member's public encryption key, pinned in `[[members]] encryption_key`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(<XWing as hpke::Kem>::PublicKey);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format_encryption_key(self);
        write!(f, "EncryptionKey({}…)", &text[..text.len().min(22)])
    }
}

/// This node's private encryption key (the 32-byte X-Wing seed), which
/// opens what members sealed to it.
#[derive(Clone)]
pub struct DecryptionKey {
    secret: <XWing as hpke::Kem>::PrivateKey,
    public: EncryptionKey,
}

impl DecryptionKey {
    /// The key whose seed is `seed` (a key file's content).
    pub fn from_seed(seed: &[u8; 32]) -> Result<DecryptionKey, SealError> {
        let secret = <XWing as hpke::Kem>::PrivateKey::from_bytes(seed)
            .map_err(|e| SealError::Key(e.to_string()))?;
        let public = EncryptionKey(XWing::sk_to_pk(&secret));
        Ok(DecryptionKey { secret, public })
    }

    /// A fresh key from a cryptographic generator.
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> DecryptionKey {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        // Every 32-byte string is an X-Wing seed.
        Self::from_seed(&seed).expect("a 32-byte seed is a key")
    }

    /// The seed, for the key file.
    pub fn seed(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The public half members pin.
    pub fn public(&self) -> &EncryptionKey {
        &self.public
    }
}

/// Why a key or a sealed part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("must look like xwing:BASE64")]
    Prefix,
    #[error("invalid base64: {0}")]
    Base64(String),
    #[error("is {0} bytes, an X-Wing public key is {PUBLIC_KEY_LEN}")]
    Length(usize),
    #[error("is not a valid X-Wing key: {0}")]
    Key(String),
    #[error("sealed part is addressed to `{0}`, not this node")]
    NotForMe(String),
    #[error("sealed part does not open: tampered, or sealed to another key or notice")]
    DoesNotOpen,
    #[error("sealed part is malformed: {0}")]
    Malformed(String),
    #[error("plaintext is {0} bytes, over the {MAX_SEALED}-byte limit")]
    TooLarge(usize),
}

/// Renders a public encryption key as members pin it: `xwing:BASE64`.
pub fn format_encryption_key(key: &EncryptionKey) -> String {
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key.0.to_bytes())
    )
}

/// Parses `xwing:BASE64` (X-Wing checks the ML-KEM part of the key).
pub fn parse_encryption_key(s: &str) -> Result<EncryptionKey, SealError> {
    let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or(SealError::Prefix)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| SealError::Base64(e.to_string()))?;
    if bytes.len() != PUBLIC_KEY_LEN {
        return Err(SealError::Length(bytes.len()));
    }
    <XWing as hpke::Kem>::PublicKey::from_bytes(&bytes)
        .map(EncryptionKey)
        .map_err(|e| SealError::Key(e.to_string()))
}

/// What is sealed: the disclosures of a notice, or a hit report. Part of
/// the HPKE `info`, so one can never be opened as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    Disclosures,
    HitReport,
}

impl Sealing {
    fn label(self) -> &'static [u8] {
        match self {
            Sealing::Disclosures => b"disclosures",
            Sealing::HitReport => b"hit",
        }
    }
}

/// One recipient's sealed bytes: the HPKE encapsulated key and the
/// ciphertext (with its 16-byte tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPart {
    /// The member it is sealed to (also bound into the HPKE `info`).
    pub recipient: String,
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// `info` = domain || what || 0 || recipient.
fn info(what: Sealing, recipient: &str) -> Vec<u8> {
    let mut i = Vec::with_capacity(SEAL_DOMAIN.len() + 16 + recipient.len());
    i.extend_from_slice(SEAL_DOMAIN);
    i.extend_from_slice(what.label());
    i.push(0);
    i.extend_from_slice(recipient.as_bytes());
    i
}

/// Adapts the caller's generator to the one `hpke` takes.
struct Draw<'a, R>(&'a mut R);

impl<R: rand::RngCore + rand::CryptoRng> hpke::rand_core::TryRng for Draw<'_, R> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand::RngCore + rand::CryptoRng> hpke::rand_core::TryCryptoRng for Draw<'_, R> {}

/// Seals `plaintext` to `recipient`'s key. `bound_to` (a notice id, a hit
/// report's id) is the associated data: the part opens only beside it.
pub fn seal(
    what: Sealing,
    recipient: &str,
    key: &EncryptionKey,
    bound_to: &[u8; 32],
    plaintext: &[u8],
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<SealedPart, SealError> {
    if plaintext.len() > MAX_SEALED {
        return Err(SealError::TooLarge(plaintext.len()));
    }
    let (enc, ct) = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, XWing>(
        &OpModeS::Base,
        &key.0,
        &info(what, recipient),
        plaintext,
        bound_to,
        &mut Draw(rng),
    )
    .map_err(|e| SealError::Key(e.to_string()))?;
    Ok(SealedPart {
        recipient: recipient.to_string(),
        enc: enc.to_bytes().to_vec(),
        ct,
    })
}

/// Opens a part sealed to this node (`me`) beside `bound_to`.
pub fn open(
    what: Sealing,
    part: &SealedPart,
    me: &str,
    key: &DecryptionKey,
    bound_to: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    if part.recipient != me {
        return Err(SealError::NotForMe(part.recipient.clone()));
    }
    if part.enc.len() != ENC_LEN {
        return Err(SealError::Malformed(format!(
            "encapsulated key is {} bytes, not {ENC_LEN}",
            part.enc.len()
        )));
    }
    if part.ct.len() > MAX_SEALED + 16 {
        return Err(SealError::TooLarge(part.ct.len()));
    }
    let enc = <XWing as hpke::Kem>::EncappedKey::from_bytes(&part.enc)
        .map_err(|e| SealError::Malformed(e.to_string()))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, XWing>(
        &OpModeR::Base,
        &key.secret,
        &enc,
        &info(what, me),
        &part.ct,
        bound_to,
    )
    .map_err(|_| SealError::DoesNotOpen)
}

/// The key file: the seed in base64 between markers, so an operator sees
/// what the file is.
pub fn key_file_text(key: &DecryptionKey) -> String {
    format!(
        "-----BEGIN VIGIL XWING SEED-----\n{}\n-----END VIGIL XWING SEED-----\n",
        base64::engine::general_purpose::STANDARD.encode(key.seed())
    )
}

/// Reads [`key_file_text`].
pub fn parse_key_file(text: &str) -> Result<DecryptionKey, SealError> {
    let inner = text
        .trim()
        .strip_prefix("-----BEGIN VIGIL XWING SEED-----")
        .and_then(|t| t.strip_suffix("-----END VIGIL XWING SEED-----"))
        .ok_or_else(|| SealError::Malformed("not a vigil X-Wing key file".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inner.trim())
        .map_err(|e| SealError::Base64(e.to_string()))?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Malformed(format!("seed is {} bytes, not 32", bytes.len())))?;
    DecryptionKey::from_seed(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn a_sealed_part_opens_only_for_its_recipient_beside_its_notice() {
        let mut r = rng();
        let s2 = DecryptionKey::generate(&mut r);
        let s3 = DecryptionKey::generate(&mut r);
        let id = [9u8; 32];
        let part = seal(
            Sealing::Disclosures,
            "s2",
            s2.public(),
            &id,
            b"family name",
            &mut r,
        )
        .unwrap();
        assert_eq!(part.enc.len(), ENC_LEN);
        assert_eq!(
            open(Sealing::Disclosures, &part, "s2", &s2, &id).unwrap(),
            b"family name"
        );
        // Another node, another key, another notice, another use.
        assert_eq!(
            open(Sealing::Disclosures, &part, "s3", &s3, &id),
            Err(SealError::NotForMe("s2".into()))
        );
        assert_eq!(
            open(Sealing::Disclosures, &part, "s2", &s3, &id),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            open(Sealing::Disclosures, &part, "s2", &s2, &[8; 32]),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            open(Sealing::HitReport, &part, "s2", &s2, &id),
            Err(SealError::DoesNotOpen)
        );
        // Relabelled for another recipient holding the key: the info differs.
        let mut moved = part.clone();
        moved.recipient = "s3".into();
        assert_eq!(
            open(Sealing::Disclosures, &moved, "s3", &s2, &id),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let mut r = rng();
        let k = DecryptionKey::generate(&mut r);
        let id = [1u8; 32];
        let part = seal(Sealing::Disclosures, "s2", k.public(), &id, b"abc", &mut r).unwrap();
        for i in (0..part.ct.len()).chain([0, 500, ENC_LEN - 1].map(|i| 10_000 + i)) {
            let mut bad = part.clone();
            if i >= 10_000 {
                bad.enc[i - 10_000] ^= 1;
            } else {
                bad.ct[i] ^= 0x80;
            }
            assert!(
                open(Sealing::Disclosures, &bad, "s2", &k, &id).is_err(),
                "flip at {i} opened"
            );
        }
        let mut short = part;
        short.enc.pop();
        assert!(matches!(
            open(Sealing::Disclosures, &short, "s2", &k, &id),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn keys_round_trip_and_bad_ones_say_why() {
        let k = DecryptionKey::generate(&mut rng());
        let text = format_encryption_key(k.public());
        assert!(text.starts_with("xwing:"));
        assert_eq!(&parse_encryption_key(&text).unwrap(), k.public());
        assert_eq!(parse_encryption_key("ed25519:AAAA"), Err(SealError::Prefix));
        assert_eq!(
            parse_encryption_key("xwing:AAAA"),
            Err(SealError::Length(3))
        );
        let again = parse_key_file(&key_file_text(&k)).unwrap();
        assert_eq!(again.public(), k.public());
        assert!(parse_key_file("hello").is_err());
    }
}
