//! Screening keys: the normalized forms under which identifiers and
//! name + date of birth are indexed and looked up, so `Müller`, `MULLER`
//! and ` muller ` meet, and `X 123-456` finds `x123456`. Pure functions.

use sha2::{Digest, Sha256};
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use super::model::{Identifier, Subject, SubjectField};

/// Lowercase, diacritics removed (compatibility decomposition, combining
/// marks dropped), runs of white space folded to one space, trimmed.
pub fn normalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_text(&mut out, s);
    out
}

/// Appends [`normalize_text`] of `s` to `out`. Keys are built by appending
/// into one buffer: every stored notice's keys are computed on the write
/// path, and a `String` per part showed in its profile.
fn push_text(out: &mut String, s: &str) {
    if !s.is_ascii() {
        out.push_str(&normalize_unicode(s));
        return;
    }
    // ASCII has no decompositions and no combining marks: the same result
    // without NFKD's allocations.
    let start = out.len();
    for word in s.split_whitespace() {
        if out.len() > start {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
}

/// [`normalize_text`] for any input: NFKD, combining marks dropped.
fn normalize_unicode(s: &str) -> String {
    let folded: String = s
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Appends `s` normalized with only its letters and digits kept:
/// identifier values compare without case, white space or punctuation.
fn push_value(out: &mut String, s: &str) {
    if s.is_ascii() {
        out.extend(
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase()),
        );
    } else {
        out.extend(normalize_unicode(s).chars().filter(|c| c.is_alphanumeric()));
    }
}

/// Appends a name normalized with punctuation as a word break (hyphens and
/// apostrophes inside names are ignored) and runs of breaks folded to one
/// space.
fn push_name(out: &mut String, s: &str) {
    let unicode;
    let text = if s.is_ascii() {
        s
    } else {
        unicode = normalize_unicode(s);
        &unicode
    };
    let start = out.len();
    let mut gap = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            gap = true;
            continue;
        }
        if gap && out.len() > start {
            out.push(' ');
        }
        gap = false;
        // A no-op on normalized text, which is already lowercase.
        out.push(c.to_ascii_lowercase());
    }
}

/// Appends the key of an identifier: scheme, country and value normalized.
fn push_identifier_key(out: &mut String, scheme: &str, country: &str, value: &str) {
    out.push_str("id\0");
    push_text(out, scheme);
    out.push('\0');
    push_value(out, country);
    out.push('\0');
    push_value(out, value);
}

/// Appends the key of a name and date of birth; family and given names are
/// kept apart.
fn push_name_key(out: &mut String, family: &str, given: &str, dob: &str) {
    out.push_str("name\0");
    push_name(out, family);
    out.push('\0');
    push_name(out, given);
    out.push('\0');
    out.push_str(dob.trim());
}

/// The key of an identifier: scheme, country and value normalized.
pub fn identifier_key(scheme: &str, country: &str, value: &str) -> String {
    let mut out = String::new();
    push_identifier_key(&mut out, scheme, country, value);
    out
}

/// The key of a name and date of birth.
pub fn name_key(family: &str, given: &str, dob: &str) -> String {
    let mut out = String::new();
    push_name_key(&mut out, family, given, dob);
    out
}

/// Parses an alias written `FAMILY, GIVEN` (or a single name).
fn split_name(s: &str) -> (&str, &str) {
    match s.split_once(',') {
        Some((f, g)) => (f, g),
        None => (s, ""),
    }
}

/// An identifier's parts, borrowed. postcard writes a struct as its fields
/// in order, so this decodes the bytes of an [`Identifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct IdentifierRef<'a> {
    pub scheme: &'a str,
    pub country: &'a str,
    pub value: &'a str,
}

/// The subject fields screening keys are made of, borrowed: from a
/// [`Subject`], or straight from a stored envelope's disclosure bytes. The
/// store computes the keys of every notice it writes, and decoding owned
/// strings for that was a tenth of its write path (issue #5 profile).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyFields<'a> {
    pub identifiers: Vec<IdentifierRef<'a>>,
    pub family_name: Option<&'a str>,
    pub given_names: Option<&'a str>,
    pub aliases: Vec<&'a str>,
    pub date_of_birth: Option<&'a str>,
}

impl<'a> KeyFields<'a> {
    /// The key fields a subject holds.
    pub fn of(s: &'a Subject) -> KeyFields<'a> {
        KeyFields {
            identifiers: s
                .identifiers
                .iter()
                .flatten()
                .map(|i: &'a Identifier| IdentifierRef {
                    scheme: &i.scheme,
                    country: &i.country,
                    value: &i.value,
                })
                .collect(),
            family_name: s.family_name.as_deref(),
            given_names: s.given_names.as_deref(),
            aliases: s.aliases.iter().flatten().map(String::as_str).collect(),
            date_of_birth: s.date_of_birth.as_deref(),
        }
    }

    /// Takes one disclosed field from its committed bytes (the postcard
    /// encoding [`Subject::set_from_bytes`] reads); fields no key is made
    /// of are skipped without decoding.
    pub fn set_from_bytes(&mut self, field: SubjectField, bytes: &'a [u8]) -> Result<(), String> {
        use SubjectField as F;
        match field {
            F::Identifiers => self.identifiers = decode_borrowed(bytes)?,
            F::FamilyName => self.family_name = Some(decode_borrowed(bytes)?),
            F::GivenNames => self.given_names = Some(decode_borrowed(bytes)?),
            F::Aliases => self.aliases = decode_borrowed(bytes)?,
            F::DateOfBirth => self.date_of_birth = Some(decode_borrowed(bytes)?),
            _ => {}
        }
        Ok(())
    }
}

/// Like [`super::decode_exact`], borrowing from `bytes`.
fn decode_borrowed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err("trailing bytes".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Calls `f` with every screening key of the fields held, built in one
/// buffer: each identifier, and name + date of birth (for the name and each
/// alias) when the date of birth is held. Keys may repeat.
fn for_each_key(s: &KeyFields<'_>, mut f: impl FnMut(&str)) {
    let mut key = String::with_capacity(64);
    for i in &s.identifiers {
        key.clear();
        push_identifier_key(&mut key, i.scheme, i.country, i.value);
        f(&key);
    }
    let Some(dob) = s.date_of_birth else {
        return;
    };
    if let Some(family) = s.family_name {
        key.clear();
        push_name_key(&mut key, family, s.given_names.unwrap_or(""), dob);
        f(&key);
    }
    for alias in &s.aliases {
        let (family, given) = split_name(alias);
        key.clear();
        push_name_key(&mut key, family, given, dob);
        f(&key);
    }
}

/// Every screening key of the subject, sorted, without repeats.
pub fn subject_keys(s: &Subject) -> Vec<String> {
    let mut keys = Vec::new();
    for_each_key(&KeyFields::of(s), |k| keys.push(k.to_string()));
    keys.sort();
    keys.dedup();
    keys
}

/// The index hashes of the keys of `fields`, sorted, without repeats: what
/// the store keeps per notice.
pub fn key_hashes(fields: &KeyFields<'_>) -> Vec<[u8; 32]> {
    let mut hashes = Vec::new();
    for_each_key(fields, |k| hashes.push(key_hash(k)));
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// The fixed-size index form of a key.
pub fn key_hash(key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vigil/screen/v1\0");
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A screening query as an operator writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `SCHEME:COUNTRY:VALUE`
    Identifier {
        scheme: String,
        country: String,
        value: String,
    },
    /// `FAMILY, GIVEN` and `YYYY-MM-DD`
    Name {
        family: String,
        given: String,
        dob: String,
    },
}

impl Query {
    /// Parses `SCHEME:COUNTRY:VALUE` (the value may itself contain colons).
    pub fn identifier(s: &str) -> Option<Query> {
        let mut parts = s.splitn(3, ':');
        let (scheme, country, value) = (parts.next()?, parts.next()?, parts.next()?);
        if [scheme, country, value].iter().any(|p| p.trim().is_empty()) {
            return None;
        }
        Some(Query::Identifier {
            scheme: scheme.into(),
            country: country.into(),
            value: value.into(),
        })
    }

    /// Builds a name query from `FAMILY, GIVEN` and a date of birth.
    pub fn name(name: &str, dob: &str) -> Option<Query> {
        let (family, given) = split_name(name);
        if family.trim().is_empty() || dob.trim().is_empty() {
            return None;
        }
        Some(Query::Name {
            family: family.into(),
            given: given.into(),
            dob: dob.into(),
        })
    }

    /// The index key this query looks up.
    pub fn key(&self) -> String {
        match self {
            Query::Identifier {
                scheme,
                country,
                value,
            } => identifier_key(scheme, country, value),
            Query::Name { family, given, dob } => name_key(family, given, dob),
        }
    }

    /// How an operator would write it, for the processing log.
    pub fn describe(&self) -> String {
        match self {
            Query::Identifier {
                scheme,
                country,
                value,
            } => format!("identifier {scheme}:{country}:{value}"),
            Query::Name { family, given, dob } => format!("name {family}, {given} born {dob}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn name_cleaning_folds_punctuation_like_split_and_join(s in "\\PC{0,30}") {
            let reference = normalize_text(&s)
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { ' ' })
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            prop_assert_eq!(name_key(&s, "", "x"), format!("name\0{reference}\0\0x"));
        }

        #[test]
        fn ascii_fast_path_matches_the_unicode_path(s in "[\\x00-\\x7f]{0,40}") {
            prop_assert_eq!(normalize_text(&s), normalize_unicode(&s));
            // Identifier values: the normalized text's letters and digits.
            let mut value = String::new();
            push_value(&mut value, &s);
            let reference: String =
                normalize_unicode(&s).chars().filter(|c| c.is_alphanumeric()).collect();
            prop_assert_eq!(value, reference);
        }
    }

    #[test]
    fn case_spacing_and_diacritics_are_folded() {
        assert_eq!(normalize_text("  Müller\tÉlodie "), "muller elodie");
        assert_eq!(
            name_key("MÜLLER", "élodie  marie", "1980-04-01"),
            name_key(" muller ", "Elodie Marie", "1980-04-01")
        );
        assert_eq!(
            name_key("O'Brien-Smith", "Seán", "1990-01-01"),
            name_key("o brien smith", "sean", "1990-01-01")
        );
        assert_ne!(
            name_key("Doe", "John", "1980-04-01"),
            name_key("Doe", "John", "1980-04-02")
        );
        assert_eq!(
            identifier_key("passport", "NLD", "X 123-456"),
            identifier_key("Passport", "nld", "x123456")
        );
        assert_ne!(
            identifier_key("passport", "NLD", "X1"),
            identifier_key("id-card", "NLD", "X1")
        );
    }

    #[test]
    fn subject_keys_cover_identifiers_names_and_aliases() {
        let s = Subject {
            family_name: Some("Doe".into()),
            given_names: Some("John".into()),
            aliases: Some(vec!["Smith, Johnny".into()]),
            date_of_birth: Some("1980-04-01".into()),
            identifiers: Some(vec![Identifier {
                scheme: "passport".into(),
                country: "NLD".into(),
                value: "X1234567".into(),
            }]),
            ..Subject::default()
        };
        let keys = subject_keys(&s);
        assert_eq!(keys.len(), 3);
        let mut hashes: Vec<[u8; 32]> = keys.iter().map(|k| key_hash(k)).collect();
        hashes.sort_unstable();
        assert_eq!(key_hashes(&KeyFields::of(&s)), hashes);
        // The same fields read back from their committed bytes, borrowed,
        // alongside a field keys are not made of.
        let values = Subject {
            description: Some("scar on the left hand".into()),
            ..s.clone()
        }
        .field_values();
        let mut borrowed = KeyFields::default();
        for (field, bytes) in &values {
            borrowed.set_from_bytes(*field, bytes).unwrap();
        }
        assert_eq!(borrowed, KeyFields::of(&s));
        assert_eq!(key_hashes(&borrowed), hashes);
        let (field, bytes) = &values[0];
        assert!(borrowed
            .set_from_bytes(*field, &bytes[..bytes.len() - 1])
            .is_err());
        for q in [
            Query::identifier("PASSPORT:nld:x 1234567").unwrap(),
            Query::name("doe, john", "1980-04-01").unwrap(),
            Query::name("SMITH,  Johnny", "1980-04-01").unwrap(),
        ] {
            assert!(keys.contains(&q.key()), "{q:?}");
        }
        assert!(Query::identifier("passport:NLD").is_none());
        assert!(Query::name(" , John", "1980-04-01").is_none());
    }
}
