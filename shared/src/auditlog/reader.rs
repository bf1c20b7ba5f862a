//! Reading an event file with bounded memory and an integrity check.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use md5::{Digest, Md5};

use super::native::Framing;
use super::{parse_with_cuts, AuditEvent, AuditLogError, ParseLimits, PartCut};

/// An event file as read: the (possibly shortened) bytes, the parts that were cut,
/// and the size and md5 of the whole file.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub bytes: Vec<u8>,
    pub cuts: Vec<PartCut>,
    pub size: u64,
    /// All zero when read by [`read_event_file_unhashed`].
    pub md5: [u8; 16],
}

impl RawEvent {
    /// Parses the bytes read.
    pub fn parse(&self, limits: &ParseLimits) -> Result<AuditEvent, AuditLogError> {
        parse_with_cuts(&self.bytes, limits, &self.cuts)
    }
}

/// Separator lines are short; a line longer than this is content.
const MAX_SEPARATOR_LINE: u64 = 64;
/// A line is held back (it may be a separator) while it is no longer than this, newline included.
const HELD_LINE: u64 = MAX_SEPARATOR_LINE + 1;

/// Reads `path` (an already-open file is used as is, so callers can open it with
/// `O_NOFOLLOW`), keeping at most `limits.max_body_bytes` of C/E/I and
/// `limits.max_part_bytes` of other parts, while hashing every byte.
pub fn read_event_file(
    path: &Path,
    file: File,
    limits: &ParseLimits,
) -> Result<RawEvent, AuditLogError> {
    read(path, file, limits, true)
}

/// [`read_event_file`] without the md5 (the shipper has no index line to compare it
/// with; the collector already did, and left a marker when it did not match).
pub fn read_event_file_unhashed(
    path: &Path,
    file: File,
    limits: &ParseLimits,
) -> Result<RawEvent, AuditLogError> {
    read(path, file, limits, false)
}

fn read(
    path: &Path,
    file: File,
    limits: &ParseLimits,
    hash: bool,
) -> Result<RawEvent, AuditLogError> {
    let io = |source| AuditLogError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut hasher = Md5::new();
    let mut size = 0u64;

    // The first line decides: JSON (one object), native (separators), or neither.
    let first = reader.fill_buf().map_err(io)?;
    let json = first.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json || first.is_empty() {
        let mut bytes = Vec::new();
        (&mut reader)
            .take(limits.max_json_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if hash {
            hasher.update(&bytes);
        }
        size += bytes.len() as u64;
        if json && size > limits.max_json_bytes {
            // Count the rest so the error names the real size.
            let rest = std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
            return Err(AuditLogError::TooLarge {
                size: size + rest,
                limit: limits.max_json_bytes,
            });
        }
        return Ok(RawEvent {
            bytes,
            cuts: Vec::new(),
            size,
            md5: hasher.finalize().into(),
        });
    }

    let mut cutter = Cutter::new(limits);
    loop {
        let chunk = reader.fill_buf().map_err(io)?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        if hash {
            hasher.update(chunk);
        }
        cutter.feed(chunk);
        size += n as u64;
        reader.consume(n);
    }
    let (bytes, cuts) = cutter.finish();
    Ok(RawEvent {
        bytes,
        cuts,
        size,
        md5: hasher.finalize().into(),
    })
}

/// Streams a native file, copying structure and at most a cap of each part's content.
struct Cutter<'l> {
    limits: &'l ParseLimits,
    out: Vec<u8>,
    /// The current line so far (only its first `MAX_SEPARATOR_LINE + 1` bytes).
    line: Vec<u8>,
    /// Bytes of the current line, in total.
    line_len: u64,
    framing: Option<Framing>,
    /// Current part letter (`0` before the first separator).
    letter: u8,
    /// Content bytes of the current part seen / kept.
    part_len: u64,
    part_kept: usize,
    cuts: Vec<PartCut>,
}

impl<'l> Cutter<'l> {
    fn new(limits: &'l ParseLimits) -> Self {
        Cutter {
            limits,
            out: Vec::new(),
            line: Vec::new(),
            line_len: 0,
            framing: None,
            letter: 0,
            part_len: 0,
            part_kept: 0,
            cuts: Vec::new(),
        }
    }

    fn cap(&self) -> usize {
        match self.letter {
            b'C' | b'E' | b'I' => self.limits.max_body_bytes,
            _ => self.limits.max_part_bytes,
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let (piece, ends_line) = match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => (&chunk[..=p], true),
                None => (chunk, false),
            };
            chunk = &chunk[piece.len()..];
            let was_held = self.line_len <= HELD_LINE;
            self.line_len += piece.len() as u64;
            if self.line_len <= HELD_LINE {
                // Could still be a separator: hold it until the line ends.
                self.line.extend_from_slice(piece);
            } else {
                if was_held {
                    let held = std::mem::take(&mut self.line);
                    self.content(&held);
                }
                self.content(piece);
            }
            if ends_line {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let held = self.line_len <= HELD_LINE;
        self.line_len = 0;
        if !held {
            return;
        }
        let bare = line.strip_suffix(b"\n").unwrap_or(&line);
        let separator = match &self.framing {
            // Blank lines may precede the first separator (serial logs have them).
            None if bare.iter().all(|b| b.is_ascii_whitespace()) => None,
            None => {
                self.framing = Framing::from_first_line(bare);
                self.framing.as_ref().map(|_| b'A')
            }
            Some(f) => f
                .separator_letter(bare)
                .filter(|&next| f.may_follow(self.letter, next)),
        };
        match separator {
            Some(next) => {
                self.close_part();
                self.out.extend_from_slice(&line);
                self.letter = next;
            }
            None => self.content(&line),
        }
    }

    fn content(&mut self, bytes: &[u8]) {
        self.part_len += bytes.len() as u64;
        let room = self.cap().saturating_sub(self.part_kept);
        let keep = bytes.len().min(room);
        self.out.extend_from_slice(&bytes[..keep]);
        self.part_kept += keep;
    }

    fn close_part(&mut self) {
        if self.part_len > self.part_kept as u64 {
            // The "\n" before a separator is not content; a cut part lost its own.
            self.out.push(b'\n');
            self.cuts.push(PartCut {
                letter: char::from(self.letter),
                original_len: self.part_len.saturating_sub(1),
            });
        }
        self.part_len = 0;
        self.part_kept = 0;
    }

    fn finish(mut self) -> (Vec<u8>, Vec<PartCut>) {
        let rest = std::mem::take(&mut self.line);
        if self.line_len > 0 && self.line_len <= HELD_LINE {
            self.content(&rest);
        }
        if self.part_len > self.part_kept as u64 {
            self.cuts.push(PartCut {
                letter: char::from(self.letter),
                original_len: self.part_len,
            });
        }
        (self.out, self.cuts)
    }
}
