//! Reading the queue's record files within bounds. The queue's owner can write anything
//! into them (a 4 GB sparse file, one line without a newline): every reader has a bound
//! on the whole file and one on a line (the constants beside each format), and what is
//! over a bound is named with the bound, never read into memory.

use std::io::{self, BufRead, Read};

/// One line as [`for_each_line`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Its bytes without the newline; `None` when it is longer than the line bound
    /// (not kept).
    pub bytes: Option<&'a [u8]>,
    /// Its length without the newline.
    pub len: u64,
    /// Whether it ended in a newline (the last line of a file may not: a torn record).
    pub terminated: bool,
}

/// Calls `each(line_no, line)` (from 1) for every line `r` holds, keeping at most
/// `max_line` bytes of one in memory: a longer line is given with `bytes: None`. Returns
/// the bytes read.
pub fn for_each_line(
    mut r: impl BufRead,
    max_line: usize,
    mut each: impl FnMut(usize, Line<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut line = Vec::new();
    let mut len = 0u64;
    let mut n = 0usize;
    let mut total = 0u64;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if len > 0 {
                n += 1;
                let bytes = (len <= max_line as u64).then_some(&line[..]);
                let terminated = false;
                each(
                    n,
                    Line {
                        bytes,
                        len,
                        terminated,
                    },
                )?;
            }
            return Ok(total);
        }
        let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if len <= max_line as u64 {
            let room = (max_line as u64 + 1 - len) as usize;
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        len += chunk.len() as u64;
        let used = chunk.len() + usize::from(newline);
        r.consume(used);
        total += used as u64;
        if newline {
            n += 1;
            let bytes = (len <= max_line as u64).then_some(&line[..]);
            each(
                n,
                Line {
                    bytes,
                    len,
                    terminated: true,
                },
            )?;
            line.clear();
            len = 0;
        }
    }
}

/// `r`, refused when it holds more than `max_bytes` (read up to one byte past the bound to
/// find out, never more), with an error naming `path` and `bound` (the constant's name).
pub fn at_most<'a>(
    r: impl Read + 'a,
    max_bytes: u64,
    path: &'a std::path::Path,
    bound: &'a str,
) -> impl Read + 'a {
    Bounded {
        inner: r.take(max_bytes + 1),
        max_bytes,
        seen: 0,
        path,
        bound,
    }
}

struct Bounded<'a, R> {
    inner: io::Take<R>,
    max_bytes: u64,
    seen: u64,
    path: &'a std::path::Path,
    bound: &'a str,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.max_bytes {
            return Err(over_bound(self.path, self.max_bytes, self.bound));
        }
        Ok(n)
    }
}

/// The error for a file over its bound: names the file, the bound and its size.
pub fn over_bound(path: &std::path::Path, max_bytes: u64, bound: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} holds more than {max_bytes} bytes, the bound {bound}; not read",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize) -> Vec<(usize, Option<Vec<u8>>, u64, bool)> {
        let mut out = Vec::new();
        // A small buffer: lines span reads.
        let r = io::BufReader::with_capacity(3, text);
        let total = for_each_line(r, max, |n, l| {
            out.push((n, l.bytes.map(<[u8]>::to_vec), l.len, l.terminated));
            Ok(())
        })
        .unwrap();
        assert_eq!(total, text.len() as u64);
        out
    }

    #[test]
    fn lines_at_the_bound_are_whole_and_longer_ones_are_only_measured() {
        assert_eq!(
            lines(b"abcd\nabcde\n\nab", 4),
            [
                (1, Some(b"abcd".to_vec()), 4, true),
                (2, None, 5, true),
                (3, Some(Vec::new()), 0, true),
                (4, Some(b"ab".to_vec()), 2, false),
            ]
        );
        assert!(lines(b"", 4).is_empty());
    }

    #[test]
    fn a_reader_over_its_bound_is_an_error_naming_it() {
        let path = std::path::Path::new("/q/.x");
        let mut out = Vec::new();
        at_most(&b"12345"[..], 5, path, "MAX_X")
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"12345");
        let e = at_most(&b"123456"[..], 5, path, "MAX_X")
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/q/.x holds more than 5 bytes, the bound MAX_X; not read"
        );
    }
}
