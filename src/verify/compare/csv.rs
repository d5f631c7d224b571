//! CSV and TSV outputs: same rows and columns; cells that parse as numbers in
//! both compare within the tolerance, all others exactly.

use super::numeric::{clip, Acc};
use super::tolerance::FileTolerance;
use super::{NumericFormat, NumericReport};

/// Compare two CSV (or TSV) contents cell by cell.
pub(crate) fn compare(
    format: NumericFormat,
    expected: &[u8],
    actual: &[u8],
    ft: &FileTolerance<'_>,
) -> NumericReport {
    let mut acc = Acc::default();
    let delim = if format == NumericFormat::Tsv { '\t' } else { ',' };
    let parse = |b: &[u8], whose: &str| {
        std::str::from_utf8(b)
            .map_err(|_| format!("{whose} is not UTF-8 text"))
            .and_then(|s| records(s, delim).map_err(|e| format!("{whose} does not parse: {e}")))
    };
    let (e, a) = match (parse(expected, "the original"), parse(actual, "the replay's output")) {
        (Ok(e), Ok(a)) => (e, a),
        (Err(why), _) | (_, Err(why)) => {
            acc.fail(String::new, || why);
            return acc.finish(format);
        }
    };
    let header = header(&e);
    let tol = ft.whole();
    for (r, (er, ar)) in e.iter().zip(&a).enumerate() {
        let row = r + 1;
        for (c, (ec, ac)) in er.iter().zip(ar).enumerate() {
            let location = || cell_name(row, c, header);
            let numbers = ec.trim().parse::<f64>().ok().zip(ac.trim().parse::<f64>().ok());
            match numbers {
                Some((x, y)) => acc.number(&location, x, y, (x - y).abs(), ec, ac, tol),
                None if ec == ac => {}
                None => acc.fail(location, || format!("expected {:?}, got {:?}", clip(ec, 60), clip(ac, 60))),
            }
        }
        if er.len() != ar.len() {
            acc.fail(|| format!("row {row}"), || format!("expected {} columns, got {}", er.len(), ar.len()));
        }
    }
    if e.len() != a.len() {
        acc.fail(String::new, || format!("expected {} rows, got {}", e.len(), a.len()));
    }
    acc.finish(format)
}

/// Whether content is CSV- or TSV-like: at least one record, every record with
/// the same number of fields, at least two (tabs when the first line has one).
pub(crate) fn sniff(bytes: &[u8]) -> Option<NumericFormat> {
    let text = std::str::from_utf8(bytes).ok()?;
    let first = text.lines().next()?;
    let (format, delim) =
        if first.contains('\t') { (NumericFormat::Tsv, '\t') } else { (NumericFormat::Csv, ',') };
    let rows = records(text, delim).ok()?;
    let n = rows.first()?.len();
    (n >= 2 && rows.iter().all(|r| r.len() == n)).then_some(format)
}

/// The header row, if the first row looks like one: no cell of it is a number,
/// and some cell below it is.
fn header(rows: &[Vec<String>]) -> Option<&[String]> {
    let first = rows.first()?;
    let numeric = |c: &String| c.trim().parse::<f64>().is_ok();
    (!first.iter().any(numeric) && rows[1..].iter().flatten().any(numeric)).then_some(first.as_slice())
}

/// `row 3, column 2 (accuracy)`: 1-based, the header counting as row 1.
fn cell_name(row: usize, col: usize, header: Option<&[String]>) -> String {
    match header.and_then(|h| h.get(col)).filter(|h| !h.is_empty() && row > 1) {
        Some(h) => format!("row {row}, column {} ({})", col + 1, clip(h, 40)),
        None => format!("row {row}, column {}", col + 1),
    }
}

/// Split text into records: RFC 4180 quoting (`"a,b"`, `""` for a quote, line
/// breaks inside quotes), `\n` or `\r\n` line ends, no record for a final line
/// end.
fn records(text: &str, delim: char) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                let opened = line;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            line += usize::from(c == '\n');
                            field.push(c);
                        }
                        None => return Err(format!("the quote opened on line {opened} is never closed")),
                    }
                }
                at_start = false;
            }
            c if c == delim => {
                row.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if !row.is_empty() || !field.is_empty() || !at_start {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::super::Tolerances;
    use super::*;

    #[test]
    fn records_parse_with_quotes() {
        let r = records("a,\"b,c\",\"say \"\"hi\"\"\"\r\n1,\"x\ny\",\n", ',').unwrap();
        assert_eq!(r, [vec!["a", "b,c", "say \"hi\""], vec!["1", "x\ny", ""]]);
        assert!(records("a,\"b\n", ',').unwrap_err().contains("line 1"));
        assert_eq!(records("a\tb", '\t').unwrap(), [vec!["a", "b"]]);
        assert_eq!(sniff(b"a\tb\n1\t2\n"), Some(NumericFormat::Tsv));
        assert_eq!(sniff(b"a,b\n1\n"), None);
        assert_eq!(sniff(b"just text\n"), None);
    }

    #[test]
    fn numbers_within_tolerance_labels_exact() {
        let t = Tolerances::parse(Some("1e-6"), None, &[]).unwrap();
        let ft = t.for_file("r.csv", None);
        let e = b"label,accuracy\ncat,0.9100000\ndog,0.5\n";
        let r = compare(NumericFormat::Csv, e, b"label,accuracy\ncat,0.9100001\ndog,0.5\n", &ft);
        assert!(r.failure.is_none(), "{r:?}");
        assert_eq!(r.worst.unwrap().location, "row 2, column 2 (accuracy)");
        let r = compare(NumericFormat::Csv, e, b"label,accuracy\ncat,0.91\nbird,0.5\n", &ft);
        let f = r.failure.unwrap();
        assert_eq!(
            (f.location.as_str(), f.reason.as_str()),
            ("row 3, column 1 (label)", r#"expected "dog", got "bird""#)
        );
        let r = compare(NumericFormat::Csv, e, b"label,accuracy\ncat,0.91\n", &ft);
        assert_eq!(r.failure.unwrap().reason, "expected 3 rows, got 2");
        let r = compare(NumericFormat::Csv, e, b"label,accuracy\ncat,0.92\ndog,0.5\n", &ft);
        assert!(r.failure.unwrap().reason.starts_with("expected 0.9100000, got 0.92: |difference| 0.01"));
    }
}
