//! The text form of ed25519 public keys, `ed25519:BASE64`: what `vigil id`
//! prints, what partners pin in `[[members]] signing_key`, and what the
//! processing log's signed head names.

use base64::Engine;
use ed25519_dalek::VerifyingKey;

/// Why a public key's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must look like ed25519:BASE64")]
    Prefix,
    #[error("invalid base64: {0}")]
    Base64(String),
    #[error("is {0} bytes, an ed25519 key is 32")]
    Length(usize),
    #[error("is not a valid ed25519 point")]
    NotAPoint,
    #[error("is a weak (small-order) ed25519 key")]
    Weak,
}

/// Renders a public signing key the way partners pin it: `ed25519:BASE64`.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    )
}

/// Parses `ed25519:BASE64`, refusing weak (small-order) keys.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let b64 = s.strip_prefix("ed25519:").ok_or(KeyError::Prefix)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(bytes.len()))?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::NotAPoint)?;
    if key.is_weak() {
        return Err(KeyError::Weak);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_say_why() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        assert_eq!(parse_public_key(&format_public_key(&k)), Ok(k));
        assert_eq!(parse_public_key("ed25519"), Err(KeyError::Prefix));
        assert_eq!(parse_public_key("ed25519:AAAA"), Err(KeyError::Length(3)));
        assert!(matches!(
            parse_public_key("ed25519:***"),
            Err(KeyError::Base64(_))
        ));
        // The identity point is of small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let b64 = base64::engine::general_purpose::STANDARD.encode(weak);
        assert_eq!(
            parse_public_key(&format!("ed25519:{b64}")),
            Err(KeyError::Weak)
        );
    }
}
