//! Sealing to one member (docs/format.md#sealed-parts): HPKE (RFC 9180)
//! with the hybrid post-quantum X-Wing KEM (ML-KEM-768 + X25519),
//! HKDF-SHA256 and ChaCha20-Poly1305, in base mode, used through its secret
//! export: one encapsulation (a *context*) per sender and recipient serves
//! many parts, each sealed with ChaCha20-Poly1305 under a key exported for
//! the id it is bound to.
//!
//! Why: a relay carries notices addressed to others. What it may not read
//! (the disclosures of a notice, a hit report) is sealed to the recipient's
//! encryption key, bound to the notice it belongs to, so a relay can
//! neither read it nor move it to another notice. The sender signs each
//! context's encapsulation with its ed25519 key: only sender and recipient
//! hold the context's secret, so a part that opens under a signed context
//! is the sender's, and nobody else (a relay) can seal one in its name.
//! Notices about persons are kept for years; a hybrid KEM keeps what is
//! recorded in transit today unreadable by a quantum computer later, as
//! long as either half holds. An X-Wing encapsulation costs hundreds of
//! microseconds here; a context amortises it over up to
//! [`CONTEXT_PARTS`] parts.
//!
//! Pure logic: randomness comes from the generator the caller passes.

use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::KeyInit;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::aead::ChaCha20Poly1305;
use hpke::aead::{AeadCtxR, AeadCtxS};
use hpke::kdf::HkdfSha256;
use hpke::kem::XWing;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The text prefix of a public encryption key: `xwing:BASE64`.
pub const KEY_PREFIX: &str = "xwing:";
/// Bytes of an X-Wing public key.
pub const PUBLIC_KEY_LEN: usize = 1216;
/// Bytes of an X-Wing encapsulated key.
pub const ENC_LEN: usize = 1120;
/// Domain separation of every context: the HPKE `info` starts with it.
pub const SEAL_DOMAIN: &[u8] = b"vigil/seal/v2\0";
/// Domain separation of the sender's signature over a context.
pub const CONTEXT_DOMAIN: &[u8] = b"vigil/seal-context/v2\0";
/// Domain separation of a part's key, exported from its context.
pub const PART_KEY_DOMAIN: &[u8] = b"vigil/part-key/v2\0";
/// Most parts one sender context seals before a fresh encapsulation.
pub const CONTEXT_PARTS: u32 = 4096;
/// Longest a sender context is used (seconds) before a fresh one.
pub const CONTEXT_SECS: i64 = 600;
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
    pub fn generate(rng: &mut impl rand::CryptoRng) -> DecryptionKey {
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
    #[error("sealed part's context is not signed by `{0}`")]
    NotSigned(String),
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

/// One recipient's sealed bytes: its context (the HPKE encapsulated key
/// and the sender's signature over it) and one ciphertext under a key
/// exported from that context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPart {
    /// The member it is sealed to (also bound into the HPKE `info`).
    pub recipient: String,
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// The sender's ed25519 signature over [`context_message`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    pub nonce: [u8; 12],
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

impl SealedPart {
    /// Which context it was sealed under (receivers cache contexts by it).
    pub fn context_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.enc);
        h.update(&self.signature);
        h.update(self.recipient.as_bytes());
        h.finalize().into()
    }
}

/// `info` = domain || recipient.
fn info(recipient: &str) -> Vec<u8> {
    let mut i = Vec::with_capacity(SEAL_DOMAIN.len() + recipient.len());
    i.extend_from_slice(SEAL_DOMAIN);
    i.extend_from_slice(recipient.as_bytes());
    i
}

/// What the sender signs of a context: domain || recipient || 0 || enc.
pub fn context_message(recipient: &str, enc: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT_DOMAIN.len() + recipient.len() + 1 + enc.len());
    m.extend_from_slice(CONTEXT_DOMAIN);
    m.extend_from_slice(recipient.as_bytes());
    m.push(0);
    m.extend_from_slice(enc);
    m
}

/// A part's key: exported from the context for what it holds and the id
/// it is bound to.
fn part_key(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    what: Sealing,
    bound_to: &[u8; 32],
) -> Result<chacha20poly1305::ChaCha20Poly1305, SealError> {
    let mut label = PART_KEY_DOMAIN.to_vec();
    label.extend_from_slice(what.label());
    label.push(0);
    label.extend_from_slice(bound_to);
    let mut key = [0u8; 32];
    export(&label, &mut key).map_err(|e| SealError::Key(e.to_string()))?;
    Ok(chacha20poly1305::ChaCha20Poly1305::new(&key.into()))
}

/// A sender's side of a context with one recipient: seals many parts
/// after one encapsulation.
pub struct SenderContext {
    recipient: String,
    key: EncryptionKey,
    enc: Vec<u8>,
    signature: Vec<u8>,
    ctx: AeadCtxS<ChaCha20Poly1305, HkdfSha256, XWing>,
    /// When it was made (the caller's clock), for [`CONTEXT_SECS`].
    created: i64,
    /// Parts sealed so far, for [`CONTEXT_PARTS`].
    uses: u32,
}

impl SenderContext {
    /// A fresh context with `recipient` (its public `key`), signed by the
    /// sender's `signer`.
    pub fn new(
        recipient: &str,
        key: &EncryptionKey,
        signer: &SigningKey,
        now: i64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<SenderContext, SealError> {
        let (enc, ctx) = hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, XWing>(
            &OpModeS::Base,
            &key.0,
            &info(recipient),
            rng,
        )
        .map_err(|e| SealError::Key(e.to_string()))?;
        let enc = enc.to_bytes().to_vec();
        let signature = signer
            .sign(&context_message(recipient, &enc))
            .to_bytes()
            .to_vec();
        Ok(SenderContext {
            recipient: recipient.to_string(),
            key: key.clone(),
            enc,
            signature,
            ctx,
            created: now,
            uses: 0,
        })
    }

    /// Whether it may still seal to `key` at `now`: the same key, young
    /// enough and not used up.
    pub fn fresh(&self, key: &EncryptionKey, now: i64) -> bool {
        &self.key == key
            && self.uses < CONTEXT_PARTS
            && (0..CONTEXT_SECS).contains(&(now - self.created))
    }

    /// Seals `plaintext` under this context, bound to `bound_to` (a notice
    /// id, a hit report's id): it opens only beside it, as `what`.
    pub fn seal(
        &mut self,
        what: Sealing,
        bound_to: &[u8; 32],
        plaintext: &[u8],
        rng: &mut impl rand::CryptoRng,
    ) -> Result<SealedPart, SealError> {
        if plaintext.len() > MAX_SEALED {
            return Err(SealError::TooLarge(plaintext.len()));
        }
        let cipher = part_key(|l, o| self.ctx.export(l, o), what, bound_to)?;
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: bound_to,
                },
            )
            .map_err(|_| SealError::Key("sealing failed".into()))?;
        self.uses += 1;
        Ok(SealedPart {
            recipient: self.recipient.clone(),
            enc: self.enc.clone(),
            signature: self.signature.clone(),
            nonce,
            ct,
        })
    }
}

/// A recipient's side of a sender's context, once its signature verified
/// and its key decapsulated: opens every part sealed under it.
pub struct ReceiverContext {
    ctx: AeadCtxR<ChaCha20Poly1305, HkdfSha256, XWing>,
}

impl ReceiverContext {
    /// Accepts the context of `part`, sealed to this node (`me`, `key`) by
    /// the holder of `sender` (a pinned signing key).
    pub fn accept(
        part: &SealedPart,
        me: &str,
        key: &DecryptionKey,
        sender: (&str, &VerifyingKey),
    ) -> Result<ReceiverContext, SealError> {
        if part.recipient != me {
            return Err(SealError::NotForMe(part.recipient.clone()));
        }
        if part.enc.len() != ENC_LEN {
            return Err(SealError::Malformed(format!(
                "encapsulated key is {} bytes, not {ENC_LEN}",
                part.enc.len()
            )));
        }
        let sig: [u8; 64] = part
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| SealError::NotSigned(sender.0.to_string()))?;
        sender
            .1
            .verify_strict(
                &context_message(me, &part.enc),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| SealError::NotSigned(sender.0.to_string()))?;
        let enc = <XWing as hpke::Kem>::EncappedKey::from_bytes(&part.enc)
            .map_err(|e| SealError::Malformed(e.to_string()))?;
        let ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, XWing>(
            &OpModeR::Base,
            &key.secret,
            &enc,
            &info(me),
        )
        .map_err(|_| SealError::DoesNotOpen)?;
        Ok(ReceiverContext { ctx })
    }

    /// Opens a part sealed under this context beside `bound_to`, as `what`.
    pub fn open(
        &self,
        what: Sealing,
        part: &SealedPart,
        bound_to: &[u8; 32],
    ) -> Result<Vec<u8>, SealError> {
        if part.ct.len() > MAX_SEALED + 16 {
            return Err(SealError::TooLarge(part.ct.len()));
        }
        let cipher = part_key(|l, o| self.ctx.export(l, o), what, bound_to)?;
        cipher
            .decrypt(
                &part.nonce.into(),
                Payload {
                    msg: &part.ct,
                    aad: bound_to,
                },
            )
            .map_err(|_| SealError::DoesNotOpen)
    }
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

    fn sender() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    #[test]
    fn a_part_opens_only_for_its_recipient_beside_its_id_under_a_signed_context() {
        let mut r = rng();
        let s2 = DecryptionKey::generate(&mut r);
        let s3 = DecryptionKey::generate(&mut r);
        let signer = sender();
        let pinned = signer.verifying_key();
        let mut ctx = SenderContext::new("s2", s2.public(), &signer, 0, &mut r).unwrap();
        let id = [9u8; 32];
        let part = ctx
            .seal(Sealing::Disclosures, &id, b"family name", &mut r)
            .unwrap();
        assert_eq!(part.enc.len(), ENC_LEN);
        let open = ReceiverContext::accept(&part, "s2", &s2, ("s1", &pinned)).unwrap();
        assert_eq!(
            open.open(Sealing::Disclosures, &part, &id).unwrap(),
            b"family name"
        );
        // Another notice, another use: does not open.
        assert_eq!(
            open.open(Sealing::Disclosures, &part, &[8; 32]),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            open.open(Sealing::HitReport, &part, &id),
            Err(SealError::DoesNotOpen)
        );
        // Another node, another key.
        assert_eq!(
            ReceiverContext::accept(&part, "s3", &s3, ("s1", &pinned)).err(),
            Some(SealError::NotForMe("s2".into()))
        );
        assert_eq!(
            ReceiverContext::accept(&part, "s2", &s3, ("s1", &pinned)).and_then(|c| c.open(
                Sealing::Disclosures,
                &part,
                &id
            )),
            Err(SealError::DoesNotOpen)
        );
        // A context anyone else made (a relay sealing in the sender's
        // name) is refused: its signature is not the sender's.
        let relay = SigningKey::from_bytes(&[4; 32]);
        let mut forged = SenderContext::new("s2", s2.public(), &relay, 0, &mut r).unwrap();
        let fake = forged
            .seal(Sealing::Disclosures, &id, b"nothing", &mut r)
            .unwrap();
        assert_eq!(
            ReceiverContext::accept(&fake, "s2", &s2, ("s1", &pinned)).err(),
            Some(SealError::NotSigned("s1".into()))
        );
        // Nor can a relay splice its own ciphertext under the sender's
        // signed context: it does not hold the context's secret.
        let mut spliced = fake.clone();
        spliced.enc = part.enc.clone();
        spliced.signature = part.signature.clone();
        assert_eq!(
            open.open(Sealing::Disclosures, &spliced, &id),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn one_context_seals_many_parts_each_opening_alone() {
        let mut r = rng();
        let s2 = DecryptionKey::generate(&mut r);
        let signer = sender();
        let mut ctx = SenderContext::new("s2", s2.public(), &signer, 100, &mut r).unwrap();
        let parts: Vec<(u8, SealedPart)> = (0..5u8)
            .map(|i| {
                (
                    i,
                    ctx.seal(Sealing::Disclosures, &[i; 32], &[i; 10], &mut r)
                        .unwrap(),
                )
            })
            .collect();
        assert!(parts
            .iter()
            .all(|(_, p)| p.context_id() == parts[0].1.context_id()));
        let open = ReceiverContext::accept(&parts[3].1, "s2", &s2, ("s1", &signer.verifying_key()))
            .unwrap();
        for (i, p) in parts.iter().rev() {
            assert_eq!(
                open.open(Sealing::Disclosures, p, &[*i; 32]).unwrap(),
                [*i; 10]
            );
        }
        assert!(ctx.fresh(s2.public(), 100 + CONTEXT_SECS - 1));
        assert!(!ctx.fresh(s2.public(), 100 + CONTEXT_SECS));
        assert!(!ctx.fresh(DecryptionKey::generate(&mut r).public(), 100));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let mut r = rng();
        let k = DecryptionKey::generate(&mut r);
        let signer = sender();
        let pinned = signer.verifying_key();
        let id = [1u8; 32];
        let mut ctx = SenderContext::new("s2", k.public(), &signer, 0, &mut r).unwrap();
        let part = ctx.seal(Sealing::Disclosures, &id, b"abc", &mut r).unwrap();
        let opens = |p: &SealedPart| {
            ReceiverContext::accept(p, "s2", &k, ("s1", &pinned))
                .and_then(|c| c.open(Sealing::Disclosures, p, &id))
        };
        assert!(opens(&part).is_ok());
        for i in 0..part.ct.len() {
            let mut bad = part.clone();
            bad.ct[i] ^= 0x80;
            assert!(opens(&bad).is_err(), "ct flip at {i} opened");
        }
        for i in [0, 500, ENC_LEN - 1] {
            let mut bad = part.clone();
            bad.enc[i] ^= 1;
            assert!(opens(&bad).is_err(), "enc flip at {i} opened");
        }
        let mut bad = part.clone();
        bad.nonce[0] ^= 1;
        assert!(opens(&bad).is_err());
        let mut short = part;
        short.enc.pop();
        assert!(matches!(opens(&short), Err(SealError::Malformed(_))));
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
