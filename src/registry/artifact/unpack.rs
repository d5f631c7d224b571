//! Unpacking a file layer of a fetched artifact, whose every byte a stranger
//! may have chosen.
//!
//! The tar crate's entry reader, not its `unpack`: each entry is made relative
//! to directory descriptors opened with `O_NOFOLLOW`, one component at a time,
//! so no symlink (the artifact's own or anyone's) is ever written through.
//! Only regular files, directories and symlinks are made; a hardlink, device
//! node, fifo or other entry type refuses the whole layer, naming the entry,
//! as do absolute paths, `..`, NUL bytes, an entry made twice, a first
//! component the layer does not expect, and a top-level entry that is a
//! symlink. Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` and
//! belong to the caller; modes lose setuid, setgid and sticky bits and group
//! and other write (files `& 0755`; directories `& 0755 | 0700`). The layer is
//! made in a 0700 staging directory and renamed into place whole; the entry
//! and byte limits of an image layer apply.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, mkdirat, Mode};
use nix::unistd::symlinkat;
use tar::EntryType;

use super::Error;
use crate::image::Limits;

/// The mode bits an unpacked file keeps.
pub const FILE_MODE_MASK: u32 = 0o755;

/// Which first components a layer may hold: `stdout` and `stderr`, or the
/// indices of the record's inputs or outputs.
pub enum Tops<'a> {
    /// Exactly these names.
    Names(&'a [&'a str]),
    /// `0` to `n - 1`.
    Indices(usize),
}

impl Tops<'_> {
    fn allows(&self, name: &[u8]) -> bool {
        match self {
            Tops::Names(names) => names.iter().any(|n| n.as_bytes() == name),
            Tops::Indices(n) => std::str::from_utf8(name)
                .ok()
                .filter(|s| s == &"0" || !s.starts_with('0'))
                .and_then(|s| s.parse::<usize>().ok())
                .is_some_and(|i| i < *n),
        }
    }

    fn describe(&self) -> String {
        match self {
            Tops::Names(names) => names.join(" or "),
            Tops::Indices(0) => "nothing (the record has none)".into(),
            Tops::Indices(n) => format!("0 to {}, one per recorded path", n - 1),
        }
    }
}

/// Unpack the layer `title` (a gzip'd tar at `blob`) into `dest`, which must
/// not exist, staging it in `scratch` (the store's private scratch).
pub fn unpack(
    blob: &Path,
    title: &str,
    dest: &Path,
    scratch: &Path,
    tops: &Tops<'_>,
    limits: Limits,
) -> Result<(), Error> {
    let staging = scratch.join(format!("unpacked-{title}"));
    let _ = fs::remove_dir_all(&staging);
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source: io::Error| Error::Io { op, path: p, source }
    };
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(io_err("create", &staging))?;
    let made = (|| {
        let root = nix::fcntl::open(&staging, dir_flags(), Mode::empty())
            .map_err(|e| io_err("open", &staging)(e.into()))?;
        let f = File::open(blob).map_err(io_err("open", blob))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
        let mut u = Unpacker { title, root, tops, limits, entries: 0, bytes: 0, dirs: BTreeMap::new() };
        let refuse = |entry: &str, why: String| Error::Invalid {
            what: format!("{title} of the artifact, entry {}", crate::record::for_terminal(entry)),
            why,
        };
        for entry in archive.entries().map_err(io_err("read", blob))? {
            let mut entry = entry.map_err(|e| refuse("?", format!("not a valid tar: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            u.entry(&mut entry, &raw).map_err(|why| refuse(&String::from_utf8_lossy(&raw), why))?;
        }
        u.finish().map_err(|why| refuse(".", why))
    })();
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    fs::rename(&staging, dest).map_err(|e| {
        let _ = fs::remove_dir_all(&staging);
        io_err("rename", dest)(e)
    })
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

struct Unpacker<'a> {
    title: &'a str,
    root: OwnedFd,
    tops: &'a Tops<'a>,
    limits: Limits,
    entries: u64,
    bytes: u64,
    /// Directories made, with the mode to give them once their entries are in.
    dirs: BTreeMap<Vec<OsString>, u32>,
}

type EntryResult<T = ()> = Result<T, String>;

/// An entry's path as safe components: a leading `./` stripped; NUL, absolute
/// paths and `..` refused.
fn components(raw: &[u8]) -> EntryResult<Vec<OsString>> {
    if raw.contains(&0) {
        return Err("its name holds a NUL byte".into());
    }
    let mut s = raw;
    while let Some(rest) = s.strip_prefix(b"./") {
        s = rest;
    }
    if s.starts_with(b"/") {
        return Err("an absolute path; entries must be relative".into());
    }
    let mut comps = Vec::new();
    for c in s.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("a `..` component, which would leave the layer".into()),
            _ => comps.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    if comps.is_empty() {
        return Err("names the layer's root".into());
    }
    Ok(comps)
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, raw: &[u8]) -> EntryResult {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(e.header().size().unwrap_or(0).max(e.size()));
        if self.entries > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            return Err(format!(
                "the layer expands past {} entries or {} bytes, the limits of an image layer; refused",
                self.limits.max_entries, self.limits.max_bytes
            ));
        }
        let kind = e.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let comps = components(raw)?;
        if !self.tops.allows(comps[0].as_bytes()) {
            return Err(format!("{} holds only {}", self.title, self.tops.describe()));
        }
        let file_like = matches!(kind, EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse);
        let is_dir = kind == EntryType::Directory || (file_like && raw.ends_with(b"/"));
        let mode = e.header().mode().map_err(|e| format!("its mode: {e}"))? & 0o7777;
        let (name, parents) = comps.split_last().ok_or("no name")?;
        let parent = self.open_parent(parents)?;
        if is_dir {
            match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                Err(Errno::EEXIST) if self.dirs.contains_key(&comps) => {}
                Err(Errno::EEXIST) => return Err("it is made twice".into()),
                Err(e) => return Err(format!("mkdir: {e}")),
            }
            self.dirs.insert(comps, (mode & FILE_MODE_MASK) | 0o700);
            return Ok(());
        }
        if comps.len() == 1 && !file_like {
            return Err(format!(
                "a {} at the top of the layer; only a file or a directory may be there",
                describe(kind)
            ));
        }
        match kind {
            _ if file_like => {
                let flags =
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(&parent, name.as_os_str(), flags, Mode::from_bits_truncate(0o600)).map_err(
                    |e| if e == Errno::EEXIST { "it is made twice".into() } else { format!("create: {e}") },
                )?;
                let mut file = File::from(fd);
                let declared = e.size();
                let n =
                    io::copy(&mut (&mut *e).take(declared), &mut file).map_err(|e| format!("write: {e}"))?;
                if n != declared {
                    return Err(format!("the tar ends inside it ({n} of {declared} bytes)"));
                }
                fchmod(file.as_fd(), Mode::from_bits_truncate(mode & FILE_MODE_MASK))
                    .map_err(|e| format!("chmod: {e}"))
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or("a symlink without a target")?.into_owned();
                if target.contains(&0) || target.is_empty() {
                    return Err("a symlink target that is empty or holds a NUL byte".into());
                }
                symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str()).map_err(|e| {
                    if e == Errno::EEXIST {
                        "it is made twice".into()
                    } else {
                        format!("symlink: {e}")
                    }
                })
            }
            other => Err(format!(
                "a {}; an artifact holds only files, directories and symlinks, so the layer is refused",
                describe(other)
            )),
        }
    }

    /// The directory at `parents`, opened one component at a time without
    /// following symlinks; missing ones are made (0700).
    fn open_parent(&self, parents: &[OsString]) -> EntryResult<OwnedFd> {
        let mut dir = self.root.try_clone().map_err(|e| format!("dup: {e}"))?;
        for (i, c) in parents.iter().enumerate() {
            let next = match openat(&dir, c.as_os_str(), dir_flags(), Mode::empty()) {
                Err(Errno::ENOENT) => {
                    mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| format!("mkdir: {e}"))?;
                    openat(&dir, c.as_os_str(), dir_flags(), Mode::empty())
                }
                other => other,
            };
            dir = next.map_err(|e| {
                let at = parents[..=i].iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
                match e {
                    Errno::ELOOP | Errno::ENOTDIR => {
                        format!("{at} is a symlink or not a directory, and nothing is written through it")
                    }
                    e => format!("open {at}: {e}"),
                }
            })?;
        }
        Ok(dir)
    }

    /// Give the directories their modes, now that their entries are made.
    fn finish(self) -> EntryResult {
        for (comps, mode) in &self.dirs {
            let fd = self.open_parent(comps)?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(*mode)).map_err(|e| format!("chmod: {e}"))?;
        }
        Ok(())
    }
}

fn describe(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Link => "hardlink",
        EntryType::Symlink => "symlink",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::Directory => "directory",
        _ => "entry of an unsupported type",
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
