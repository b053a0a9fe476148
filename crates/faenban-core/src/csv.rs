//! A small RFC 4180 CSV reader for catalogue files: quoted fields, doubled
//! quotes, commas and line breaks inside quotes.

/// A row with the line it starts on (counting from 1).
pub(crate) type Row = (usize, Vec<String>);

/// Splits CSV text into rows of fields. Blank lines are skipped. An error
/// gives the line and what is wrong there.
pub(crate) fn parse(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut row_line = 1;
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
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
            '"' => return Err((line, "a quote in the middle of an unquoted field".into())),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    rows.push((row_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                row_line = line;
            }
            _ if quoted_field => {
                return Err((line, "text after the closing quote of a field".into()))
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((row_line, "a quoted field is never closed".into()));
    }
    if !field.is_empty() || !fields.is_empty() || quoted_field {
        fields.push(field);
        rows.push((row_line, fields));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks() {
        let rows = parse("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\n\"two\nlines\",x\nlast,row").unwrap();
        assert_eq!(
            rows[0],
            (1, vec!["a".into(), "b,c".into(), "say \"hi\"".into()])
        );
        assert_eq!(rows[1], (3, vec!["two\nlines".into(), "x".into()]));
        assert_eq!(rows[2], (5, vec!["last".into(), "row".into()]));
    }

    #[test]
    fn broken_quoting_names_the_line() {
        assert_eq!(parse("a,b\nc,\"open").unwrap_err().0, 2);
        assert_eq!(parse("a,b\"c\n").unwrap_err().0, 1);
        assert_eq!(parse("\"a\"b\n").unwrap_err().0, 1);
    }
}
