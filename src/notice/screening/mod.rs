//! Screening: finding the notices that name the person or object an
//! officer checks, however the name, the country or the document number
//! was typed. Pure functions: the store keeps what [`index_entry`]
//! computes for each notice and asks [`Query::matches`] about each
//! candidate; nothing here reads a clock or a disk.
//!
//! - [`translit`]: ICAO 9303 transliteration (Latin, Cyrillic, Greek).
//! - [`names`]: name words in match form, name matching with one typing
//!   error, partial family names, joined words.
//! - [`dob`]: full and partial dates of birth.
//! - [`country`], [`scheme`]: the accepted country codes and identifier
//!   schemes.
//! - [`manifest`]: passenger and crew lists as CSV, one query per row.
//!
//! A hit says what agreed (`fields`), how strongly (`score`, 0..=1) and
//! whether the officer can take it as the same data written differently
//! (`exact`) or must check it (`possible`: a typing error, a partial date
//! or family name, given names not compared, a document type that
//! differs).

pub mod country;
pub mod dob;
pub mod manifest;
pub mod names;
pub mod scheme;
pub mod translit;

use sha2::{Digest, Sha256};

use super::model::{Identifier, Subject, SubjectField};
pub use dob::{DateError, PartialDate};
pub use names::NameWords;

/// Normalises an identifier's value for comparison: transliterated, only
/// letters and digits, lowercase (`X 123-456` = `x123456`).
pub fn identifier_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    translit::push_latin(&mut out, value);
    out.retain(|c| c != ' ');
    out
}

/// The fixed-size index form of a screening key.
pub fn key_hash(key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vigil/screen/v2\0");
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A screening key from its kind and value, hashed without copying them.
fn tagged_key(tag: &[u8], value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vigil/screen/v2\0");
    h.update(tag);
    h.update(value.as_bytes());
    h.finalize().into()
}

/// The key a notice holding an identifier is indexed under: its value
/// alone, so a query with another country code or scheme alias, or none,
/// still finds it; [`Query::matches`] then compares scheme and country.
fn identifier_key(value_norm: &str) -> [u8; 32] {
    tagged_key(b"id\0", value_norm)
}

/// The key a notice without a date of birth is indexed under, per family
/// word (and joined family name).
fn name_word_key(folded: &str) -> [u8; 32] {
    tagged_key(b"name\0", folded)
}

/// An identifier's parts, borrowed. postcard writes a struct as its fields
/// in order, so this decodes the bytes of an [`Identifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct IdentifierRef<'a> {
    pub scheme: &'a str,
    pub country: &'a str,
    pub value: &'a str,
}

/// The subject fields screening reads, borrowed: from a [`Subject`], or
/// straight from a stored envelope's disclosure bytes (the store computes
/// the index entry of every notice it writes, and decoding owned strings
/// for that was a tenth of its write path).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyFields<'a> {
    pub identifiers: Vec<IdentifierRef<'a>>,
    pub family_name: Option<&'a str>,
    pub given_names: Option<&'a str>,
    pub aliases: Vec<&'a str>,
    pub date_of_birth: Option<&'a str>,
    pub nationalities: Vec<&'a str>,
}

impl<'a> KeyFields<'a> {
    /// The fields a subject holds.
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
            nationalities: s
                .nationalities
                .iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        }
    }

    /// Takes one disclosed field from its committed bytes (the postcard
    /// encoding [`Subject::set_from_bytes`] reads); fields screening does
    /// not read are skipped without decoding.
    pub fn set_from_bytes(
        &mut self,
        field: SubjectField,
        bytes: &'a [u8],
    ) -> Result<(), postcard::Error> {
        use SubjectField as F;
        match field {
            F::Identifiers => self.identifiers = decode_borrowed(bytes)?,
            F::FamilyName => self.family_name = Some(decode_borrowed(bytes)?),
            F::GivenNames => self.given_names = Some(decode_borrowed(bytes)?),
            F::Aliases => self.aliases = decode_borrowed(bytes)?,
            F::DateOfBirth => self.date_of_birth = Some(decode_borrowed(bytes)?),
            F::Nationalities => self.nationalities = decode_borrowed(bytes)?,
            _ => {}
        }
        Ok(())
    }

    /// The date of birth, when it is one (a partner may send another text).
    pub fn dob(&self) -> Option<PartialDate> {
        self.date_of_birth.and_then(|d| PartialDate::parse(d).ok())
    }

    /// The notice's names as the index keeps them ([`names::sketch`]).
    pub fn sketch(&self) -> String {
        names::sketch(self.family_name, self.given_names, &self.aliases)
    }
}

/// Like [`super::decode_exact`], borrowing from `bytes`.
fn decode_borrowed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(postcard::Error::DeserializeBadEncoding),
        Err(e) => Err(e),
    }
}

/// What the store's screening index keeps of one current notice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Hashed keys: each identifier's value, and for a notice without a
    /// date of birth each family word. Sorted, without repeats.
    pub keys: Vec<[u8; 32]>,
    /// The notice's names ([`names::sketch`]) under its date of birth,
    /// packed ([`PartialDate::packed`]), when it holds both.
    pub names: Option<(u32, String)>,
}

/// The index entry of a notice's fields.
pub fn index_entry(fields: &KeyFields<'_>) -> IndexEntry {
    let mut keys: Vec<[u8; 32]> = fields
        .identifiers
        .iter()
        .map(|i| identifier_value(i.value))
        .filter(|v| !v.is_empty())
        .map(|v| identifier_key(&v))
        .collect();
    let sketch = fields.sketch();
    let names = match fields.dob() {
        _ if sketch.is_empty() => None,
        Some(d) => Some((d.packed(), sketch)),
        None => {
            keys.extend(
                names::sketch_family_words(&sketch)
                    .iter()
                    .map(|w| name_word_key(w)),
            );
            None
        }
    };
    keys.sort_unstable();
    keys.dedup();
    IndexEntry { keys, names }
}

/// Why a query was refused; each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`{0}` is not SCHEME:COUNTRY:VALUE")]
    IdentifierFormat(String),
    #[error("unknown identifier scheme `{0}` (known: {known})", known = scheme::names())]
    Scheme(String),
    #[error("unknown country code `{0}` (ISO 3166-1 alpha-3, alpha-2, numeric or ICAO 9303)")]
    Country(String),
    #[error("document number `{0}` has no letter or digit")]
    Value(String),
    #[error("name `{0}` has no letter")]
    Name(String),
    #[error(transparent)]
    Dob(#[from] DateError),
    #[error("nothing to screen: give a document number, or a name with a date of birth")]
    Empty,
}

impl QueryError {
    /// The query field the error concerns, as the CLI and API name it.
    pub fn field(&self) -> &'static str {
        match self {
            QueryError::IdentifierFormat(_) => "identifier",
            QueryError::Scheme(_) => "document_scheme",
            QueryError::Country(_) => "document_country",
            QueryError::Value(_) => "document_number",
            QueryError::Name(_) => "name",
            QueryError::Dob(_) => "date_of_birth",
            QueryError::Empty => "query",
        }
    }
}

/// A document to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdQuery {
    pub scheme: Option<&'static str>,
    pub country: Option<&'static str>,
    /// [`identifier_value`] of the number.
    pub value: String,
    /// The number as typed, for the processing log.
    pub typed: String,
}

impl IdQuery {
    /// A document query from its parts; empty scheme or country mean
    /// "any".
    pub fn new(scheme_s: &str, country_s: &str, value: &str) -> Result<IdQuery, QueryError> {
        let scheme = match scheme_s.trim() {
            "" => None,
            s => Some(scheme::canonical(s).ok_or_else(|| QueryError::Scheme(s.to_string()))?),
        };
        let country = match country_s.trim() {
            "" => None,
            c => Some(country::canonical(c).ok_or_else(|| QueryError::Country(c.to_string()))?),
        };
        let norm = identifier_value(value);
        if norm.is_empty() {
            return Err(QueryError::Value(value.to_string()));
        }
        Ok(IdQuery {
            scheme,
            country,
            value: norm,
            typed: value.trim().to_string(),
        })
    }

    /// How it compares with one identifier a notice holds: `None` for
    /// another number or another issuing country; else exact when scheme
    /// and country were given and agree, possible when either was not
    /// given or the scheme differs.
    fn compare(&self, i: &IdentifierRef<'_>) -> Option<(f32, bool)> {
        if identifier_value(i.value) != self.value {
            return None;
        }
        if let Some(c) = self.country {
            if country::comparable(i.country) != c {
                return None;
            }
        }
        match self.scheme {
            Some(s) if scheme::comparable(i.scheme) != s => Some((0.8, false)),
            Some(_) if self.country.is_some() => Some((1.0, true)),
            _ => Some((0.9, false)),
        }
    }
}

/// A name with a date of birth to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameQuery {
    pub words: NameWords,
    pub dob: PartialDate,
    /// The name as typed, for the processing log.
    pub typed: String,
}

impl NameQuery {
    /// A name query: any order, any punctuation; `today` (Unix seconds)
    /// refuses a date of birth in the future.
    pub fn new(name: &str, dob: &str, today: i64) -> Result<NameQuery, QueryError> {
        let words = NameWords::new(name);
        if words.is_empty() {
            return Err(QueryError::Name(name.to_string()));
        }
        let dob = PartialDate::parse(dob)?;
        dob.check_not_after(today)?;
        Ok(NameQuery {
            words,
            dob,
            typed: name.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }
}

/// One screening query: a document, a name with a date of birth, or both
/// (a manifest row), with a nationality that is reported when it agrees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pub identifier: Option<IdQuery>,
    pub name: Option<NameQuery>,
    pub nationality: Option<&'static str>,
}

/// A notice as screening compares it.
#[derive(Debug, Clone, Default)]
pub struct Candidate<'a> {
    pub identifiers: Vec<IdentifierRef<'a>>,
    /// [`names::sketch`] of its names.
    pub sketch: String,
    pub dob: Option<PartialDate>,
    pub nationalities: Vec<&'a str>,
}

impl<'a> Candidate<'a> {
    /// A candidate from the fields a notice discloses here.
    pub fn of(fields: &KeyFields<'a>) -> Candidate<'a> {
        Candidate {
            identifiers: fields.identifiers.clone(),
            sketch: fields.sketch(),
            dob: fields.dob(),
            nationalities: fields.nationalities.clone(),
        }
    }
}

/// Whether a hit can be taken as the same data written differently, or
/// must be checked by the officer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strength {
    Exact,
    Possible,
}

/// What a hit matched on and how strongly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Match {
    /// The subject fields that agreed, as named in operator JSON.
    pub fields: Vec<String>,
    /// 0..=1, two decimals.
    pub score: f32,
    pub strength: Strength,
}

impl Query {
    /// `SCHEME:COUNTRY:VALUE` as operators type it (the value may itself
    /// contain colons).
    pub fn identifier(s: &str) -> Result<Query, QueryError> {
        let mut parts = s.splitn(3, ':');
        let (Some(sc), Some(c), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(QueryError::IdentifierFormat(s.to_string()));
        };
        if sc.trim().is_empty() || c.trim().is_empty() {
            return Err(QueryError::IdentifierFormat(s.to_string()));
        }
        Ok(Query {
            identifier: Some(IdQuery::new(sc, c, v)?),
            ..Query::default()
        })
    }

    /// A name in any order with a date of birth (full or partial).
    pub fn name(name: &str, dob: &str, today: i64) -> Result<Query, QueryError> {
        Ok(Query {
            name: Some(NameQuery::new(name, dob, today)?),
            ..Query::default()
        })
    }

    /// How an operator would read it, for the processing log and output.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("name {} born {}", n.typed, n.dob));
        }
        if let Some(i) = &self.identifier {
            parts.push(format!(
                "document {}:{}:{}",
                i.scheme.unwrap_or("any"),
                i.country.unwrap_or("any"),
                i.typed
            ));
        }
        if let Some(c) = self.nationality {
            parts.push(format!("nationality {c}"));
        }
        parts.join(", ")
    }

    /// The hashed keys whose notices may match: the document number, and
    /// the name words (alone and joined) for notices without a date of
    /// birth.
    pub fn lookup_keys(&self) -> Vec<[u8; 32]> {
        let mut keys = Vec::new();
        if let Some(i) = &self.identifier {
            keys.push(identifier_key(&i.value));
        }
        if let Some(n) = &self.name {
            keys.extend(n.words.lookup_words().into_iter().map(name_word_key));
        }
        keys
    }

    /// The packed date-of-birth ranges whose notices may match by name.
    pub fn dob_ranges(&self) -> Vec<std::ops::RangeInclusive<u32>> {
        self.name
            .as_ref()
            .map(|n| n.dob.agreeing_ranges())
            .unwrap_or_default()
    }

    /// The in-memory test the index runs on a notice's names alone.
    pub fn matches_names(&self, sketch: &str, dob: Option<&PartialDate>) -> bool {
        self.name
            .as_ref()
            .is_some_and(|n| names::match_name(&n.words, &n.dob, sketch, dob).is_some())
    }

    /// Whether `c` is a hit for this query, on what and how strongly.
    pub fn matches(&self, c: &Candidate<'_>) -> Option<Match> {
        let mut fields: Vec<String> = Vec::new();
        let mut best: Option<(f32, bool)> = None;
        let mut take = |score: f32, exact: bool| {
            if best.is_none_or(|(s, e)| (exact, score) > (e, s)) {
                best = Some((score, exact));
            }
        };
        if let Some(q) = &self.identifier {
            let found = c
                .identifiers
                .iter()
                .filter_map(|i| q.compare(i))
                .max_by(|a, b| {
                    (a.1, a.0)
                        .partial_cmp(&(b.1, b.0))
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
            if let Some((score, exact)) = found {
                fields.push(SubjectField::Identifiers.as_str().into());
                take(score, exact);
            }
        }
        if let Some(n) = &self.name {
            if let Some(m) = names::match_name(&n.words, &n.dob, &c.sketch, c.dob.as_ref()) {
                if m.alias {
                    fields.push(SubjectField::Aliases.as_str().into());
                } else {
                    fields.push(SubjectField::FamilyName.as_str().into());
                    if m.given_compared {
                        fields.push(SubjectField::GivenNames.as_str().into());
                    }
                }
                if c.dob.is_some() {
                    fields.push(SubjectField::DateOfBirth.as_str().into());
                }
                take(m.score, m.exact);
            }
        }
        let (score, exact) = best?;
        if let Some(nat) = self.nationality {
            if c.nationalities
                .iter()
                .any(|n| country::comparable(n) == nat)
            {
                fields.push(SubjectField::Nationalities.as_str().into());
            }
        }
        Some(Match {
            fields,
            score: (score * 100.0).round() / 100.0,
            strength: if exact {
                Strength::Exact
            } else {
                Strength::Possible
            },
        })
    }
}

#[cfg(test)]
mod variants;
