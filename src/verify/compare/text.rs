//! Byte and text helpers: the first differing byte, whether content is text, and
//! a capped unified diff excerpt.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use similar::TextDiff;

use super::numeric::clip;
use super::DiffExcerpt;

/// At most this many lines in a diff excerpt...
const MAX_LINES: usize = 40;
/// ...this many bytes...
const MAX_BYTES: usize = 4096;
/// ...and this many hunks.
const MAX_HUNKS: usize = 4;
/// Longer lines are cut.
const MAX_LINE_CHARS: usize = 200;
/// The diff gives up on an exact result after this long and approximates.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether content is text: valid UTF-8, no NUL in the first 8 KiB.
pub(crate) fn is_text(b: &[u8]) -> bool {
    !b[..b.len().min(8192)].contains(&0) && std::str::from_utf8(b).is_ok()
}

/// The offset of the first differing byte (the shorter length when one is a
/// prefix of the other); None when equal.
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    match common {
        Some(i) => Some(i as u64),
        None if a.len() == b.len() => None,
        None => Some(a.len().min(b.len()) as u64),
    }
}

/// [`first_difference`] of two files, read in chunks.
pub(crate) fn first_difference_files(a: &Path, b: &Path) -> io::Result<Option<u64>> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0; 1 << 16], vec![0; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if let Some(d) = first_difference(&ba[..na], &bb[..nb]) {
            return Ok(Some(offset + d));
        }
        if na == 0 {
            return Ok(None);
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A unified diff excerpt (3 lines of context) of two texts, capped at
/// [`MAX_HUNKS`] hunks, [`MAX_LINES`] lines and about [`MAX_BYTES`] bytes.
pub(crate) fn diff_excerpt(expected: &str, actual: &str) -> DiffExcerpt {
    let diff = TextDiff::configure().timeout(DIFF_TIMEOUT).diff_lines(expected, actual);
    let mut text = String::new();
    let mut lines = 0;
    let mut truncated = false;
    'hunks: for (i, hunk) in diff.unified_diff().context_radius(3).iter_hunks().enumerate() {
        if i == MAX_HUNKS {
            truncated = true;
            break;
        }
        let mut hunk_lines = vec![hunk.header().to_string()];
        for change in hunk.iter_changes() {
            let value = change.to_string_lossy();
            let value = value.strip_suffix('\n').unwrap_or(&value);
            hunk_lines.push(format!("{}{}", change.tag(), clip(value, MAX_LINE_CHARS)));
            if change.missing_newline() {
                hunk_lines.push("\\ No newline at end of file".into());
            }
        }
        for l in hunk_lines {
            if lines == MAX_LINES || text.len() + l.len() > MAX_BYTES {
                truncated = true;
                break 'hunks;
            }
            text.push_str(&l);
            text.push('\n');
            lines += 1;
        }
    }
    DiffExcerpt { text, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_text() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert!(is_text(b"hello\n") && !is_text(b"a\0b") && !is_text(&[0xff, 0xfe]));
    }

    #[test]
    fn large_file_offsets() {
        let d = tempfile::tempdir().unwrap();
        let mut a = vec![7u8; 200_000];
        std::fs::write(d.path().join("a"), &a).unwrap();
        a[150_001] = 8;
        std::fs::write(d.path().join("b"), &a).unwrap();
        let off = first_difference_files(&d.path().join("a"), &d.path().join("b")).unwrap();
        assert_eq!(off, Some(150_001));
        assert_eq!(first_difference_files(&d.path().join("a"), &d.path().join("a")).unwrap(), None);
    }

    #[test]
    fn excerpts_are_capped() {
        let e = "a\nb\nc\n";
        let d = diff_excerpt(e, "a\nB\nc");
        assert_eq!(d.text, "@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n\\ No newline at end of file\n");
        assert!(!d.truncated);
        let e: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let a = e.replace('5', "6");
        let d = diff_excerpt(&e, &a);
        assert!(d.truncated && d.text.lines().count() <= MAX_LINES, "{}", d.text);
    }
}
