//! A small, correct CSV reader (RFC 4180): comma-separated fields, fields in double quotes
//! may contain commas, doubled quotes (`""` = `"`) and line breaks. A quote inside an unquoted
//! field is kept literally. `\r\n` line ends, a UTF-8 BOM and blank lines are accepted.
//! Errors carry the file and the line where the record starts.

use crate::error::{DataError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Reads CSV records one at a time.
#[derive(Debug)]
pub(crate) struct CsvReader {
    path: PathBuf,
    reader: BufReader<File>,
    line: usize,
    raw: Vec<u8>,
}

impl CsvReader {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: 0,
            raw: Vec::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads one physical line into `out` (without its line end); false at end of file.
    fn physical_line(&mut self, out: &mut String) -> Result<bool> {
        self.raw.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.raw)
            .map_err(|e| DataError::io(&self.path, e))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        let mut bytes: &[u8] = &self.raw;
        if self.line == 1 && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            bytes = &bytes[3..];
        }
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let s = std::str::from_utf8(bytes)
            .map_err(|e| DataError::syntax(&self.path, self.line, format!("invalid UTF-8: {e}")))?;
        out.push_str(s);
        Ok(true)
    }

    /// Reads the next non-blank record into `fields`; returns its first line, or None at end.
    pub(crate) fn next_record(&mut self, fields: &mut Vec<String>) -> Result<Option<usize>> {
        let mut text = String::new();
        loop {
            text.clear();
            if !self.physical_line(&mut text)? {
                return Ok(None);
            }
            if !text.trim().is_empty() {
                break;
            }
        }
        let start = self.line;
        loop {
            match split_fields(&text, fields) {
                Ok(()) => return Ok(Some(start)),
                Err(Split::OpenQuote) => {
                    text.push('\n');
                    if !self.physical_line(&mut text)? {
                        return Err(DataError::syntax(
                            &self.path,
                            start,
                            "unterminated quoted field (no closing '\"' before the end of the file)",
                        ));
                    }
                }
                Err(Split::AfterQuote(col)) => {
                    return Err(DataError::syntax(
                        &self.path,
                        start,
                        format!("unexpected character after a closing quote (character {col})"),
                    ));
                }
            }
        }
    }
}

/// Why a record could not be split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// A quoted field is still open at the end of the text.
    OpenQuote,
    /// Something other than a comma follows a closing quote (0-based char index).
    AfterQuote(usize),
}

/// Splits one record's text into fields.
pub(crate) fn split_fields(text: &str, fields: &mut Vec<String>) -> Result<(), Split> {
    fields.clear();
    let mut chars = text.chars().enumerate().peekable();
    loop {
        let mut field = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(Split::OpenQuote),
                    Some((_, '"')) => {
                        if chars.peek().is_some_and(|&(_, c)| c == '"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some((_, c)) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(());
                }
                Some((_, ',')) => fields.push(field),
                Some((i, _)) => return Err(Split::AfterQuote(i)),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(());
                    }
                    Some((_, ',')) => break,
                    Some((_, c)) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Vec<String>, Split> {
        let mut v = Vec::new();
        split_fields(s, &mut v).map(|()| v)
    }

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(split("1,2,,x").unwrap(), ["1", "2", "", "x"]);
        assert_eq!(
            split(r#"2,60756,"funny, really",1445714994"#).unwrap(),
            ["2", "60756", "funny, really", "1445714994"]
        );
        assert_eq!(
            split(r#""say ""hi""","""""#).unwrap(),
            [r#"say "hi""#, r#"""#]
        );
        assert_eq!(split(r#"a"b,c"#).unwrap(), [r#"a"b"#, "c"]);
        assert_eq!(split("x,").unwrap(), ["x", ""]);
        assert_eq!(split("\"a,").unwrap_err(), Split::OpenQuote);
        assert_eq!(split("\"a\"b,c").unwrap_err(), Split::AfterQuote(3));
    }

    #[test]
    fn multi_line_quoted_field_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "\u{feff}h1,h2\r\n1,\"two\nlines\"\r\n\n3,4\n5,\"open\n").unwrap();
        let mut r = CsvReader::open(&p).unwrap();
        let mut f = Vec::new();
        assert_eq!(r.next_record(&mut f).unwrap(), Some(1));
        assert_eq!(f, ["h1", "h2"]);
        assert_eq!(r.next_record(&mut f).unwrap(), Some(2));
        assert_eq!(f, ["1", "two\nlines"]);
        assert_eq!(r.next_record(&mut f).unwrap(), Some(5));
        assert_eq!(f, ["3", "4"]);
        let e = r.next_record(&mut f).unwrap_err();
        assert_eq!(e.line(), Some(6));
        assert!(e.to_string().contains("unterminated"), "{e}");
    }
}
