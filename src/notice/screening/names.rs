//! Name matching: whether a name as an officer typed it (any order, any
//! punctuation, any script ICAO 9303 transliterates, one typing error)
//! names the same person as a notice's name, and how strongly.
//!
//! Names are compared in a *match form*: transliterated to Latin
//! ([`super::translit`]), split into words, and each word folded so the
//! spellings a name takes on documents meet: `e` after `a`, `o` or `u` is
//! dropped (`MUELLER` is the ICAO form of `Müller`, and `Muller` is how it
//! is typed without the umlaut) and a doubled letter counts once
//! (`Janssen`, `Jansen`). Pure functions.

use super::dob::PartialDate;
use super::translit;

/// Most words of one name part compared (family or given names); a name
/// longer than this is compared on its first words, which bounds the work
/// per comparison whatever a notice holds.
pub const MAX_WORDS: usize = 8;

/// Most names (the name and its aliases) of one notice compared.
pub const MAX_NAMES: usize = 8;

/// Most words of a query's name: a family and a given name of
/// [`MAX_WORDS`] each.
pub const MAX_QUERY_WORDS: usize = 2 * MAX_WORDS;

/// Longest word kept, in bytes of its match form.
const MAX_WORD: usize = 40;

/// Particles that do not identify a family on their own: a family name
/// matched only on one of them is no match.
const PARTICLES: &[&str] = &[
    "al", "ap", "ben", "bin", "da", "dal", "de", "del", "della", "den", "der", "di", "do", "dos",
    "du", "el", "la", "le", "los", "mac", "mc", "st", "te", "ten", "ter", "van", "von", "y", "zu",
];

/// Appends the fold of one transliterated word to `out`.
fn push_folded(out: &mut String, word: &str) {
    let start = out.len();
    let mut last: Option<char> = None;
    for c in word.chars() {
        if c == 'e' && matches!(last, Some('a' | 'o' | 'u')) {
            continue;
        }
        if Some(c) == last {
            continue;
        }
        if out.len() - start + c.len_utf8() > MAX_WORD {
            break;
        }
        out.push(c);
        last = Some(c);
    }
}

/// The fold of one word.
pub fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    push_folded(&mut out, word);
    out
}

/// The transliterated words of a name, at most `max`, each cut to
/// [`MAX_WORD`] bytes.
fn latin_words(name: &str, max: usize) -> Vec<String> {
    translit::latin(name)
        .split_whitespace()
        .take(max)
        .map(|w| {
            let mut end = w.len().min(MAX_WORD);
            while !w.is_char_boundary(end) {
                end -= 1;
            }
            w[..end].to_string()
        })
        .collect()
}

/// The match form of a name: its folded words, separated by one space.
pub fn match_form(name: &str) -> String {
    latin_words(name, MAX_QUERY_WORDS)
        .iter()
        .map(|w| fold(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word of a name, owned: as transliterated, and folded. Both are
/// compared: the fold meets spellings (`Mueller`, `Muller`), the plain
/// form keeps a typing error next to a folded letter at one edit (`Noel`,
/// `Niel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub plain: String,
    pub folded: String,
}

impl Word {
    fn new(plain: &str) -> Word {
        Word {
            plain: plain.to_string(),
            folded: fold(plain),
        }
    }

    /// Several words joined into one (`van der Berg` as `vanderberg`).
    fn joined(words: &[W<'_>]) -> Word {
        let plain: String = words.iter().map(|w| w.plain).collect();
        let folded = fold(&words.iter().map(|w| w.folded).collect::<String>());
        Word { plain, folded }
    }

    fn w(&self) -> W<'_> {
        W {
            plain: &self.plain,
            folded: &self.folded,
        }
    }
}

/// A word borrowed, from a query or from a notice's sketch: comparing a
/// query against a notice allocates nothing in the common case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct W<'a> {
    plain: &'a str,
    folded: &'a str,
}

/// The words of a query's name, prepared once: each word, and every run
/// of two or more neighbouring words joined (compared against family
/// names written as one word or several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameWords {
    pub words: Vec<Word>,
    /// (first, end, joined) for each run `words[first..end]`.
    runs: Vec<(usize, usize, Word)>,
}

impl NameWords {
    /// The words of a name as typed, at most [`MAX_QUERY_WORDS`].
    pub fn new(name: &str) -> NameWords {
        let words: Vec<Word> = latin_words(name, MAX_QUERY_WORDS)
            .iter()
            .map(|w| Word::new(w))
            .collect();
        let mut runs = Vec::new();
        let ws: Vec<W<'_>> = words.iter().map(Word::w).collect();
        for i in 0..ws.len() {
            // Family names of more than four words are not joined.
            for j in i + 2..=ws.len().min(i + 4) {
                runs.push((i, j, Word::joined(&ws[i..j])));
            }
        }
        NameWords { words, runs }
    }

    /// True when the name has no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The folded words and runs: what a query looks up among notices
    /// indexed by family words.
    pub fn lookup_words(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .words
            .iter()
            .chain(self.runs.iter().map(|(_, _, w)| w))
            .map(|w| w.folded.as_str())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The names of a notice as the store keeps them for screening: one line
/// per name, `plain family|plain given|folded family|folded given`, words
/// separated by one space. An alias written `FAMILY, GIVEN` is split at
/// the comma; one without a comma is all family words.
pub fn sketch(family: Option<&str>, given: Option<&str>, aliases: &[&str]) -> String {
    let mut out = String::new();
    let mut push = |f: &str, g: &str| {
        let (f, g) = (latin_words(f, MAX_WORDS), latin_words(g, MAX_WORDS));
        if f.is_empty() && g.is_empty() {
            return;
        }
        let folded = |ws: &[String]| ws.iter().map(|w| fold(w)).collect::<Vec<_>>().join(" ");
        let line = format!(
            "{}|{}|{}|{}",
            f.join(" "),
            g.join(" "),
            folded(&f),
            folded(&g)
        );
        if out.lines().any(|l| l == line) {
            return;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    };
    if family.is_some() || given.is_some() {
        push(family.unwrap_or(""), given.unwrap_or(""));
    }
    for a in aliases.iter().take(MAX_NAMES.saturating_sub(1)) {
        match a.split_once(',') {
            Some((f, g)) => push(f, g),
            None => push(a, ""),
        }
    }
    out
}

/// Up to [`MAX_WORDS`] words of one name part, on the stack.
#[derive(Debug, Clone, Copy, Default)]
struct Part<'a> {
    words: [W<'a>; MAX_WORDS],
    len: usize,
}

impl<'a> Part<'a> {
    fn of(plain: &'a str, folded: &'a str) -> Part<'a> {
        let mut p = Part::default();
        let pairs = plain
            .split(' ')
            .filter(|w| !w.is_empty())
            .zip(folded.split(' ').filter(|w| !w.is_empty()));
        for (plain, folded) in pairs.take(MAX_WORDS) {
            p.words[p.len] = W { plain, folded };
            p.len += 1;
        }
        p
    }

    fn words(&self) -> &[W<'a>] {
        &self.words[..self.len]
    }
}

/// The family and given words of one sketch line; a name with no family
/// words is matched on its given words as the family.
fn parse_line(line: &str) -> (Part<'_>, Part<'_>) {
    let mut parts = line.splitn(4, '|');
    let (pf, pg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (ff, fg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (f, g) = (Part::of(pf, ff), Part::of(pg, fg));
    if f.len == 0 {
        (g, Part::default())
    } else {
        (f, g)
    }
}

/// The folded family words of every name in a sketch, and their joined
/// forms when a family name has several words: what a notice without a
/// date of birth is indexed under.
pub fn sketch_family_words(sketch: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in sketch.lines().take(MAX_NAMES) {
        let (f, _) = parse_line(line);
        out.extend(f.words().iter().map(|w| w.folded.to_string()));
        if f.len > 1 {
            out.push(Word::joined(f.words()).folded);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// True when `a` becomes `b` by at most one insertion, deletion,
/// substitution or swap of neighbours (optimal string alignment distance
/// at most 1).
pub fn within_one_edit<T: Eq>(a: &[T], b: &[T]) -> bool {
    if a == b {
        return true;
    }
    let (la, lb) = (a.len(), b.len());
    if la.abs_diff(lb) > 1 {
        return false;
    }
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if la == lb {
        a[p + 1..] == b[p + 1..]
            || (p + 1 < la && a[p] == b[p + 1] && a[p + 1] == b[p] && a[p + 2..] == b[p + 2..])
    } else if la < lb {
        a[p..] == b[p + 1..]
    } else {
        a[p + 1..] == b[p..]
    }
}

fn one_edit_str(a: &str, b: &str) -> bool {
    if a.len().abs_diff(b.len()) > 4 {
        return false;
    }
    if a.is_ascii() && b.is_ascii() {
        within_one_edit(a.as_bytes(), b.as_bytes())
    } else {
        let (x, y): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        within_one_edit(&x, &y)
    }
}

/// How two words compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmp {
    Differs,
    OneEdit,
    Same,
}

/// Compares two words: the same when their folds are equal; one edit
/// apart (when `edits` allows it) when their plain or folded forms are,
/// and the longer word has at least three letters, so one typing error
/// leaves it recognisable.
fn compare(a: W<'_>, b: W<'_>, edits: bool) -> Cmp {
    if a.folded == b.folded {
        return Cmp::Same;
    }
    if !edits || a.plain.len().max(b.plain.len()) < 3 {
        return Cmp::Differs;
    }
    if one_edit_str(a.folded, b.folded) || one_edit_str(a.plain, b.plain) {
        Cmp::OneEdit
    } else {
        Cmp::Differs
    }
}

/// How the family name of one notice name was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    /// Query words used, as a bit set.
    used: u32,
    edits: u8,
    /// Every family word matched (or the whole family name, joined).
    complete: bool,
}

impl Family {
    /// Better: complete before partial, then fewer edits.
    fn better_than(&self, other: &Family) -> bool {
        (self.complete, std::cmp::Reverse(self.edits))
            > (other.complete, std::cmp::Reverse(other.edits))
    }
}

fn significant(w: W<'_>) -> bool {
    w.folded.len() >= 3 && !PARTICLES.contains(&w.plain)
}

/// Matches family words `f` against the query: word by word, or the whole
/// family name against a run of neighbouring query words joined.
fn match_family(q: &NameWords, f: &[W<'_>], edits: bool) -> Option<Family> {
    if f.is_empty() {
        return None;
    }
    let qw = |j: usize| q.words[j].w();
    let n = q.words.len().min(MAX_QUERY_WORDS);
    let mut best: Option<Family> = None;
    let mut consider = |c: Family| {
        if best.is_none_or(|b| c.better_than(&b)) {
            best = Some(c);
        }
    };
    // Word by word: exact matches first, then at most one word with an edit.
    let mut used = 0u32;
    let mut matched = [false; MAX_WORDS];
    let mut significant_hit = false;
    for (i, fw) in f.iter().enumerate() {
        if let Some(j) =
            (0..n).find(|&j| used & (1 << j) == 0 && compare(qw(j), *fw, false) == Cmp::Same)
        {
            used |= 1 << j;
            matched[i] = true;
            significant_hit |= significant(*fw);
        }
    }
    let mut word_edits = 0u8;
    if edits {
        for (i, fw) in f.iter().enumerate() {
            if matched[i] || word_edits > 0 {
                continue;
            }
            if let Some(j) =
                (0..n).find(|&j| used & (1 << j) == 0 && compare(qw(j), *fw, true) == Cmp::OneEdit)
            {
                used |= 1 << j;
                matched[i] = true;
                word_edits = 1;
                significant_hit |= significant(*fw);
            }
        }
    }
    let all = matched[..f.len()].iter().all(|m| *m);
    if all || (f.len() > 1 && significant_hit) {
        consider(Family {
            used,
            edits: word_edits,
            complete: all,
        });
    }
    if all && word_edits == 0 {
        return best;
    }
    // Joined: the whole family name against single query words (when it
    // has several words) and runs of query words.
    let owned;
    let joined = if f.len() == 1 {
        f[0]
    } else {
        owned = Word::joined(f);
        owned.w()
    };
    let mut try_span = |i: usize, j: usize, w: W<'_>| {
        let c = compare(w, joined, edits);
        if c != Cmp::Differs {
            consider(Family {
                used: ((1u32 << j) - 1) & !((1u32 << i) - 1),
                edits: u8::from(c == Cmp::OneEdit),
                complete: true,
            });
        }
    };
    if f.len() > 1 {
        for i in 0..n {
            try_span(i, i + 1, qw(i));
        }
    }
    for (i, j, w) in &q.runs {
        try_span(*i, *j, w.w());
    }
    best
}

/// How the given names compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Given {
    /// The notice holds no given names.
    NotHeld,
    /// The query left no words for them.
    NotCompared,
    Initial,
    OneEdit,
    Same,
}

/// Compares the query words left after the family name with the given
/// names; `None` when both are there and none of them agree (another
/// person).
fn match_given(left: &[W<'_>], g: &[W<'_>], edits: bool) -> Option<Given> {
    if g.is_empty() {
        return Some(Given::NotHeld);
    }
    if left.is_empty() {
        return Some(Given::NotCompared);
    }
    let initial = |a: W<'_>, b: W<'_>| {
        a.plain.chars().count() == 1 && b.plain.starts_with(a.plain) && b.plain.len() > 1
    };
    let mut best = None;
    for l in left {
        for gw in g {
            match compare(*l, *gw, edits) {
                Cmp::Same => return Some(Given::Same),
                Cmp::OneEdit => best = Some(Given::OneEdit),
                Cmp::Differs => {
                    if best.is_none() && (initial(*l, *gw) || initial(*gw, *l)) {
                        best = Some(Given::Initial);
                    }
                }
            }
        }
    }
    if best.is_none() && (left.len() > 1 || g.len() > 1) {
        // `Jean Pierre` against `Jeanpierre`.
        match compare(Word::joined(left).w(), Word::joined(g).w(), edits) {
            Cmp::Same => return Some(Given::Same),
            Cmp::OneEdit => best = Some(Given::OneEdit),
            Cmp::Differs => {}
        }
    }
    best
}

/// What a name match found: how strong it is and which fields agreed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameMatch {
    /// 0..=1: 1 is the same name and the same date written differently.
    pub score: f32,
    /// No typing error, the whole family name, the given names agree (or
    /// the notice has none) and the same date of birth.
    pub exact: bool,
    /// The given names were compared and agreed.
    pub given_compared: bool,
    /// Matched one of the notice's aliases, not its name.
    pub alias: bool,
}

impl NameMatch {
    fn better_than(&self, other: &NameMatch) -> bool {
        (self.exact, self.score) > (other.exact, other.score)
    }
}

/// How the dates of birth of a query and a notice compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dob {
    /// Both full and equal: the only case where a typing error in a name
    /// is still a (possible) match.
    SameFull,
    /// Both the same partial date.
    Same,
    /// Different precision, no part in conflict.
    Agrees,
    /// The notice holds no date of birth.
    NotHeld,
}

/// Matches query words against one name of a sketch, given how the dates
/// of birth compare: (score, exact, given names compared).
fn match_line(q: &NameWords, line: &str, dob: Dob) -> Option<(f32, bool, bool)> {
    let (f, g) = parse_line(line);
    let edits = dob == Dob::SameFull;
    let fam = match_family(q, f.words(), edits)?;
    let mut left = [W::default(); MAX_QUERY_WORDS];
    let mut n = 0;
    for (j, w) in q.words.iter().enumerate().take(MAX_QUERY_WORDS) {
        if fam.used & (1 << j) == 0 {
            left[n] = w.w();
            n += 1;
        }
    }
    let given = match_given(&left[..n], g.words(), edits && fam.edits == 0)?;
    let typo = fam.edits > 0 || given == Given::OneEdit;
    // Without a date of birth on the notice only the whole name, with
    // agreeing given names, is a (possible) match.
    if dob == Dob::NotHeld && (!fam.complete || typo || given != Given::Same) {
        return None;
    }
    let family_score = match (fam.complete, fam.edits) {
        (true, 0) => 0.5,
        (true, _) => 0.4,
        (false, 0) => 0.3,
        (false, _) => 0.25,
    };
    let given_score = match given {
        Given::Same => 0.25,
        Given::NotHeld => 0.2,
        Given::OneEdit => 0.15,
        Given::Initial => 0.12,
        Given::NotCompared => 0.1,
    };
    let dob_score = match dob {
        Dob::SameFull | Dob::Same => 0.25,
        Dob::Agrees => 0.15,
        Dob::NotHeld => 0.0,
    };
    let exact = fam.complete
        && !typo
        && matches!(given, Given::Same | Given::NotHeld)
        && matches!(dob, Dob::SameFull | Dob::Same);
    let compared = matches!(given, Given::Same | Given::OneEdit | Given::Initial);
    Some((family_score + given_score + dob_score, exact, compared))
}

/// Matches a name query (its words, any order) and its date of birth
/// against a notice's sketch and date of birth; `None` when the notice
/// names someone else: a date of birth in conflict, a family name more
/// than one edit away, given names that do not agree.
pub fn match_name(
    q: &NameWords,
    query_dob: &PartialDate,
    sketch: &str,
    notice_dob: Option<&PartialDate>,
) -> Option<NameMatch> {
    let dob = match notice_dob {
        None => Dob::NotHeld,
        Some(d) if !d.agrees(query_dob) => return None,
        Some(d) if d == query_dob && d.is_full() => Dob::SameFull,
        Some(d) if d == query_dob => Dob::Same,
        Some(_) => Dob::Agrees,
    };
    let mut best: Option<NameMatch> = None;
    for (i, line) in sketch.lines().take(MAX_NAMES).enumerate() {
        let Some((score, exact, given_compared)) = match_line(q, line, dob) else {
            continue;
        };
        let m = NameMatch {
            score,
            exact,
            given_compared,
            alias: i > 0,
        };
        if best.is_none_or(|b| m.better_than(&b)) {
            best = Some(m);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folding_meets_the_spellings_of_one_name() {
        for (a, b) in [
            ("Müller", "MUELLER"),
            ("Müller", "Muller"),
            ("Søren", "SOEREN"),
            ("Søren", "Soren"),
            ("Strauß", "STRAUSS"),
            ("Janssen", "Jansen"),
            ("Иванов", "IVANOV"),
            ("O'Brien", "OBRIEN"),
        ] {
            assert_eq!(match_form(a), match_form(b), "{a} / {b}");
        }
        assert_ne!(match_form("Doe"), match_form("Dow"));
    }

    #[test]
    fn one_edit_means_one() {
        let w = |a: &str, b: &str| within_one_edit(a.as_bytes(), b.as_bytes());
        assert!(w("smith", "smyth"));
        assert!(w("john", "jhon"));
        assert!(w("doe", "does"));
        assert!(w("does", "doe"));
        assert!(w("", "a"));
        assert!(!w("smith", "smythe"));
        assert!(!w("abcd", "badc"));
        assert!(!w("doe", "dean"));
    }

    fn m(q: &str, qd: &str, f: &str, g: &str, nd: Option<&str>) -> Option<NameMatch> {
        let qd = PartialDate::parse(qd).unwrap();
        let nd = nd.map(|d| PartialDate::parse(d).unwrap());
        match_name(
            &NameWords::new(q),
            &qd,
            &sketch(Some(f), Some(g), &[]),
            nd.as_ref(),
        )
    }

    #[test]
    fn family_names_of_several_words_and_joined_words() {
        let d = Some("1975-06-01");
        assert!(
            m(
                "Garcia Marquez, Juan",
                "1975-06-01",
                "García Márquez",
                "Juan",
                d
            )
            .unwrap()
            .exact
        );
        let partial = m("Garcia, Juan", "1975-06-01", "García Márquez", "Juan", d).unwrap();
        assert!(!partial.exact);
        assert!(
            m("Vanderberg Anna", "1975-06-01", "van der Berg", "Anna", d)
                .unwrap()
                .exact
        );
        assert!(
            m("van der berg, anna", "1975-06-01", "Vanderberg", "Anna", d)
                .unwrap()
                .exact
        );
        // A particle alone names no family.
        assert!(m("van, anna", "1975-06-01", "van der Berg", "Anna", d).is_none());
    }

    #[test]
    fn no_date_of_birth_on_the_notice_needs_the_whole_name() {
        assert!(m("Doe, John", "1980-04-01", "Doe", "John", None).is_some_and(|x| !x.exact));
        assert!(m("Doe", "1980-04-01", "Doe", "John", None).is_none());
        assert!(m("Dow, John", "1980-04-01", "Doe", "John", None).is_none());
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec("[A-Za-zÀ-ÿА-я']{1,12}(-[A-Za-zÀ-ÿА-я]{1,8})?", 1..4)
            .prop_map(|w| w.join(" "))
    }

    fn date() -> impl Strategy<Value = PartialDate> {
        (
            1900u16..2020,
            prop::option::of(1u8..=12),
            1u8..=28,
            any::<bool>(),
        )
            .prop_map(|(year, month, day, d)| PartialDate {
                year,
                month,
                day: (month.is_some() && d).then_some(day),
            })
    }

    proptest! {
        /// Every normalisation is idempotent.
        #[test]
        fn match_form_is_idempotent(s in "\\PC{0,40}") {
            let once = match_form(&s);
            prop_assert_eq!(match_form(&once), once.clone());
            let folded: Vec<String> = NameWords::new(&s).words.into_iter().map(|w| w.folded).collect();
            prop_assert_eq!(folded.join(" "), once);
        }

        /// A query made of a notice's own name, in any order and with its
        /// own date, always hits it, exactly.
        #[test]
        fn own_name_hits_in_any_order(f in name(), g in name(), d in date(), rev in any::<bool>()) {
            prop_assume!(!match_form(&f).is_empty());
            let typed = if rev { format!("{g} {f}") } else { format!("{f}, {g}") };
            let hit = match_name(&NameWords::new(&typed), &d, &sketch(Some(&f), Some(&g), &[]), Some(&d));
            prop_assert!(hit.is_some_and(|h| h.exact), "{typed} / {f}, {g}");
        }

        /// One typing error in the family name with the same full date of
        /// birth is never dropped.
        #[test]
        fn one_typing_error_is_a_possible_hit(f in "[a-z]{4,10}", g in "[a-z]{3,8}", at in 0usize..10, c in "[a-z]") {
            let mut typo: Vec<char> = f.chars().collect();
            let i = at % typo.len();
            typo[i] = c.chars().next().unwrap();
            let typo: String = typo.into_iter().collect();
            let d = PartialDate::parse("1980-04-01").unwrap();
            let hit = match_name(&NameWords::new(&format!("{typo}, {g}")), &d, &sketch(Some(&f), Some(&g), &[]), Some(&d));
            prop_assert!(hit.is_some(), "{typo} / {f}");
        }
    }
}
