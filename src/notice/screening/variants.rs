//! The variant table: query/notice pairs across every way a name, a date
//! or a document is written differently, each asserting hit (exact or
//! possible) or no hit, through both the matcher and the index entry the
//! store would find the notice by.

use super::*;
use crate::notice::model::Identifier;
use proptest::prelude::*;

const TODAY: i64 = 1_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Exact,
    Possible,
    None,
}
use Want::{Exact, Possible};

fn subject(family: &str, given: &str, dob: &str, ids: &[(&str, &str, &str)]) -> Subject {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Subject {
        family_name: opt(family),
        given_names: opt(given),
        date_of_birth: opt(dob),
        nationalities: Some(vec!["NLD".into()]),
        identifiers: (!ids.is_empty()).then(|| {
            ids.iter()
                .map(|(s, c, v)| Identifier {
                    scheme: s.to_string(),
                    country: c.to_string(),
                    value: v.to_string(),
                })
                .collect()
        }),
        ..Subject::default()
    }
}

fn doe() -> Subject {
    subject(
        "Doe",
        "John",
        "1980-04-01",
        &[("passport", "NLD", "X1234567")],
    )
}

fn name(n: &str, dob: &str) -> Query {
    Query::name(n, dob, TODAY).unwrap_or_else(|e| panic!("query {n} {dob}: {e}"))
}

fn id(s: &str) -> Query {
    Query::identifier(s).unwrap_or_else(|e| panic!("query {s}: {e}"))
}

/// True when the store's index would bring `s` up as a candidate for `q`.
fn findable(q: &Query, s: &Subject) -> bool {
    let entry = index_entry(&KeyFields::of(s));
    let keys = q.lookup_keys();
    if entry.keys.iter().any(|k| keys.contains(k)) {
        return true;
    }
    entry.names.is_some_and(|(packed, sketch)| {
        q.dob_ranges().iter().any(|r| r.contains(&packed))
            && q.matches_names(&sketch, PartialDate::unpacked(packed).as_ref())
    })
}

fn check(n: usize, s: &Subject, q: &Query, want: Want) {
    let fields = KeyFields::of(s);
    let got = q.matches(&Candidate::of(&fields));
    let what = format!("case {n}: {} against {s:?}: {got:?}", q.describe());
    match want {
        Want::None => assert!(got.is_none(), "{what}: expected no hit"),
        Exact | Possible => {
            let m = got.unwrap_or_else(|| panic!("{what}: expected a hit"));
            let strength = if want == Exact {
                Strength::Exact
            } else {
                Strength::Possible
            };
            assert_eq!(m.strength, strength, "{what}");
            assert!(m.score > 0.0 && m.score <= 1.0, "{what}");
            assert!(!m.fields.is_empty(), "{what}");
            assert!(findable(q, s), "{what}: the index would not find it");
        }
    }
}

#[test]
fn variant_table() {
    let n = |f: &str, g: &str, d: &str| subject(f, g, d, &[]);
    let cases: Vec<(Subject, Query, Want)> = vec![
        // Name order and punctuation.
        (doe(), name("Doe, John", "1980-04-01"), Exact),
        (doe(), name("Doe John", "1980-04-01"), Exact),
        (doe(), name("John Doe", "1980-04-01"), Exact),
        (doe(), name("DOE JOHN", "1980-04-01"), Exact),
        (doe(), name("  doe ,  john ", "1980-04-01"), Exact),
        (doe(), name("Doe-John", "1980-04-01"), Exact),
        (doe(), name("Doe", "1980-04-01"), Possible),
        (doe(), name("J. Doe", "1980-04-01"), Possible),
        (
            n("Doe", "John Michael", "1980-04-01"),
            name("Doe, Michael John", "1980-04-01"),
            Exact,
        ),
        (
            n("Doe", "John Michael", "1980-04-01"),
            name("Michael Doe", "1980-04-01"),
            Exact,
        ),
        (
            n("Smith-Jones", "Anna", "1975-06-01"),
            name("Smith Jones, Anna", "1975-06-01"),
            Exact,
        ),
        (
            n("Smith-Jones", "Anna", "1975-06-01"),
            name("SmithJones Anna", "1975-06-01"),
            Exact,
        ),
        (
            n("Smith-Jones", "Anna", "1975-06-01"),
            name("Jones, Anna", "1975-06-01"),
            Possible,
        ),
        (
            n("O'Brien", "Sean", "1990-01-01"),
            name("OBrien Sean", "1990-01-01"),
            Exact,
        ),
        (
            n("O'Brien", "Sean", "1990-01-01"),
            name("O Brien, Sean", "1990-01-01"),
            Exact,
        ),
        (
            n("van der Berg", "Anna", "1975-06-01"),
            name("Vanderberg, Anna", "1975-06-01"),
            Exact,
        ),
        // Diacritics and transliteration (ICAO 9303).
        (
            n("Müller", "Jürgen", "1970-01-15"),
            name("MUELLER JUERGEN", "1970-01-15"),
            Exact,
        ),
        (
            n("Müller", "Jürgen", "1970-01-15"),
            name("Muller, Jurgen", "1970-01-15"),
            Exact,
        ),
        (
            n("MUELLER", "JUERGEN", "1970-01-15"),
            name("Müller Jürgen", "1970-01-15"),
            Exact,
        ),
        (
            n("Kierkegaard", "Søren", "1985-05-05"),
            name("KIERKEGAARD SOEREN", "1985-05-05"),
            Exact,
        ),
        (
            n("Kierkegaard", "Søren", "1985-05-05"),
            name("Soren Kierkegaard", "1985-05-05"),
            Exact,
        ),
        (
            n("Strauß", "Anna", "1960-02-02"),
            name("STRAUSS, ANNA", "1960-02-02"),
            Exact,
        ),
        (
            n("Иванов", "Иван", "1979-11-30"),
            name("IVANOV IVAN", "1979-11-30"),
            Exact,
        ),
        (
            n("IVANOV", "IVAN", "1979-11-30"),
            name("Иванов Иван", "1979-11-30"),
            Exact,
        ),
        (
            n("Щербакова", "Юлия", "1988-08-08"),
            name("Shcherbakova, Iuliia", "1988-08-08"),
            Exact,
        ),
        (
            n("Παπαδόπουλος", "Γιώργος", "1966-03-03"),
            name("PAPADOPOULOS GIORGOS", "1966-03-03"),
            Exact,
        ),
        (
            n("Łukasiewicz", "Paweł", "1991-09-09"),
            name("Lukasiewicz Pawel", "1991-09-09"),
            Exact,
        ),
        (
            n("Núñez", "José", "1982-12-12"),
            name("NUNEZ JOSE", "1982-12-12"),
            Exact,
        ),
        (
            n("Dvořák", "Antonín", "1941-09-08"),
            name("Dvorak, Antonin", "1941-09-08"),
            Exact,
        ),
        (
            n("Åberg", "Åsa", "1977-07-07"),
            name("AABERG AASA", "1977-07-07"),
            Exact,
        ),
        (
            n("Åberg", "Åsa", "1977-07-07"),
            name("Aberg, Asa", "1977-07-07"),
            Exact,
        ),
        (
            n("Ødegaard", "Martin", "1998-12-17"),
            name("Odegaard Martin", "1998-12-17"),
            Exact,
        ),
        (
            n("Yılmaz", "Ayşe", "1993-04-04"),
            name("YILMAZ AYSE", "1993-04-04"),
            Exact,
        ),
        (
            n("王", "小明", "1990-10-10"),
            name("王 小明", "1990-10-10"),
            Exact,
        ),
        // Partial dates on either side.
        (
            n("Doe", "John", "1980"),
            name("Doe, John", "1980-04-01"),
            Possible,
        ),
        (
            n("Doe", "John", "1980-04"),
            name("Doe, John", "1980-04-01"),
            Possible,
        ),
        (doe(), name("Doe, John", "1980"), Possible),
        (doe(), name("Doe, John", "1980-04"), Possible),
        (n("Doe", "John", "1980"), name("John Doe", "1980"), Exact),
        (
            n("Doe", "John", "1980-05"),
            name("Doe, John", "1980-04-01"),
            Want::None,
        ),
        (
            n("Doe", "John", "1981"),
            name("Doe, John", "1980-04-01"),
            Want::None,
        ),
        // Documents: spaces, hyphens, case, country in any accepted code.
        (doe(), id("passport:NLD:X1234567"), Exact),
        (doe(), id("passport:NL:X1234567"), Exact),
        (doe(), id("passport:528:X1234567"), Exact),
        (doe(), id("passport:nld:x 123 4567"), Exact),
        (doe(), id("passport:NLD:X-1234-567"), Exact),
        (doe(), id("Passport No:NLD:X1234567"), Exact),
        (doe(), id("P:NLD:X1234567"), Exact),
        (doe(), id("national-id:NLD:X1234567"), Possible),
        (doe(), id("passport:BEL:X1234567"), Want::None),
        (doe(), id("passport:NLD:X1234568"), Want::None),
        (
            subject("Schmidt", "", "", &[("passport", "DEU", "C01X00T47")]),
            id("passport:D:C01X00T47"),
            Exact,
        ),
        (
            subject("Schmidt", "", "", &[("passport", "DEU", "C01X00T47")]),
            id("passport:DE:c01x00t47"),
            Exact,
        ),
        (
            // Held as a partner wrote it before codes were checked.
            subject("Doe", "", "", &[("Passport No", "NL", "X1234567")]),
            id("passport:NLD:X1234567"),
            Exact,
        ),
        (
            subject("", "", "", &[("vehicle-vin", "DEU", "WVWZZZ1JZXW000001")]),
            id("vin:DEU:wvwzzz1jzxw000001"),
            Exact,
        ),
        // One typing error with the same full date of birth.
        (doe(), name("Dow, John", "1980-04-01"), Possible),
        (doe(), name("Doe, Jon", "1980-04-01"), Possible),
        (doe(), name("Jhon Doe", "1980-04-01"), Possible),
        (
            n("Smith", "Anna", "1975-06-01"),
            name("Smyth, Anna", "1975-06-01"),
            Possible,
        ),
        (
            n("Иванов", "Иван", "1979-11-30"),
            name("Ivanof Ivan", "1979-11-30"),
            Possible,
        ),
        (
            n("Noel", "Marie", "1975-06-01"),
            name("Niel, Marie", "1975-06-01"),
            Possible,
        ),
        // A typing error needs the same full date; two errors are another name.
        (
            n("Doe", "John", "1980"),
            name("Dow, John", "1980-04-01"),
            Want::None,
        ),
        (doe(), name("Dow, Jhon", "1980-04-01"), Want::None),
        (doe(), name("Doer, Johnny", "1980-04-01"), Want::None),
        // A different person.
        (doe(), name("Doe, John", "1980-04-02"), Want::None),
        (doe(), name("Doe, John", "1981-04-01"), Want::None),
        (doe(), name("Dean, John", "1980-04-01"), Want::None),
        (doe(), name("Smith, John", "1980-04-01"), Want::None),
        (doe(), name("Doe, Jane", "1980-04-01"), Want::None),
        (doe(), name("John", "1980-04-01"), Want::None),
        (
            n("Li", "Wei", "1990-02-02"),
            name("Lu, Wei", "1990-02-02"),
            Want::None,
        ),
        (
            n("Li", "Wei", "1990-02-02"),
            name("Li Wei", "1990-02-02"),
            Exact,
        ),
        (
            n("van der Berg", "Anna", "1975-06-01"),
            name("van, Anna", "1975-06-01"),
            Want::None,
        ),
        // A notice without a date of birth: the whole name, possible.
        (
            n("Doe", "John", ""),
            name("Doe, John", "1980-04-01"),
            Possible,
        ),
        (
            n("Doe", "John", ""),
            name("Dow, John", "1980-04-01"),
            Want::None,
        ),
        (n("Doe", "John", ""), name("Doe", "1980-04-01"), Want::None),
        // Aliases.
        (
            Subject {
                aliases: Some(vec!["Smith, Johnny".into()]),
                ..doe()
            },
            name("Johnny Smith", "1980-04-01"),
            Exact,
        ),
    ];
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (i, (s, q, want)) in cases.iter().enumerate() {
        check(i, s, q, *want);
    }
}

#[test]
fn hits_say_what_matched() {
    let s = doe();
    let fields = KeyFields::of(&s);
    let c = Candidate::of(&fields);
    let mut q = name("John Doe", "1980-04-01");
    q.identifier = Some(IdQuery::new("passport", "NL", "X1234567").unwrap());
    q.nationality = Some("NLD");
    let m = q.matches(&c).unwrap();
    assert_eq!(m.strength, Strength::Exact);
    assert_eq!(m.score, 1.0);
    for f in [
        "identifiers",
        "family_name",
        "given_names",
        "date_of_birth",
        "nationalities",
    ] {
        assert!(m.fields.iter().any(|x| x == f), "{f} in {:?}", m.fields);
    }
    let typo = name("Dow John", "1980-04-01").matches(&c).unwrap();
    assert_eq!(typo.strength, Strength::Possible);
    assert!(typo.score < 1.0);
}

#[test]
fn bad_queries_name_their_field() {
    let e = |r: Result<Query, QueryError>| r.unwrap_err().field();
    assert_eq!(e(Query::identifier("passport:NLD")), "identifier");
    assert_eq!(e(Query::identifier("shoe:NLD:1")), "document_scheme");
    assert_eq!(e(Query::identifier("passport:XQ:1")), "document_country");
    assert_eq!(e(Query::identifier("passport:NLD: - ")), "document_number");
    assert_eq!(e(Query::name("...", "1980", TODAY)), "name");
    assert_eq!(e(Query::name("Doe", "1980-13", TODAY)), "date_of_birth");
    assert_eq!(e(Query::name("Doe", "2999-01-01", TODAY)), "date_of_birth");
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z][a-z]{1,9}",
        "[ÀÉÖÜØÅÆßŁa-z]{2,8}",
        "[А-Яа-я]{2,8}",
        "[Α-Ωα-ω]{2,8}",
    ]
}

fn words(n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..=n).prop_map(|w| w.join(" "))
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        (1900u16..2020).prop_map(|y| format!("{y}")),
        (1900u16..2020, 1u8..=12).prop_map(|(y, m)| format!("{y}-{m:02}")),
        (1900u16..2020, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
    ]
}

fn subject_strategy() -> impl Strategy<Value = Subject> {
    (
        words(3),
        words(3),
        date(),
        prop::collection::vec(("[A-Z0-9]{6,9}", 0usize..3), 0..3),
    )
        .prop_map(|(f, g, d, ids)| {
            let countries = ["NLD", "DEU", "BEL"];
            let ids: Vec<(String, String, String)> = ids
                .into_iter()
                .map(|(v, c)| ("passport".to_string(), countries[c].to_string(), v))
                .collect();
            let refs: Vec<(&str, &str, &str)> = ids
                .iter()
                .map(|(s, c, v)| (s.as_str(), c.as_str(), v.as_str()))
                .collect();
            subject(&f, &g, &d, &refs)
        })
}

proptest! {
    /// A query built from a notice's own fields always hits it, exactly,
    /// and the index finds it.
    #[test]
    fn own_fields_always_hit(s in subject_strategy(), given_first in any::<bool>()) {
        let family = s.family_name.clone().unwrap_or_default();
        let given = s.given_names.clone().unwrap_or_default();
        let typed = if given_first { format!("{given} {family}") } else { format!("{family}, {given}") };
        let q = name(&typed, s.date_of_birth.as_deref().unwrap_or_default());
        let fields = KeyFields::of(&s);
        let m = q.matches(&Candidate::of(&fields));
        prop_assert!(m.as_ref().is_some_and(|m| m.strength == Strength::Exact), "{typed}: {m:?}");
        prop_assert!(findable(&q, &s));
        for i in s.identifiers.iter().flatten() {
            let q = id(&format!("{}:{}:{}", i.scheme, i.country, i.value));
            let m = q.matches(&Candidate::of(&fields));
            prop_assert!(m.is_some_and(|m| m.strength == Strength::Exact));
            prop_assert!(findable(&q, &s));
        }
    }

    /// Whatever the matcher accepts by name, the index brings up: a hit is
    /// never lost between the two.
    #[test]
    fn every_name_hit_is_findable(s in subject_strategy(), typed in words(4), d in date()) {
        let Ok(q) = Query::name(&typed, &d, TODAY) else { return Ok(()) };
        let fields = KeyFields::of(&s);
        if q.matches(&Candidate::of(&fields)).is_some() {
            prop_assert!(findable(&q, &s), "{typed} {d} / {s:?}");
        }
    }

    /// Identifier normalisation is idempotent.
    #[test]
    fn identifier_value_is_idempotent(v in "\\PC{0,30}") {
        let once = identifier_value(&v);
        prop_assert_eq!(identifier_value(&once), once);
    }
}
