//! A small RFC 4180 CSV reader and writer for catalogues, imports and
//! exports: quoted fields, doubled quotes, commas and line breaks inside
//! quotes. A broken row is reported with its line and reading goes on at the
//! next line, so one bad row in a household list does not hide the others.

use std::borrow::Cow;

/// A row and the line it starts on (counting from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The line the row starts on.
    pub line: usize,
    /// Its fields, unquoted.
    pub fields: Vec<String>,
}

/// A row that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenRow {
    /// The line the row starts on.
    pub line: usize,
    /// What is wrong there.
    pub problem: &'static str,
}

/// The rows of CSV text, in order; blank lines are skipped. A leading
/// byte-order mark (as Excel writes) is ignored.
pub fn rows(text: &str) -> Rows<'_> {
    Rows {
        text: text.strip_prefix('\u{feff}').unwrap_or(text),
        position: 0,
        line: 1,
    }
}

/// Every row, or the first broken one: for files that must be whole.
pub fn parse(text: &str) -> Result<Vec<Row>, BrokenRow> {
    rows(text).collect()
}

/// A field as it must be written: quoted when it holds a comma, a quote or
/// a line break; and a field a spreadsheet would run as a formula (one that
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return, such as
/// `=HYPERLINK(…)` typed into a note) begins with `'`, which makes it text.
pub fn cell(text: &str) -> Cow<'_, str> {
    let text: Cow<'_, str> = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    };
    if text.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        text
    }
}

/// The iterator returned by [`rows`].
#[derive(Debug)]
pub struct Rows<'a> {
    text: &'a str,
    position: usize,
    line: usize,
}

impl Rows<'_> {
    /// Gives up on the row that started at `row_start`/`row_line`: reading
    /// resumes on the line after the one it started on.
    fn skip_broken(
        &mut self,
        row_start: usize,
        row_line: usize,
        problem: &'static str,
    ) -> BrokenRow {
        let rest = &self.text[row_start..];
        self.position = rest
            .find('\n')
            .map_or(self.text.len(), |i| row_start + i + 1);
        self.line = row_line + 1;
        BrokenRow {
            line: row_line,
            problem,
        }
    }
}

impl Iterator for Rows<'_> {
    type Item = Result<Row, BrokenRow>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.position >= self.text.len() {
                return None;
            }
            let row_start = self.position;
            let row_line = self.line;
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut in_quotes = false;
            let mut quoted_field = false;
            let mut chars = self.text[row_start..].char_indices().peekable();
            let mut end = None;
            while let Some((offset, c)) = chars.next() {
                if in_quotes {
                    match c {
                        '"' if chars.peek().map(|&(_, next)| next) == Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        '"' => in_quotes = false,
                        '\n' => {
                            self.line += 1;
                            field.push(c);
                        }
                        _ => field.push(c),
                    }
                    continue;
                }
                match c {
                    '"' if field.is_empty() && !quoted_field => {
                        in_quotes = true;
                        quoted_field = true;
                    }
                    '"' => {
                        return Some(Err(self.skip_broken(
                            row_start,
                            row_line,
                            "a quote in the middle of an unquoted field",
                        )))
                    }
                    ',' => {
                        fields.push(std::mem::take(&mut field));
                        quoted_field = false;
                    }
                    '\r' if chars.peek().map(|&(_, next)| next) == Some('\n') => {}
                    '\n' => {
                        end = Some(row_start + offset + 1);
                        break;
                    }
                    _ if quoted_field => {
                        return Some(Err(self.skip_broken(
                            row_start,
                            row_line,
                            "text after the closing quote of a field",
                        )))
                    }
                    _ => field.push(c),
                }
            }
            if in_quotes {
                return Some(Err(self.skip_broken(
                    row_start,
                    row_line,
                    "a quoted field is never closed",
                )));
            }
            self.position = end.unwrap_or(self.text.len());
            self.line += 1;
            let blank = fields.is_empty() && field.trim().is_empty() && !quoted_field;
            if blank {
                continue;
            }
            fields.push(field);
            return Some(Ok(Row {
                line: row_line,
                fields,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cell, parse, rows, Row};

    fn row(line: usize, fields: &[&str]) -> Row {
        Row {
            line,
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_written_as_text() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\",\"คลิก\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"คลิก\"\")\""
        );
        for text in ["+1", "-1+1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                cell(text).trim_start_matches('"').starts_with('\''),
                "{text}"
            );
        }
        assert_eq!(cell("12 หมู่ 1"), "12 หมู่ 1");
        assert_eq!(cell("4001-012345-6"), "4001-012345-6");
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks() {
        let rows = parse("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\n\"two\nlines\",x\nlast,row").unwrap();
        assert_eq!(rows[0], row(1, &["a", "b,c", "say \"hi\""]));
        assert_eq!(rows[1], row(3, &["two\nlines", "x"]));
        assert_eq!(rows[2], row(5, &["last", "row"]));
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn broken_quoting_names_the_line() {
        assert_eq!(parse("a,b\nc,\"open").unwrap_err().line, 2);
        assert_eq!(parse("a,b\"c\n").unwrap_err().line, 1);
        assert_eq!(parse("\"a\"b\n").unwrap_err().line, 1);
    }

    #[test]
    fn reading_goes_on_after_a_broken_row() {
        let all: Vec<_> =
            rows("\u{feff}h1,h2\nok,1\nbad\"row,2\n\"never closed,3\nlast,4\n").collect();
        assert_eq!(all[0], Ok(row(1, &["h1", "h2"])));
        assert_eq!(all[1], Ok(row(2, &["ok", "1"])));
        assert_eq!(all[2].as_ref().unwrap_err().line, 3);
        assert_eq!(all[3].as_ref().unwrap_err().line, 4);
        assert_eq!(all[4], Ok(row(5, &["last", "4"])));
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn written_cells_read_back_the_same() {
        let texts = ["plain", "a,b", "say \"hi\"", "two\nlines", "บ้านเลขที่ 12/3"];
        let line: Vec<String> = texts.iter().map(|t| cell(t).into_owned()).collect();
        let read = parse(&line.join(",")).unwrap();
        assert_eq!(read[0].fields, texts);
    }
}
