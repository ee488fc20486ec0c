//! Identifier schemes: the documented list of what an identifier can be
//! (a passport, a vehicle's VIN, a phone number...), with the aliases
//! operators and manifests write for each. A notice filed under
//! `Passport No` could never be found by a query for `passport`; so issue
//! refuses schemes not on the list, and screening compares canonical names.

/// One scheme: its canonical name, what it is, and its accepted aliases
/// (compared after [`fold`]: lowercase, `-` for spaces and underscores).
pub struct Scheme {
    pub name: &'static str,
    pub about: &'static str,
    pub aliases: &'static [&'static str],
}

/// Every scheme vigil knows. `docs/` and `vigil screen --help` print this.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        name: "passport",
        about: "passport number (ICAO document code P)",
        aliases: &["p", "pp", "pass", "passport-no", "passport-number"],
    },
    Scheme {
        name: "national-id",
        about: "national identity card number (ICAO document code I)",
        aliases: &[
            "i",
            "id",
            "id-card",
            "identity-card",
            "national-id-card",
            "national-identity-card",
            "nid",
        ],
    },
    Scheme {
        name: "residence-permit",
        about: "residence permit or residence card number",
        aliases: &["rp", "residence-card", "resident-permit"],
    },
    Scheme {
        name: "travel-document",
        about: "other travel document: refugee or stateless travel document, laissez-passer",
        aliases: &["td", "refugee-travel-document", "laissez-passer"],
    },
    Scheme {
        name: "visa",
        about: "visa number (ICAO document code V)",
        aliases: &["v", "visa-number"],
    },
    Scheme {
        name: "driving-licence",
        about: "driving licence number",
        aliases: &[
            "dl",
            "driving-license",
            "drivers-license",
            "drivers-licence",
            "driver-license",
            "driver-licence",
        ],
    },
    Scheme {
        name: "seafarer-id",
        about: "seafarer's identity document or seaman's book",
        aliases: &["seamans-book", "seaman-book", "seafarers-id"],
    },
    Scheme {
        name: "vehicle-vin",
        about: "vehicle identification number (ISO 3779)",
        aliases: &["vin"],
    },
    Scheme {
        name: "vehicle-plate",
        about: "vehicle registration plate",
        aliases: &[
            "plate",
            "licence-plate",
            "license-plate",
            "number-plate",
            "registration-plate",
        ],
    },
    Scheme {
        name: "vessel-imo",
        about: "IMO ship identification number",
        aliases: &["imo"],
    },
    Scheme {
        name: "aircraft-registration",
        about: "aircraft registration mark",
        aliases: &["aircraft", "tail-number"],
    },
    Scheme {
        name: "firearm-serial",
        about: "firearm serial number",
        aliases: &["firearm", "weapon-serial", "gun-serial"],
    },
    Scheme {
        name: "imei",
        about: "mobile device IMEI",
        aliases: &[],
    },
    Scheme {
        name: "phone",
        about: "telephone number",
        aliases: &["telephone", "tel", "mobile", "msisdn"],
    },
    Scheme {
        name: "email",
        about: "e-mail address",
        aliases: &["e-mail", "mail"],
    },
    Scheme {
        name: "bank-account",
        about: "bank account number or IBAN",
        aliases: &["iban", "account"],
    },
    Scheme {
        name: "object-serial",
        about: "serial number of another stolen object (art, equipment)",
        aliases: &["serial"],
    },
];

/// Lowercase, apostrophes and dots dropped, runs of spaces, underscores and
/// hyphens as one `-`: how scheme names and aliases are compared.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars() {
        match c {
            '\'' | '’' | '.' => {}
            ' ' | '_' | '-' | '\t' => {
                if !out.is_empty() && !out.ends_with('-') {
                    out.push('-');
                }
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The canonical name of a scheme written as its name or an alias; `None`
/// if it is not on the list.
pub fn canonical(s: &str) -> Option<&'static str> {
    let f = fold(s);
    SCHEMES
        .iter()
        .find(|sch| sch.name == f || sch.aliases.contains(&f.as_str()))
        .map(|sch| sch.name)
}

/// The scheme to compare a stored identifier by: canonical when known, else
/// its folded text (notices from before the list, or from a partner that
/// does not check).
pub fn comparable(s: &str) -> String {
    canonical(s).map(str::to_string).unwrap_or_else(|| fold(s))
}

/// The names of every scheme, for error messages.
pub fn names() -> String {
    SCHEMES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_fold_to_the_canonical_scheme() {
        for (input, want) in [
            ("passport", "passport"),
            ("Passport No.", "passport"),
            ("PASSPORT_NUMBER", "passport"),
            ("P", "passport"),
            ("ID card", "national-id"),
            ("driver's license", "driving-licence"),
            ("Driving Licence", "driving-licence"),
            ("VIN", "vehicle-vin"),
            ("licence plate", "vehicle-plate"),
            ("e-mail", "email"),
            ("IBAN", "bank-account"),
        ] {
            assert_eq!(canonical(input), Some(want), "{input}");
        }
        assert_eq!(canonical("shoe size"), None);
        assert_eq!(comparable("Shoe  Size"), "shoe-size");
    }

    #[test]
    fn no_alias_names_two_schemes() {
        let mut seen = std::collections::HashSet::new();
        for s in SCHEMES {
            assert_eq!(fold(s.name), s.name);
            for a in std::iter::once(&s.name).chain(s.aliases) {
                assert_eq!(fold(a), *a, "alias {a} is not folded");
                assert!(seen.insert(*a), "{a} listed twice");
            }
        }
    }
}
