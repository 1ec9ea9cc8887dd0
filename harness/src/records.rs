//! Line-exact CSV record reader for dataset files: RFC 4180 quoting, LF or CRLF line ends, a
//! leading UTF-8 BOM, skipped blank lines, and the real 1-based file line of every record.
//!
//! Why not `csv::Reader`: its record positions point at the blank lines it skips and count a
//! CRLF line end late, and DOMAIN.md wants every error to name the real line of the file.

use std::io::{self, BufRead};

/// One record: its fields (unquoted, `""` unescaped) in one buffer, and where it starts.
#[derive(Debug, Default)]
pub(crate) struct Record {
    buf: Vec<u8>,
    ends: Vec<usize>,
    line: u64,
}

impl Record {
    /// Number of fields.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` (0-based), if the record has it.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }

    /// The 1-based file line the record starts on.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    fn end_field(&mut self) {
        self.ends.push(self.buf.len());
    }
}

/// What can go wrong below the level of fields.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be read.
    Io(io::Error),
    /// A quoted field is still open at the end of the file.
    Unterminated {
        /// Line the record starts on.
        line: u64,
        /// 0-based index of the open field.
        field: usize,
    },
    /// Something other than `,` or the line end follows a closing quote.
    AfterQuote {
        /// Line where it happens.
        line: u64,
        /// 0-based index of the field.
        field: usize,
    },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Where the parser stands at the end of a physical line.
enum Parsed {
    /// The record is complete.
    Done,
    /// A quoted field runs on into the next line.
    InQuotes,
}

/// Reads records from a buffered source, one physical line at a time.
pub(crate) struct RecordReader<R> {
    src: R,
    line_buf: Vec<u8>,
    /// Number of the next physical line to read, 1-based.
    next_line: u64,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: BufRead> RecordReader<R> {
    /// A reader at the start of a file.
    pub(crate) fn new(src: R) -> Self {
        RecordReader {
            src,
            line_buf: Vec::with_capacity(256),
            next_line: 1,
        }
    }

    /// Read one physical line into `line_buf`; returns its number and the length of its line
    /// end (0, 1 for LF, 2 for CRLF), or `None` at the end of the file.
    fn next_physical(&mut self) -> io::Result<Option<(u64, usize)>> {
        self.line_buf.clear();
        if self.src.read_until(b'\n', &mut self.line_buf)? == 0 {
            return Ok(None);
        }
        let line = self.next_line;
        self.next_line += 1;
        if line == 1 && self.line_buf.starts_with(BOM) {
            self.line_buf.drain(..BOM.len());
        }
        let eol = match self.line_buf.as_slice() {
            [.., b'\r', b'\n'] => 2,
            [.., b'\n'] => 1,
            _ => 0,
        };
        Ok(Some((line, eol)))
    }

    /// Read the next record into `rec`, skipping blank lines; `false` at the end of the file.
    pub(crate) fn read(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        rec.clear();
        let eol = loop {
            match self.next_physical()? {
                None => return Ok(false),
                Some((line, eol)) => {
                    if self.line_buf.len() == eol {
                        continue; // blank line: takes no record
                    }
                    rec.line = line;
                    break eol;
                }
            }
        };
        let mut eol = eol;
        let mut in_quotes = false;
        loop {
            let content_len = self.line_buf.len() - eol;
            let content = &self.line_buf[..content_len];
            let line = self.next_line - 1;
            match parse_piece(rec, content, in_quotes, line)? {
                Parsed::Done => return Ok(true),
                Parsed::InQuotes => {
                    // The line end belongs to the quoted field.
                    rec.buf.extend_from_slice(&self.line_buf[content_len..]);
                    in_quotes = true;
                    match self.next_physical()? {
                        Some((_, next_eol)) => eol = next_eol,
                        None => {
                            return Err(ReadError::Unterminated {
                                line: rec.line,
                                field: rec.len(),
                            })
                        }
                    }
                }
            }
        }
    }
}

/// Parse one physical line's content into `rec`, starting inside a quoted field if
/// `in_quotes`.
fn parse_piece(
    rec: &mut Record,
    content: &[u8],
    mut in_quotes: bool,
    line: u64,
) -> Result<Parsed, ReadError> {
    let mut i = 0;
    loop {
        if !in_quotes {
            // At the start of a field.
            if content.get(i) == Some(&b'"') {
                in_quotes = true;
                i += 1;
                continue;
            }
            let end = content[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(content.len(), |p| i + p);
            rec.buf.extend_from_slice(&content[i..end]);
            rec.end_field();
            if end == content.len() {
                return Ok(Parsed::Done);
            }
            i = end + 1;
        } else {
            match content[i..].iter().position(|&b| b == b'"') {
                None => {
                    rec.buf.extend_from_slice(&content[i..]);
                    return Ok(Parsed::InQuotes);
                }
                Some(p) => {
                    rec.buf.extend_from_slice(&content[i..i + p]);
                    i += p + 1;
                    match content.get(i) {
                        Some(b'"') => {
                            rec.buf.push(b'"');
                            i += 1;
                        }
                        None => {
                            rec.end_field();
                            return Ok(Parsed::Done);
                        }
                        Some(b',') => {
                            rec.end_field();
                            in_quotes = false;
                            i += 1;
                        }
                        Some(_) => {
                            return Err(ReadError::AfterQuote {
                                line,
                                field: rec.len(),
                            })
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<(u64, Vec<String>)>, ReadError> {
        let mut r = RecordReader::new(text.as_bytes());
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec)? {
            let fields = (0..rec.len())
                .map(|i| String::from_utf8(rec.get(i).unwrap().to_vec()).unwrap())
                .collect();
            out.push((rec.line(), fields));
        }
        Ok(out)
    }

    #[test]
    fn lines_are_real_file_lines() {
        let got =
            all("\u{feff}h,i\n1,a\n\n2,b\r\n\r\n\r\n3,\"c\nd\"\n4,\n\"5\",\"x\"\"y\"").unwrap();
        let want: Vec<(u64, Vec<String>)> = vec![
            (1, vec!["h".into(), "i".into()]),
            (2, vec!["1".into(), "a".into()]),
            (4, vec!["2".into(), "b".into()]),
            (7, vec!["3".into(), "c\nd".into()]),
            (9, vec!["4".into(), "".into()]),
            (10, vec!["5".into(), "x\"y".into()]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_inside_quotes_is_kept_and_spaces_are_data() {
        let got = all("a,\"b\r\nc\"\r\n  ,x\r\n").unwrap();
        assert_eq!(got[0], (1, vec!["a".into(), "b\r\nc".into()]));
        assert_eq!(got[1], (3, vec!["  ".into(), "x".into()]));
    }

    #[test]
    fn broken_quotes_are_errors() {
        assert!(matches!(
            all("a\n\"b,c\n"),
            Err(ReadError::Unterminated { line: 2, field: 0 })
        ));
        assert!(matches!(
            all("a\nx,\"b\"c\n"),
            Err(ReadError::AfterQuote { line: 2, field: 1 })
        ));
    }
}
