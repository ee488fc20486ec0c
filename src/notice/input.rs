//! Operator JSON in: strict parsing and validation of a notice to issue,
//! turning it into a signed envelope. Every refusal names the field.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::envelope::*;
use super::model::*;
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

    /// Maps a serde_json error, whose text already names unknown, missing or
    /// mistyped fields, to an input error.
    pub fn from_json(e: &serde_json::Error) -> Self {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("(document)")
            .to_string();
        InputError::new(field, msg)
    }
}

/// Audience as operators write it: the string `"all"` or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AudienceInput {
    Word(String),
    List(Vec<String>),
}

/// A notice as an operator writes it (DESIGN.md §4). Unknown fields are
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
    Ok(())
}

fn valid_date(field: &str, v: &str) -> Result<(), InputError> {
    let fmt = ::time::macros::format_description!("[year]-[month]-[day]");
    ::time::Date::parse(v, &fmt)
        .map(|_| ())
        .map_err(|_| InputError::new(field, format!("`{v}` is not a date YYYY-MM-DD")))
}

impl NoticeInput {
    /// Parses operator JSON strictly.
    pub fn from_json(bytes: &[u8]) -> Result<NoticeInput, InputError> {
        serde_json::from_slice(bytes).map_err(|e| InputError::from_json(&e))
    }

    /// Checks every rule of DESIGN.md §4 and returns the audience and the
    /// parsed times (expires_at, review_at).
    pub fn validate(
        &self,
        ctx: &IssueContext<'_>,
    ) -> Result<(Audience, i64, Option<i64>), InputError> {
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
            InputError::new("expires_at", format!("`{}` is not RFC 3339", self.expires_at))
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
        if let Some(d) = &self.subject.date_of_birth {
            valid_date("subject.date_of_birth", d)?;
        }
        for (name, v) in [
            ("subject.family_name", &self.subject.family_name),
            ("subject.given_names", &self.subject.given_names),
            ("subject.place_of_birth", &self.subject.place_of_birth),
            ("subject.description", &self.subject.description),
            ("subject.last_known_location", &self.subject.last_known_location),
        ] {
            if let Some(v) = v {
                required_text(name, v)?;
            }
        }
        if let Some(ids) = &self.subject.identifiers {
            for (i, id) in ids.iter().enumerate() {
                for (part, v) in [("scheme", &id.scheme), ("country", &id.country), ("value", &id.value)] {
                    required_text(&format!("subject.identifiers[{i}].{part}"), v)?;
                }
            }
        }
        Ok((audience, expires_at, review_at))
    }

    /// Validates and seals the input as this node's next message.
    pub fn seal(
        &self,
        ctx: &IssueContext<'_>,
        key: &SigningKey,
        seq: u64,
        prev: Option<NoticeId>,
        action: Action,
    ) -> Result<(NoticeId, Envelope), InputError> {
        let (audience, expires_at, review_at) = self.validate(ctx)?;
        let (commitments, disclosures) = commit_subject(&self.subject);
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
        let encoded = body.encode().map_err(|e| InputError::new("(notice)", e.to_string()))?;
        let size: usize = encoded.len() + disclosures.iter().map(|d| d.value.len() + 24).sum::<usize>();
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
