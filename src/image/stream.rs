//! Byte-level helpers shared by layer unpacking and archive reading:
//! compression sniffing, tar entry path normalisation, PAX times.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use nix::sys::time::TimeSpec;

/// How a blob is compressed, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Plain,
    Gzip,
    Zstd,
}

/// Sniff the compression from magic bytes: gzip `1f 8b`, zstd `28 b5 2f fd`.
pub(crate) fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::Plain
    }
}

/// A reader of the decompressed content of `r`, with the compression sniffed.
pub(crate) fn decompressed<'a>(mut r: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let c = sniff(&head[..n]);
    let whole = io::Cursor::new(head[..n].to_vec()).chain(r);
    Ok(match c {
        Compression::Plain => (c, Box::new(whole)),
        Compression::Gzip => (c, Box::new(flate2::read::MultiGzDecoder::new(whole))),
        Compression::Zstd => (c, Box::new(zstd::stream::read::Decoder::new(whole)?)),
    })
}

/// Split a tar entry path into safe components: strip leading `./`, refuse NUL,
/// absolute paths and `..`. An empty result is the layer root.
pub(crate) fn normalize(raw: &[u8]) -> std::result::Result<Vec<OsString>, &'static str> {
    if raw.contains(&0) {
        return Err("entry name contains a NUL byte");
    }
    let mut s = raw;
    while let Some(rest) = s.strip_prefix(b"./") {
        s = rest;
    }
    if s.starts_with(b"/") && !s.iter().all(|&b| b == b'/') {
        return Err("absolute path; layer entries must be relative");
    }
    let mut comps = Vec::new();
    for c in s.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path escapes the layer directory"),
            _ => comps.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(comps)
}

/// A PAX time, `secs[.frac]`, possibly negative.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let mut nanos: i64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    for _ in digits.len()..9 {
        nanos *= 10;
    }
    Some(match (neg, nanos) {
        (false, _) => TimeSpec::new(secs, nanos),
        (true, 0) => TimeSpec::new(-secs, 0),
        (true, _) => TimeSpec::new(-secs - 1, 1_000_000_000 - nanos),
    })
}
