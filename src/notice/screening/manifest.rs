//! Manifests: a flight's passenger list or a vessel's crew list as CSV,
//! one screening query per row (INTERPOL's FIND use case). Columns are
//! found by header name; any may be empty. A bad cell is reported by row
//! and column and the rest of that row, and every other row, is still
//! screened: a manifest is never refused for one bad line.

use super::{country, IdQuery, NameQuery, Query, QueryError};

/// The columns read, by header name (case and surrounding space ignored).
pub const COLUMNS: [&str; 7] = [
    "family_name",
    "given_names",
    "date_of_birth",
    "nationality",
    "document_scheme",
    "document_country",
    "document_number",
];

/// Most data rows in one manifest: a ship's crew or an airliner's
/// passengers are a few hundred; bulk checks stay under this.
pub const MAX_ROWS: usize = 100_000;

/// Longest cell read, in bytes.
const MAX_CELL: usize = 1024;

/// Why a whole manifest was refused (exit 2): nothing in it was screened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not CSV text: {0}")]
    Unreadable(String),
    #[error("no known column in the header (known: {known})", known = COLUMNS.join(", "))]
    NoKnownHeader,
    #[error("more than {MAX_ROWS} rows; split the manifest")]
    TooManyRows,
}

/// A bad cell: its row (from 1, after the header), column and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub row: usize,
    pub column: String,
    pub message: String,
}

/// One row to screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// From 1, after the header.
    pub row: usize,
    pub query: Query,
}

/// A parsed manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Data rows read (screened or not).
    pub rows: usize,
    /// Rows with something to screen.
    pub queries: Vec<Row>,
    pub errors: Vec<RowError>,
}

/// Parses a manifest; `today` (Unix seconds) refuses dates of birth in the
/// future.
pub fn parse(bytes: &[u8], today: i64) -> Result<Manifest, ManifestError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| ManifestError::Unreadable(e.to_string()))?
        .clone();
    let columns: Vec<Option<usize>> = COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h.trim().eq_ignore_ascii_case(c)))
        .collect();
    if columns.iter().all(Option::is_none) {
        return Err(ManifestError::NoKnownHeader);
    }
    let mut out = Manifest::default();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        if row > MAX_ROWS {
            return Err(ManifestError::TooManyRows);
        }
        out.rows = row;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(RowError {
                    row,
                    column: "(row)".into(),
                    message: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let mut cells = [""; 7];
        let mut too_long = false;
        for (slot, col) in cells.iter_mut().zip(&columns) {
            if let Some(v) = col.and_then(|c| record.get(c)) {
                if v.len() > MAX_CELL {
                    too_long = true;
                } else {
                    *slot = v;
                }
            }
        }
        if too_long {
            out.errors.push(RowError {
                row,
                column: "(row)".into(),
                message: format!("a cell is over {MAX_CELL} bytes"),
            });
        }
        if let Some(query) = row_query(row, &cells, today, &mut out.errors) {
            out.queries.push(Row { row, query });
        }
    }
    Ok(out)
}

/// The query of one row, reporting each bad cell; `None` when nothing in
/// the row can be screened.
fn row_query(row: usize, c: &[&str; 7], today: i64, errors: &mut Vec<RowError>) -> Option<Query> {
    let [family, given, dob, nationality, scheme, issuer, number] = *c;
    let mut err = |column: &str, message: String| {
        errors.push(RowError {
            row,
            column: column.into(),
            message,
        })
    };
    let mut q = Query::default();
    let full_name = format!("{family} {given}");
    let has_name = !full_name.trim().is_empty();
    if has_name && dob.is_empty() {
        err(
            "date_of_birth",
            "missing: the name is screened only with a date of birth".into(),
        );
    } else if has_name {
        match NameQuery::new(&full_name, dob, today) {
            Ok(n) => q.name = Some(n),
            Err(QueryError::Name(_)) => err(
                if family.is_empty() {
                    "given_names"
                } else {
                    "family_name"
                },
                format!("`{}` has no letter", full_name.trim()),
            ),
            Err(e) => err("date_of_birth", e.to_string()),
        }
    }
    if !number.is_empty() {
        // A bad scheme or country is reported; the number is still looked
        // for, under any scheme or country (a possible hit at most).
        let scheme = if scheme.is_empty() || super::scheme::canonical(scheme).is_some() {
            scheme
        } else {
            err(
                "document_scheme",
                QueryError::Scheme(scheme.into()).to_string(),
            );
            ""
        };
        let issuer = if issuer.is_empty() || country::canonical(issuer).is_some() {
            issuer
        } else {
            err(
                "document_country",
                QueryError::Country(issuer.into()).to_string(),
            );
            ""
        };
        match IdQuery::new(scheme, issuer, number) {
            Ok(i) => q.identifier = Some(i),
            Err(e) => err("document_number", e.to_string()),
        }
    } else if !scheme.is_empty() || !issuer.is_empty() {
        err(
            "document_number",
            "missing: a document scheme or country without a number".into(),
        );
    }
    if !nationality.is_empty() {
        match country::canonical(nationality) {
            Some(n) => q.nationality = Some(n),
            None => err(
                "nationality",
                QueryError::Country(nationality.into()).to_string(),
            ),
        }
    }
    (q.name.is_some() || q.identifier.is_some()).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: i64 = 1_800_000_000;

    #[test]
    fn columns_by_name_in_any_order_and_bad_cells_by_row_and_column() {
        let csv =
            "\u{feff}Document_Number, FAMILY_NAME ,given_names,date_of_birth,nationality,seat\n\
                   X1234567,Doe,John,1980-04-01,NL,12A\n\
                   ,Müller,Jürgen,1970-13-01,DEU,12B\n\
                   ,Smith,Anna,,XQ,12C\n\
                   \n\
                   Y7,,,,,12D\n";
        let m = parse(csv.as_bytes(), TODAY).unwrap();
        assert_eq!(m.rows, 4);
        let rows: Vec<usize> = m.queries.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![1, 4]);
        let q = &m.queries[0].query;
        assert!(q.name.is_some() && q.identifier.is_some());
        assert_eq!(q.nationality, Some("NLD"));
        let errors: Vec<(usize, &str)> = m
            .errors
            .iter()
            .map(|e| (e.row, e.column.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![
                (2, "date_of_birth"),
                (3, "date_of_birth"),
                (3, "nationality")
            ]
        );
    }

    #[test]
    fn a_file_without_known_columns_is_refused() {
        assert_eq!(
            parse(b"a,b\n1,2\n", TODAY),
            Err(ManifestError::NoKnownHeader)
        );
        assert_eq!(parse(b"", TODAY), Err(ManifestError::NoKnownHeader));
    }

    #[test]
    fn a_bad_scheme_still_screens_the_number() {
        let m = parse(
            b"document_scheme,document_country,document_number\nshoe,NLD,X1\n",
            TODAY,
        )
        .unwrap();
        assert_eq!(m.errors[0].column, "document_scheme");
        let id = m.queries[0].query.identifier.as_ref().unwrap();
        assert_eq!((id.scheme, id.country), (None, Some("NLD")));
    }
}
