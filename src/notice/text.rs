//! Text hygiene: the characters no field of a notice may hold, and the
//! escaping of everything the command line prints.
//!
//! Control characters (terminal escape sequences among them), bidirectional
//! overrides and isolates, and invisible characters let a sender make a
//! duty officer's terminal show something else than what the notice says:
//! a forged line in `notice list`, a name that reads backwards, two names
//! that look the same and are not. Operator input holding one is refused,
//! naming the field; a partner's notice holding one is refused and
//! audited; and whatever the CLI prints is escaped anyway.

use std::borrow::Cow;

/// True for a character no text field may hold: C0 and C1 controls (tab
/// and newline included: every field is one line), bidirectional marks,
/// embeddings, overrides and isolates, zero-width and other invisible
/// formatting characters, and line or paragraph separators.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'              // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{180E}'            // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space, non-joiner, joiner, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // isolates
            | '\u{3164}'            // Hangul filler
            | '\u{FEFF}'            // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// Why a text was refused: the first forbidden character and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("holds {} at character {position}: control, bidirectional and invisible characters are not allowed", describe(*.character))]
pub struct TextError {
    pub character: char,
    /// From 1.
    pub position: usize,
}

fn describe(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// Checks one text field.
pub fn check(s: &str) -> Result<(), TextError> {
    match s.chars().enumerate().find(|(_, c)| is_forbidden(*c)) {
        None => Ok(()),
        Some((i, c)) => Err(TextError {
            character: c,
            position: i + 1,
        }),
    }
}

/// Text made safe for a terminal: every forbidden character is shown as
/// `\u{XXXX}`, so nothing a sender wrote can move the cursor, recolour,
/// reorder or hide what the officer reads.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_forbidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_forbidden(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text made safe for a terminal: forbidden characters that JSON
/// leaves raw (it escapes only controls) are written as `\uXXXX` escapes,
/// which decode to the same string.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_forbidden) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_forbidden(c) && !c.is_ascii() {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_controls_bidi_and_invisibles_and_leaves_scripts_alone() {
        for bad in [
            "\u{1b}[31mRED",
            "a\nb",
            "\u{202E}evil",
            "Do\u{200B}e",
            "\u{2067}x",
            "\u{FEFF}",
            "tab\there",
            "\u{85}",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
            assert!(!escape(bad).chars().any(is_forbidden), "{bad:?}");
        }
        for good in [
            "Müller",
            "Иванов",
            "Παπαδόπουλος",
            "李小龙",
            "محمد",
            "O'Brien-Smith",
            "+31 70 000",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
            assert_eq!(escape(good), good);
        }
        assert_eq!(escape("a\u{1b}b"), "a\\u{001B}b");
        let e = check("ab\u{202E}").unwrap_err();
        assert_eq!((e.position, e.character), (3, '\u{202E}'));
        assert!(e.to_string().contains("U+202E"));
    }

    proptest! {
        /// Escaping leaves nothing forbidden, and JSON escaping decodes to
        /// the same value.
        #[test]
        fn escaped_text_is_clean_and_json_round_trips(s in "\\PC{0,20}[\u{0}-\u{1f}\u{200b}-\u{200f}\u{202a}-\u{202e}]{0,3}\\PC{0,5}") {
            prop_assert!(!escape(&s).chars().any(is_forbidden));
            let json = serde_json::to_string(&s).unwrap();
            let safe = escape_json(&json);
            prop_assert!(!safe.chars().any(is_forbidden));
            let back: String = serde_json::from_str(&safe).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
