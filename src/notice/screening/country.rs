//! Country codes: ISO 3166-1 alpha-3 is what vigil stores; alpha-2,
//! numeric and the ICAO 9303 codes that differ from ISO are accepted on the
//! way in, so `NL`, `NLD` and `528` are one country and `D` is Germany.
//!
//! The ISO table is the `celes` crate's; only the ICAO 9303 Part 3 codes
//! that ISO does not have are listed here.

/// Codes of ICAO 9303 Part 3 that are not ISO 3166-1 alpha-3, and the code
/// vigil stores for each. Codes naming no ISO country (British nationality
/// classes, organisations, stateless persons and refugees) are kept as they
/// are: that is what the document carries.
const ICAO: &[(&str, &str)] = &[
    // Germany writes `D` in the machine-readable zone.
    ("D", "DEU"),
    // Kosovo's documents carry RKS; ISO's user-assigned codes mean the same.
    ("RKS", "RKS"),
    ("XK", "RKS"),
    ("XKX", "RKS"),
    ("383", "RKS"),
    // Codes replaced in ISO but still on documents in circulation.
    ("ROM", "ROU"),
    ("ZAR", "COD"),
    ("TMP", "TLS"),
    // British nationality classes.
    ("GBD", "GBD"),
    ("GBN", "GBN"),
    ("GBO", "GBO"),
    ("GBP", "GBP"),
    ("GBS", "GBS"),
    // The European Union's laissez-passer.
    ("EUE", "EUE"),
    // United Nations and its agencies.
    ("UNO", "UNO"),
    ("UNA", "UNA"),
    ("UNK", "UNK"),
    // Other organisations issuing travel documents.
    ("XBA", "XBA"),
    ("XCC", "XCC"),
    ("XCE", "XCE"),
    ("XCO", "XCO"),
    ("XDC", "XDC"),
    ("XEC", "XEC"),
    ("XES", "XES"),
    ("XIM", "XIM"),
    ("XMP", "XMP"),
    ("XOM", "XOM"),
    ("XPO", "XPO"),
    // Stateless person, refugees, unspecified nationality.
    ("XXA", "XXA"),
    ("XXB", "XXB"),
    ("XXC", "XXC"),
    ("XXX", "XXX"),
];

/// The code vigil stores for a country written as ISO 3166-1 alpha-3,
/// alpha-2 or numeric, or as an ICAO 9303 code; `None` if unknown. Case and
/// surrounding white space do not matter; numeric codes may drop leading
/// zeros.
pub fn canonical(code: &str) -> Option<&'static str> {
    let c = code.trim();
    if c.is_empty() || c.len() > 3 || !c.is_ascii() {
        return None;
    }
    let upper = c.to_ascii_uppercase();
    if let Some((_, stored)) = ICAO.iter().find(|(k, _)| *k == upper) {
        return Some(stored);
    }
    let found = if c.bytes().all(|b| b.is_ascii_digit()) {
        celes::Country::from_code(format!("{:0>3}", c))
    } else if c.len() == 2 {
        celes::Country::from_alpha2(c)
    } else if c.len() == 3 {
        celes::Country::from_alpha3(c)
    } else {
        return None;
    };
    found.ok().map(|country| country.alpha3)
}

/// The code to compare a stored country by: its canonical code when known,
/// else the text itself, trimmed and uppercase (notices issued before codes
/// were checked, or by a partner that does not check them).
pub fn comparable(code: &str) -> String {
    canonical(code)
        .map(str::to_string)
        .unwrap_or_else(|| code.trim().to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_icao_codes_meet_in_alpha3() {
        for (input, want) in [
            ("NLD", "NLD"),
            ("nl", "NLD"),
            ("528", "NLD"),
            (" nld ", "NLD"),
            ("DE", "DEU"),
            ("D", "DEU"),
            ("276", "DEU"),
            ("4", "AFG"),
            ("GBR", "GBR"),
            ("GBD", "GBD"),
            ("XK", "RKS"),
            ("XXA", "XXA"),
            ("ROM", "ROU"),
        ] {
            assert_eq!(canonical(input), Some(want), "{input}");
        }
        for bad in ["", "Q", "QQQ", "NLDX", "999", "Nederland", "ÑL"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
        assert_eq!(comparable("nl"), "NLD");
        assert_eq!(comparable(" Holland "), "HOLLAND");
    }
}
