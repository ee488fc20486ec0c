//! The notice data model (docs/overview.md): the enumerations operators and
//! policies reason about, and the subject fields that travel as disclosures.
//!
//! The same serde derives serve the operator JSON (kebab-case, colour aliases
//! accepted on input) and the postcard body (variant index, so aliases never
//! change the signed bytes).

use serde::{Deserialize, Serialize};

/// What the notice is about; the colour names of the Interpol-style notice
/// system are accepted as aliases on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    #[serde(alias = "red")]
    Wanted,
    #[serde(alias = "yellow")]
    Missing,
    #[serde(alias = "blue")]
    Inquiry,
    #[serde(alias = "black")]
    UnidentifiedBody,
    #[serde(alias = "green")]
    Warning,
    #[serde(alias = "orange")]
    Threat,
    #[serde(alias = "purple")]
    ModusOperandi,
    #[serde(alias = "un-special")]
    Sanction,
    StolenObject,
}

impl Kind {
    /// Every kind, for "default: all kinds" policies and tests.
    pub const ALL: [Kind; 9] = [
        Kind::Wanted,
        Kind::Missing,
        Kind::Inquiry,
        Kind::UnidentifiedBody,
        Kind::Warning,
        Kind::Threat,
        Kind::ModusOperandi,
        Kind::Sanction,
        Kind::StolenObject,
    ];

    /// The canonical kebab-case name, as operators write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wanted => "wanted",
            Kind::Missing => "missing",
            Kind::Inquiry => "inquiry",
            Kind::UnidentifiedBody => "unidentified-body",
            Kind::Warning => "warning",
            Kind::Threat => "threat",
            Kind::ModusOperandi => "modus-operandi",
            Kind::Sanction => "sanction",
            Kind::StolenObject => "stolen-object",
        }
    }

    /// Parses a kind or colour alias (for CLI filters and config lists).
    pub fn parse(s: &str) -> Option<Kind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// Why the originator shares the notice; limits what receivers may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    LocateArrest,
    LocatePerson,
    Identify,
    Investigate,
    Warn,
    ThreatAlert,
    CrimeAnalysis,
    BorderCheck,
    SecurityCheck,
}

/// Handling codes: restrictions the originator attaches to use and onward
/// dissemination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handling {
    H0,
    H1,
    H2,
    H3,
}

/// Source reliability of the 4x4 grading system, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reliability {
    A,
    B,
    C,
    X,
}

/// Information accuracy of the 4x4 grading system, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Accuracy {
    #[serde(rename = "1")]
    One,
    #[serde(rename = "2")]
    Two,
    #[serde(rename = "3")]
    Three,
    #[serde(rename = "4")]
    Four,
}

/// The 4x4 grading of the information in a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grading {
    pub source: Reliability,
    pub information: Accuracy,
}

impl Grading {
    /// Parses the compact form used in config, e.g. `B2`.
    pub fn parse_compact(s: &str) -> Option<Grading> {
        let mut chars = s.chars();
        let source = match chars.next()? {
            'A' => Reliability::A,
            'B' => Reliability::B,
            'C' => Reliability::C,
            'X' => Reliability::X,
            _ => return None,
        };
        let information = match chars.next()? {
            '1' => Accuracy::One,
            '2' => Accuracy::Two,
            '3' => Accuracy::Three,
            '4' => Accuracy::Four,
            _ => return None,
        };
        chars.next().is_none().then_some(Grading {
            source,
            information,
        })
    }

    /// True when both axes are at least as good as `min` (A and 1 are best).
    pub fn meets(&self, min: &Grading) -> bool {
        self.source <= min.source && self.information <= min.information
    }
}

/// The role of the data subject, which data-protection law treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectCategory {
    Suspect,
    Convicted,
    Victim,
    Witness,
    Contact,
    MissingPerson,
    Unknown,
}

/// Whether the notice states facts or a personal assessment (which the law
/// requires to be distinguishable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nature {
    Fact,
    Assessment,
}

/// The originator's restriction on who may receive the notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    All,
    Members(Vec<String>),
}

impl Audience {
    /// True if `member` may receive the notice under the originator's audience.
    pub fn includes(&self, member: &str) -> bool {
        match self {
            Audience::All => true,
            Audience::Members(list) => list.iter().any(|m| m == member),
        }
    }

    /// True if `member` is named explicitly (what H2 requires for onward relay).
    pub fn names(&self, member: &str) -> bool {
        matches!(self, Audience::Members(list) if list.iter().any(|m| m == member))
    }
}

/// An identity document or object identifier (passport, vehicle VIN, IMEI...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub scheme: String,
    pub country: String,
    pub value: String,
}

/// Sex of the data subject as recorded by the originator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sex {
    Male,
    Female,
    Unknown,
}

/// The subject fields, each of which travels as a separate, individually
/// redactable disclosure. The names are a fixed, prefix-free set, so
/// `name || value` in the commitment preimage is unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectField {
    FamilyName,
    GivenNames,
    Aliases,
    Sex,
    DateOfBirth,
    PlaceOfBirth,
    Nationalities,
    Identifiers,
    Description,
    LastKnownLocation,
    FacialImage,
    Fingerprints,
    DnaProfile,
}

impl SubjectField {
    /// Every subject field.
    pub const ALL: [SubjectField; 13] = [
        SubjectField::FamilyName,
        SubjectField::GivenNames,
        SubjectField::Aliases,
        SubjectField::Sex,
        SubjectField::DateOfBirth,
        SubjectField::PlaceOfBirth,
        SubjectField::Nationalities,
        SubjectField::Identifiers,
        SubjectField::Description,
        SubjectField::LastKnownLocation,
        SubjectField::FacialImage,
        SubjectField::Fingerprints,
        SubjectField::DnaProfile,
    ];

    /// The biometric special categories that policies may refuse to receive,
    /// store or forward.
    pub const SPECIAL: [SubjectField; 3] = [
        SubjectField::FacialImage,
        SubjectField::Fingerprints,
        SubjectField::DnaProfile,
    ];

    /// The field name as it appears in operator JSON and in the commitment.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectField::FamilyName => "family_name",
            SubjectField::GivenNames => "given_names",
            SubjectField::Aliases => "aliases",
            SubjectField::Sex => "sex",
            SubjectField::DateOfBirth => "date_of_birth",
            SubjectField::PlaceOfBirth => "place_of_birth",
            SubjectField::Nationalities => "nationalities",
            SubjectField::Identifiers => "identifiers",
            SubjectField::Description => "description",
            SubjectField::LastKnownLocation => "last_known_location",
            SubjectField::FacialImage => "facial_image",
            SubjectField::Fingerprints => "fingerprints",
            SubjectField::DnaProfile => "dna_profile",
        }
    }

    /// True for the biometric special categories.
    pub fn is_special(self) -> bool {
        Self::SPECIAL.contains(&self)
    }
}

/// Binary subject data (images, fingerprint records), base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary(pub Vec<u8>);

impl Serialize for Binary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Binary)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
        } else {
            // One length and the bytes, not a sequence of u8 values.
            let v: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
            Ok(Binary(v.into_vec()))
        }
    }
}

/// The subject of a notice in operator JSON shape. Every field is optional:
/// a receiver holds only the fields that were disclosed to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_names: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_of_birth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<Vec<Identifier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facial_image: Option<Binary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Binary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dna_profile: Option<String>,
}

/// Encodes one field's value deterministically (postcard) for its disclosure.
fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(v)
}

impl Subject {
    /// The canonical value bytes of every present field, in field order.
    pub fn field_values(&self) -> Result<Vec<(SubjectField, Vec<u8>)>, postcard::Error> {
        use SubjectField as F;
        let mut out = Vec::new();
        let mut push =
            |f: F, v: Option<Result<Vec<u8>, postcard::Error>>| -> Result<(), postcard::Error> {
                if let Some(v) = v {
                    out.push((f, v?));
                }
                Ok(())
            };
        push(F::FamilyName, self.family_name.as_ref().map(enc))?;
        push(F::GivenNames, self.given_names.as_ref().map(enc))?;
        push(F::Aliases, self.aliases.as_ref().map(enc))?;
        push(F::Sex, self.sex.as_ref().map(enc))?;
        push(F::DateOfBirth, self.date_of_birth.as_ref().map(enc))?;
        push(F::PlaceOfBirth, self.place_of_birth.as_ref().map(enc))?;
        push(F::Nationalities, self.nationalities.as_ref().map(enc))?;
        push(F::Identifiers, self.identifiers.as_ref().map(enc))?;
        push(F::Description, self.description.as_ref().map(enc))?;
        push(
            F::LastKnownLocation,
            self.last_known_location.as_ref().map(enc),
        )?;
        push(
            F::FacialImage,
            self.facial_image.as_ref().map(|b| enc(&b.0)),
        )?;
        push(
            F::Fingerprints,
            self.fingerprints.as_ref().map(|b| enc(&b.0)),
        )?;
        push(F::DnaProfile, self.dna_profile.as_ref().map(enc))?;
        Ok(out)
    }

    /// Sets `field` from its canonical value bytes; fails if they do not decode
    /// exactly (trailing bytes included) as that field's type.
    pub fn set_from_bytes(
        &mut self,
        field: SubjectField,
        bytes: &[u8],
    ) -> Result<(), super::DecodeError> {
        use super::decode_exact as dec;
        use SubjectField as F;
        match field {
            F::FamilyName => self.family_name = Some(dec(bytes)?),
            F::GivenNames => self.given_names = Some(dec(bytes)?),
            F::Aliases => self.aliases = Some(dec(bytes)?),
            F::Sex => self.sex = Some(dec(bytes)?),
            F::DateOfBirth => self.date_of_birth = Some(dec(bytes)?),
            F::PlaceOfBirth => self.place_of_birth = Some(dec(bytes)?),
            F::Nationalities => self.nationalities = Some(dec(bytes)?),
            F::Identifiers => self.identifiers = Some(dec(bytes)?),
            F::Description => self.description = Some(dec(bytes)?),
            F::LastKnownLocation => self.last_known_location = Some(dec(bytes)?),
            F::FacialImage => self.facial_image = Some(Binary(dec(bytes)?)),
            F::Fingerprints => self.fingerprints = Some(Binary(dec(bytes)?)),
            F::DnaProfile => self.dna_profile = Some(dec(bytes)?),
        }
        Ok(())
    }

    /// True when no field is held.
    pub fn is_empty(&self) -> bool {
        *self == Subject::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_aliases_parse_to_kinds() {
        assert_eq!(Kind::parse("red"), Some(Kind::Wanted));
        assert_eq!(Kind::parse("yellow"), Some(Kind::Missing));
        assert_eq!(Kind::parse("stolen-object"), Some(Kind::StolenObject));
        assert_eq!(Kind::parse("pink"), None);
    }

    #[test]
    fn compact_grading_and_ordering() {
        let b2 = Grading::parse_compact("B2").unwrap();
        assert!(Grading::parse_compact("A1").unwrap().meets(&b2));
        assert!(!Grading::parse_compact("C1").unwrap().meets(&b2));
        assert!(!Grading::parse_compact("B3").unwrap().meets(&b2));
        assert!(Grading::parse_compact("B").is_none());
        assert!(Grading::parse_compact("B22").is_none());
    }

    #[test]
    fn every_field_round_trips_through_value_bytes() {
        let s = Subject {
            family_name: Some("Doe".into()),
            given_names: Some("John".into()),
            aliases: Some(vec!["JD".into()]),
            sex: Some(Sex::Male),
            date_of_birth: Some("1980-04-01".into()),
            place_of_birth: Some("Rotterdam".into()),
            nationalities: Some(vec!["NLD".into()]),
            identifiers: Some(vec![Identifier {
                scheme: "passport".into(),
                country: "NLD".into(),
                value: "X1".into(),
            }]),
            description: Some("tall".into()),
            last_known_location: Some("Antwerp".into()),
            facial_image: Some(Binary(vec![1, 2, 3])),
            fingerprints: Some(Binary(vec![4, 5])),
            dna_profile: Some("D8S1179:13,14".into()),
        };
        let values = s.field_values().unwrap();
        assert_eq!(values.len(), SubjectField::ALL.len());
        let mut back = Subject::default();
        for (f, v) in values {
            back.set_from_bytes(f, &v).unwrap();
        }
        assert_eq!(back, s);
    }
}
