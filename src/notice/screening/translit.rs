//! ICAO 9303 transliteration: names and document numbers written in Latin
//! with diacritics, in Cyrillic or in Greek, brought to the plain Latin
//! letters of a machine-readable travel document (ICAO Doc 9303 Part 3,
//! section 6), so `Müller` = `MUELLER`, `Søren` = `SOEREN`, `Иванов` =
//! `IVANOV` and `Παπαδόπουλος` = `PAPADOPOULOS`.
//!
//! Pure functions; the output is lowercase ASCII letters and digits, with
//! anything else left as a word break (or, for letters of other scripts,
//! kept as they are so they still compare equal to themselves).

use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

/// The ICAO 9303 transliteration of one lowercase character that is not
/// plain ASCII and that compatibility decomposition does not reduce to a
/// base letter: the Latin letters the table writes with several letters,
/// the Latin letters without a decomposition, Cyrillic and Greek.
fn special(c: char) -> Option<&'static str> {
    Some(match c {
        // Latin (Doc 9303 Part 3, table A): the letters written as two.
        'ä' => "ae",
        'å' => "aa",
        'æ' => "ae",
        'ö' => "oe",
        'ø' => "oe",
        'œ' => "oe",
        'ü' => "ue",
        'ß' => "ss",
        'þ' => "th",
        'ĳ' => "ij",
        // Latin letters with no decomposition.
        'đ' | 'ð' => "d",
        'ħ' => "h",
        'ı' => "i",
        'ł' | 'ŀ' => "l",
        'ŋ' => "n",
        'ŧ' => "t",
        'ſ' => "s",
        // Cyrillic (table B), with the Ukrainian, Belarusian, Serbian and
        // Macedonian letters.
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' | 'ґ' | 'ѓ' => "g",
        'д' | 'ђ' => "d",
        'е' | 'ё' | 'э' => "e",
        'є' => "ie",
        'ж' => "zh",
        'з' => "z",
        'ѕ' | 'џ' => "dz",
        'и' | 'і' | 'ї' | 'й' => "i",
        'ј' => "j",
        'к' | 'ќ' => "k",
        'л' => "l",
        'љ' => "lj",
        'м' => "m",
        'н' => "n",
        'њ' => "nj",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'ћ' => "c",
        'у' | 'ў' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ъ' => "ie",
        'ы' => "y",
        'ь' => "",
        'ю' => "iu",
        'я' => "ia",
        // Greek (table C); accented vowels decompose to these first.
        'α' => "a",
        'β' => "v",
        'γ' => "g",
        'δ' => "d",
        'ε' => "e",
        'ζ' => "z",
        'η' => "i",
        'θ' => "th",
        'ι' => "i",
        'κ' => "k",
        'λ' => "l",
        'μ' => "m",
        'ν' => "n",
        'ξ' => "x",
        'ο' => "o",
        'π' => "p",
        'ρ' => "r",
        'σ' | 'ς' => "s",
        'τ' => "t",
        'υ' => "y",
        'φ' => "f",
        'χ' => "ch",
        'ψ' => "ps",
        'ω' => "o",
        _ => return None,
    })
}

/// True for the apostrophes ICAO 9303 omits inside a name (`O'Brien` is
/// `OBRIEN`), rather than treating them as a word break.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | '‘' | 'ʼ' | '`' | '´')
}

/// Appends the transliteration of `s` to `out`: lowercase ASCII letters and
/// digits, a space for every other character (a word break), apostrophes
/// dropped. Letters of scripts the tables do not cover are kept, lowercased.
pub fn push_latin(out: &mut String, s: &str) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii() {
            push_ascii(out, c);
            continue;
        }
        // Greek `γ` before `γ`, `κ`, `ξ` or `χ` is N (`Ευάγγελος` is
        // EVANGELOS).
        if matches!(c, 'γ' | 'Γ')
            && chars
                .peek()
                .is_some_and(|n| matches!(n, 'γ' | 'κ' | 'ξ' | 'χ' | 'Γ' | 'Κ' | 'Ξ' | 'Χ'))
        {
            out.push('n');
            continue;
        }
        for l in c.to_lowercase() {
            push_lower(out, l);
        }
    }
}

fn push_ascii(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c.to_ascii_lowercase());
    } else if !is_apostrophe(c) {
        out.push(' ');
    }
}

/// One lowercase non-ASCII character: the table, else its compatibility
/// decomposition without combining marks (each part through the table
/// again, for Greek vowels with accents), else the letter itself.
fn push_lower(out: &mut String, c: char) {
    // Greek digraphs as on Greek passports (ELOT 743): `ου` is OU, `αυ`
    // and `ευ` are AV and EV.
    if matches!(c, 'υ' | 'ύ') {
        match out.chars().last() {
            Some('o') => return out.push('u'),
            Some('a' | 'e') => return out.push('v'),
            _ => {}
        }
    }
    if let Some(t) = special(c) {
        out.push_str(t);
        return;
    }
    if is_apostrophe(c) || is_combining_mark(c) {
        return;
    }
    let mut decomposed = false;
    for d in std::iter::once(c).nfkd() {
        if d == c {
            break;
        }
        decomposed = true;
        // `ŉ` decomposes to `ʼn`: its apostrophe is dropped like a typed
        // one, or the key would change when normalised again.
        if is_combining_mark(d) || is_apostrophe(d) {
            continue;
        }
        if d.is_ascii() {
            push_ascii(out, d);
        } else if let Some(t) = d.to_lowercase().find_map(special) {
            out.push_str(t);
        } else if d.is_alphanumeric() {
            out.extend(d.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    if decomposed {
        return;
    }
    if c.is_alphanumeric() {
        out.push(c);
    } else {
        out.push(' ');
    }
}

/// The transliteration of `s` as a new string.
pub fn latin(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_latin(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> String {
        latin(s).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn icao_latin_table() {
        for (input, want) in [
            ("Müller", "mueller"),
            ("Søren", "soeren"),
            ("Straße", "strasse"),
            ("Åse", "aase"),
            ("Ærø", "aeroe"),
            ("Þór", "thor"),
            ("Łukasz Wałęsa", "lukasz walesa"),
            ("François", "francois"),
            ("Núñez", "nunez"),
            ("Đorđević", "dordevic"),
            ("O'Brien-Smith", "obrien smith"),
            ("İlkay Gündoğan", "ilkay guendogan"),
        ] {
            assert_eq!(words(input), want, "{input}");
        }
    }

    #[test]
    fn a_letter_with_an_apostrophe_in_it_is_the_letter_typed_either_way() {
        // `ŉ` decomposes to `ʼn`; both forms, and the plain letter, are `n`.
        assert_eq!(latin("ŉ"), "n");
        assert_eq!(latin("ʼn"), "n");
        assert_eq!(latin(&latin("ŉ")), latin("ŉ"));
    }

    #[test]
    fn icao_cyrillic_and_greek_tables() {
        for (input, want) in [
            ("Иванов", "ivanov"),
            ("Юлия Щербакова", "iuliia shcherbakova"),
            ("Жуков", "zhukov"),
            ("Хрущёв", "khrushchev"),
            ("Олександр Ґонта", "oleksandr gonta"),
            ("Љубомир Њего", "ljubomir njego"),
            ("Παπαδόπουλος", "papadopoulos"),
            ("Χρήστος", "christos"),
            ("Ψαρράς", "psarras"),
            ("Ευάγγελος Γεωργίου", "evangelos georgiou"),
        ] {
            assert_eq!(words(input), want, "{input}");
        }
    }

    #[test]
    fn other_scripts_are_kept_and_punctuation_breaks_words() {
        assert_eq!(words("李 小龙"), "李 小龙");
        assert_eq!(words("A.B,C;D"), "a b c d");
        assert_eq!(words("x\u{301}"), "x");
    }
}
