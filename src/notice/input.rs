//! Operator JSON in: strict parsing and validation of a notice to issue,
//! turning it into a signed envelope. Every refusal names the field.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::envelope::*;
use super::model::*;
use super::screening::{self, PartialDate};
use crate::time::{parse_rfc3339, DAY};

/// A refusal of operator input, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct InputError {
    pub field: String,
    pub message: String,
}

impl InputError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Maps a JSON error to the field it concerns: the path where parsing
    /// failed, plus the unknown or missing field's name when serde names one.
    pub fn from_json(e: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let msg = e.inner().to_string();
        let field = error_field(&e.path().to_string(), &msg, "(document)");
        InputError::new(field, msg)
    }
}

/// The field a serde error concerns, from serde_path_to_error's path: the
/// path already ends at an unknown or mistyped key, while a missing key is
/// reported at its parent, so its name is appended. `root` names errors
/// that concern no key (syntax).
pub fn error_field(path: &str, msg: &str, root: &str) -> String {
    let path = if path == "." { "" } else { path };
    let missing = msg
        .starts_with("missing field")
        .then(|| msg.split('`').nth(1))
        .flatten();
    match (path.is_empty(), missing) {
        (true, Some(n)) => n.to_string(),
        (false, Some(n)) => format!("{path}.{n}"),
        (false, None) => path.to_string(),
        (true, None) => root.to_string(),
    }
}

/// Audience as operators write it: the string `"all"` or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AudienceInput {
    Word(String),
    List(Vec<String>),
}

/// A notice as an operator writes it (docs/overview.md). Unknown fields are
/// refused; the originator-assigned fields (origin, seq, prev, action,
/// issued_at) are not accepted from the operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    pub kind: Kind,
    pub purpose: Purpose,
    #[serde(default)]
    pub legal_basis: String,
    pub handling: Handling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_note: Option<String>,
    pub grading: Grading,
    pub subject_category: SubjectCategory,
    pub nature: Nature,
    pub audience: AudienceInput,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_at: Option<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub subject: Subject,
}

/// Operator input after every check: what is signed.
#[derive(Debug, Clone)]
pub struct Validated {
    pub audience: Audience,
    pub expires_at: i64,
    pub review_at: Option<i64>,
    /// The subject with its identity data normalised.
    pub subject: Subject,
}

/// What the issuing node knows when validating operator input.
pub struct IssueContext<'a> {
    /// This node's id (the origin).
    pub origin: &'a str,
    /// Current time, Unix seconds.
    pub now: i64,
    /// The local maximum retention for a kind, in days.
    pub max_retention_days: &'a dyn Fn(Kind) -> u32,
    /// Whether an id is a configured member.
    pub is_member: &'a dyn Fn(&str) -> bool,
}

/// Longest free-text field accepted, so one field cannot eat the body budget
/// silently.
const MAX_TEXT: usize = 8 * 1024;

fn required_text(field: &str, v: &str) -> Result<(), InputError> {
    if v.trim().is_empty() {
        return Err(InputError::new(field, "is required and must not be empty"));
    }
    if v.len() > MAX_TEXT {
        return Err(InputError::new(
            field,
            format!("is {} bytes, over the {MAX_TEXT}-byte limit", v.len()),
        ));
    }
    super::text::check(v).map_err(|e| InputError::new(field, e.to_string()))
}

/// Longest identifier value, nationality or alias list accepted.
const MAX_LIST: usize = 64;

/// A country code as stored: ISO 3166-1 alpha-3 (or an ICAO 9303 code
/// with no ISO equivalent), from any accepted form.
fn country_code(field: &str, v: &str) -> Result<String, InputError> {
    screening::country::canonical(v)
        .map(str::to_string)
        .ok_or_else(|| {
            InputError::new(
                field,
                format!(
                    "`{v}` is not a country code (ISO 3166-1 alpha-3, alpha-2 or numeric, or ICAO 9303)"
                ),
            )
        })
}

/// The subject as it is signed: countries as alpha-3, identifier schemes
/// by their canonical names, a date of birth (full or partial) that is a
/// day of the calendar and not in the future. Every refusal names the
/// field.
fn normalized_subject(s: &Subject, now: i64) -> Result<Subject, InputError> {
    let mut out = s.clone();
    if let Some(d) = &s.date_of_birth {
        let field = "subject.date_of_birth";
        let date = PartialDate::parse(d).map_err(|e| InputError::new(field, e.to_string()))?;
        date.check_not_after(now)
            .map_err(|e| InputError::new(field, e.to_string()))?;
        out.date_of_birth = Some(date.to_string());
    }
    for (name, v) in [
        ("subject.family_name", &s.family_name),
        ("subject.given_names", &s.given_names),
        ("subject.place_of_birth", &s.place_of_birth),
        ("subject.description", &s.description),
        ("subject.last_known_location", &s.last_known_location),
        ("subject.dna_profile", &s.dna_profile),
    ] {
        if let Some(v) = v {
            required_text(name, v)?;
        }
    }
    if let Some(list) = &s.aliases {
        if list.len() > MAX_LIST {
            return Err(InputError::new(
                "subject.aliases",
                format!("more than {MAX_LIST}"),
            ));
        }
        for (i, a) in list.iter().enumerate() {
            required_text(&format!("subject.aliases[{i}]"), a)?;
        }
    }
    if let Some(list) = &s.nationalities {
        if list.len() > MAX_LIST {
            return Err(InputError::new(
                "subject.nationalities",
                format!("more than {MAX_LIST}"),
            ));
        }
        let mut codes = Vec::with_capacity(list.len());
        for (i, c) in list.iter().enumerate() {
            let code = country_code(&format!("subject.nationalities[{i}]"), c)?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        out.nationalities = Some(codes);
    }
    if let Some(ids) = &s.identifiers {
        if ids.len() > MAX_LIST {
            return Err(InputError::new(
                "subject.identifiers",
                format!("more than {MAX_LIST}"),
            ));
        }
        let mut normalized = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let field = |part: &str| format!("subject.identifiers[{i}].{part}");
            for (part, v) in [
                ("scheme", &id.scheme),
                ("country", &id.country),
                ("value", &id.value),
            ] {
                required_text(&field(part), v)?;
            }
            let scheme = screening::scheme::canonical(&id.scheme).ok_or_else(|| {
                InputError::new(
                    field("scheme"),
                    format!(
                        "`{}` is not an identifier scheme (known: {})",
                        id.scheme,
                        screening::scheme::names()
                    ),
                )
            })?;
            if screening::identifier_value(&id.value).is_empty() {
                return Err(InputError::new(
                    field("value"),
                    format!("`{}` has no letter or digit", id.value),
                ));
            }
            normalized.push(Identifier {
                scheme: scheme.to_string(),
                country: country_code(&field("country"), &id.country)?,
                value: id.value.trim().to_string(),
            });
        }
        out.identifiers = Some(normalized);
    }
    Ok(out)
}

impl NoticeInput {
    /// Parses operator JSON strictly.
    pub fn from_json(bytes: &[u8]) -> Result<NoticeInput, InputError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let input: NoticeInput =
            serde_path_to_error::deserialize(de).map_err(|e| InputError::from_json(&e))?;
        Ok(input)
    }

    /// Parses a JSON array of notices strictly; errors name the item
    /// (`[3].legal_basis`).
    pub fn from_json_array(bytes: &[u8]) -> Result<Vec<NoticeInput>, InputError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let inputs: Vec<NoticeInput> =
            serde_path_to_error::deserialize(&mut *de).map_err(|e| InputError::from_json(&e))?;
        de.end()
            .map_err(|e| InputError::new("(document)", format!("trailing characters: {e}")))?;
        if inputs.is_empty() {
            return Err(InputError::new(
                "(document)",
                "an empty list issues nothing",
            ));
        }
        Ok(inputs)
    }

    /// Checks every rule of docs/overview.md and returns what is signed: the
    /// audience, the parsed times (expires_at, review_at) and the subject
    /// with its identity data normalised (countries as alpha-3, schemes by
    /// canonical name, the date of birth as written by [`PartialDate`]).
    pub fn validate(&self, ctx: &IssueContext<'_>) -> Result<Validated, InputError> {
        required_text("legal_basis", &self.legal_basis)?;
        required_text("summary", &self.summary)?;
        required_text("case_ref", &self.case_ref)?;
        required_text("contact", &self.contact)?;
        match (&self.handling, &self.handling_note) {
            (Handling::H3, None) => {
                return Err(InputError::new(
                    "handling_note",
                    "is required when handling is H3",
                ))
            }
            (_, Some(note)) => required_text("handling_note", note)?,
            _ => {}
        }
        let audience = match &self.audience {
            AudienceInput::Word(w) if w == "all" => Audience::All,
            AudienceInput::Word(w) => {
                return Err(InputError::new(
                    "audience",
                    format!("`{w}` is neither \"all\" nor a list of member ids"),
                ))
            }
            AudienceInput::List(list) => {
                if list.is_empty() {
                    return Err(InputError::new("audience", "is an empty list"));
                }
                for m in list {
                    if m == ctx.origin {
                        return Err(InputError::new(
                            "audience",
                            format!("`{m}` is this node itself"),
                        ));
                    }
                    if !(ctx.is_member)(m) {
                        return Err(InputError::new(
                            "audience",
                            format!("`{m}` is not a configured member"),
                        ));
                    }
                }
                let mut sorted = list.clone();
                sorted.sort();
                sorted.dedup();
                Audience::Members(sorted)
            }
        };
        if self.handling == Handling::H2 && audience == Audience::All {
            return Err(InputError::new(
                "audience",
                "must name members explicitly when handling is H2 (not \"all\")",
            ));
        }
        let expires_at = parse_rfc3339(&self.expires_at).ok_or_else(|| {
            InputError::new(
                "expires_at",
                format!("`{}` is not RFC 3339", self.expires_at),
            )
        })?;
        if expires_at <= ctx.now {
            return Err(InputError::new("expires_at", "is not in the future"));
        }
        let max_days = (ctx.max_retention_days)(self.kind);
        if expires_at > ctx.now + i64::from(max_days) * DAY {
            return Err(InputError::new(
                "expires_at",
                format!(
                    "is beyond the local maximum retention of {max_days} days for kind {}",
                    self.kind.as_str()
                ),
            ));
        }
        let review_at = match &self.review_at {
            None => None,
            Some(r) => {
                let t = parse_rfc3339(r).ok_or_else(|| {
                    InputError::new("review_at", format!("`{r}` is not RFC 3339"))
                })?;
                if t > expires_at {
                    return Err(InputError::new("review_at", "is after expires_at"));
                }
                Some(t)
            }
        };
        let subject = normalized_subject(&self.subject, ctx.now)?;
        Ok(Validated {
            audience,
            expires_at,
            review_at,
            subject,
        })
    }

    /// Validates and seals the input as this node's next message, with the
    /// commitments' salts drawn from `salts`.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &self,
        ctx: &IssueContext<'_>,
        key: &SigningKey,
        seq: u64,
        prev: Option<NoticeId>,
        action: Action,
        salts: &mut dyn rand::Rng,
    ) -> Result<(NoticeId, Envelope), InputError> {
        let Validated {
            audience,
            expires_at,
            review_at,
            subject,
        } = self.validate(ctx)?;
        let (commitments, disclosures) = commit_subject(&subject, salts)
            .map_err(|e| InputError::new("subject", format!("cannot be encoded: {e}")))?;
        let body = Body {
            origin: ctx.origin.to_string(),
            seq,
            prev,
            action,
            kind: self.kind,
            purpose: self.purpose,
            legal_basis: self.legal_basis.clone(),
            handling: self.handling,
            handling_note: self.handling_note.clone(),
            grading: self.grading,
            subject_category: self.subject_category,
            nature: self.nature,
            audience,
            issued_at: ctx.now,
            expires_at,
            review_at,
            summary: self.summary.clone(),
            case_ref: self.case_ref.clone(),
            contact: self.contact.clone(),
            commitments,
        };
        let encoded = body
            .encode()
            .map_err(|e| InputError::new("(notice)", e.to_string()))?;
        let size: usize = encoded.len()
            + disclosures
                .iter()
                .map(|d| d.value.len() + 24)
                .sum::<usize>();
        if size > MAX_BODY {
            return Err(InputError::new(
                "subject",
                format!("notice is {size} bytes, over the {MAX_BODY}-byte limit"),
            ));
        }
        let id = NoticeId::of_body(&encoded);
        Ok((id, seal(key, encoded, disclosures)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::verify;

    const NOW: i64 = 1_800_000_000;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "kind": "wanted", "purpose": "locate-arrest", "legal_basis": "Warrant 1",
            "handling": "H1", "grading": {"source": "B", "information": "2"},
            "subject_category": "suspect", "nature": "fact", "audience": ["bravo"],
            "expires_at": crate::time::rfc3339(NOW + 30 * DAY),
            "summary": "Robbery", "case_ref": "C-1", "contact": "+31 desk",
            "subject": {"family_name": "Doe", "date_of_birth": "1980-04-01",
                "identifiers": [{"scheme": "passport", "country": "NLD", "value": "X1"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<(), InputError> {
        let input = NoticeInput::from_json(v.to_string().as_bytes())?;
        let retention = |_| 365;
        let is_member = |m: &str| m == "bravo" || m == "charlie";
        let ctx = IssueContext {
            origin: "alpha",
            now: NOW,
            max_retention_days: &retention,
            is_member: &is_member,
        };
        input.validate(&ctx).map(|_| ())
    }

    /// alpha's context, with every recipient a member.
    fn open_ctx() -> IssueContext<'static> {
        IssueContext {
            origin: "alpha",
            now: NOW,
            max_retention_days: &|_| 365,
            is_member: &|_| true,
        }
    }

    /// `input` sealed as alpha's first notice, and the fixed key it was
    /// signed with.
    fn seal_first(input: &NoticeInput) -> (SigningKey, Result<(NoticeId, Envelope), InputError>) {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let sealed = input.seal(
            &open_ctx(),
            &key,
            1,
            None,
            Action::Issue,
            &mut crate::identity::os_rng(),
        );
        (key, sealed)
    }

    fn field_of(v: serde_json::Value) -> String {
        check(v).expect_err("must be refused").field
    }

    fn with(path: &[&str], value: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = value;
        v
    }

    fn without(field: &str) -> serde_json::Value {
        let mut v = base();
        v.as_object_mut().unwrap().remove(field);
        v
    }

    #[test]
    fn a_complete_notice_is_accepted_with_colour_alias() {
        check(base()).unwrap();
        check(with(&["kind"], "red".into())).unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (with(&["colour"], "red".into()), "colour"),
            (
                with(&["subject", "shoe_size"], 44.into()),
                "subject.shoe_size",
            ),
            (without("legal_basis"), "legal_basis"),
            (with(&["legal_basis"], " ".into()), "legal_basis"),
            (without("summary"), "summary"),
            (without("contact"), "contact"),
            (without("case_ref"), "case_ref"),
            (without("kind"), "kind"),
            (with(&["kind"], "pink".into()), "kind"),
            (
                with(&["grading", "information"], "5".into()),
                "grading.information",
            ),
            (
                with(&["subject", "fingerprints"], "not base64!".into()),
                "subject.fingerprints",
            ),
            (
                with(&["expires_at"], crate::time::rfc3339(NOW - 1).into()),
                "expires_at",
            ),
            (
                with(
                    &["expires_at"],
                    crate::time::rfc3339(NOW + 366 * DAY).into(),
                ),
                "expires_at",
            ),
            (with(&["expires_at"], "tomorrow".into()), "expires_at"),
            (
                with(&["review_at"], crate::time::rfc3339(NOW + 40 * DAY).into()),
                "review_at",
            ),
            (with(&["handling"], "H3".into()), "handling_note"),
            (
                {
                    let mut v = with(&["handling"], "H2".into());
                    v["audience"] = "all".into();
                    v
                },
                "audience",
            ),
            (with(&["audience"], serde_json::json!(["zulu"])), "audience"),
            (
                with(&["audience"], serde_json::json!(["alpha"])),
                "audience",
            ),
            (with(&["audience"], serde_json::json!([])), "audience"),
            (with(&["summary"], "Robbery\u{1b}[2J".into()), "summary"),
            (
                with(&["subject", "family_name"], "Doe\u{202e}".into()),
                "subject.family_name",
            ),
            (with(&["contact"], "+31\u{200b}".into()), "contact"),
            (with(&["audience"], "everyone".into()), "audience"),
            (
                with(&["subject", "date_of_birth"], "01/04/1980".into()),
                "subject.date_of_birth",
            ),
            (
                with(&["subject", "date_of_birth"], "-1980-04-01".into()),
                "subject.date_of_birth",
            ),
            (
                with(&["subject", "date_of_birth"], "2999-01-01".into()),
                "subject.date_of_birth",
            ),
            (
                with(
                    &["subject", "nationalities"],
                    serde_json::json!(["NLD", "XQ"]),
                ),
                "subject.nationalities[1]",
            ),
            (
                with(
                    &["subject", "identifiers"],
                    serde_json::json!([{"scheme": "Passport No", "country": "ZZ", "value": "X"}]),
                ),
                "subject.identifiers[0].country",
            ),
            (
                with(
                    &["subject", "identifiers"],
                    serde_json::json!([{"scheme": "shoe size", "country": "NLD", "value": "X"}]),
                ),
                "subject.identifiers[0].scheme",
            ),
            (
                with(
                    &["subject", "identifiers"],
                    serde_json::json!([{"scheme": "passport", "country": "", "value": "X"}]),
                ),
                "subject.identifiers[0].country",
            ),
        ];
        for (v, field) in cases {
            assert_eq!(field_of(v.clone()), field, "for {v}");
        }
    }

    #[test]
    fn identity_data_is_stored_normalised() {
        let mut v = base();
        v["subject"]["nationalities"] = serde_json::json!(["nl", "528", "D"]);
        v["subject"]["date_of_birth"] = "1980-04".into();
        v["subject"]["identifiers"] =
            serde_json::json!([{"scheme": "Passport No.", "country": "D", "value": " C01X00T47 "}]);
        let input = NoticeInput::from_json(v.to_string().as_bytes()).unwrap();
        let s = input.validate(&open_ctx()).unwrap().subject;
        assert_eq!(s.nationalities, Some(vec!["NLD".into(), "DEU".into()]));
        assert_eq!(s.date_of_birth.as_deref(), Some("1980-04"));
        let id = &s.identifiers.unwrap()[0];
        assert_eq!(
            (id.scheme.as_str(), id.country.as_str(), id.value.as_str()),
            ("passport", "DEU", "C01X00T47")
        );
        let (key, sealed) = seal_first(&input);
        let (_, env) = sealed.unwrap();
        let held = verify(&env, |_| Some(key.verifying_key())).unwrap();
        assert_eq!(held.subject.identifiers.unwrap()[0].country, "DEU");
    }

    #[test]
    fn h3_with_note_and_h2_with_named_audience_are_fine() {
        let mut v = with(&["handling"], "H3".into());
        v["handling_note"] = "Only for the border police".into();
        check(v).unwrap();
        check(with(&["handling"], "H2".into())).unwrap();
    }

    #[test]
    fn oversized_notice_is_refused_naming_the_subject() {
        use base64::Engine;
        let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; MAX_BODY + 1]);
        let input = NoticeInput::from_json(
            with(&["subject", "facial_image"], big.into())
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let err = seal_first(&input).1.unwrap_err();
        assert_eq!(err.field, "subject");
    }

    #[test]
    fn sealed_notice_verifies_with_the_subject_intact() {
        let input = NoticeInput::from_json(base().to_string().as_bytes()).unwrap();
        let (key, sealed) = seal_first(&input);
        let (id, env) = sealed.unwrap();
        let v = verify(&env, |o| (o == "alpha").then(|| key.verifying_key())).unwrap();
        assert_eq!(v.id, id);
        assert_eq!(v.subject, input.subject);
        assert_eq!(v.body.issued_at, NOW);
    }
}
