//! Digests of input and output trees: every file's sha256, and one digest of
//! the whole tree, so two trees are equal exactly when their digests are. An
//! output's digest is over the sorted listing ([`Scheme::Listing`]); an
//! input's is a Merkle digest ([`Scheme::Merkle`], see `merkle`), its files
//! hashed on every core and found in a per-user digest cache when unchanged
//! (see `cache`), with a progress line when that takes a while.
//!
//! The walk goes through file descriptors: each entry is opened with O_NOFOLLOW
//! relative to its opened directory, never by path, so a symlink or a rename
//! during the walk cannot send it elsewhere. An output's walk is bounded (bytes
//! hashed per run, entries, depth) because its content comes from the
//! container: what a bound leaves out is recorded, never silently skipped. It
//! also cleans what must not stay on the host (setuid/setgid bits, file
//! capabilities, device nodes, fifos, sockets), so the digest is of what is
//! left on disk.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher, HashingReader};

pub mod cache;
mod hashing;
mod merkle;
mod progress;

/// The default bound on the bytes of output files one run hashes (`--output-digest-limit`).
pub const DEFAULT_DIGEST_LIMIT: u64 = 32 << 30;
/// The most entries listed in one bounded tree (an output); a container can
/// make millions of empty files.
pub const MAX_ENTRIES: usize = 1_000_000;
/// The deepest directory listed (each level holds a descriptor during the walk).
pub const MAX_DEPTH: usize = 256;
/// A file counts as sparse when less than 1/SPARSE_RATIO of it is allocated.
const SPARSE_RATIO: u64 = 8;

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the tree's root (`.` for a tree that is a single file).
    pub path: String,
    /// `file`, `dir`, `symlink` or `other` (devices, fifos, sockets: not read).
    pub kind: String,
    /// Size in bytes (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 of the content (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Link target (symlinks only; never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Permission bits (files and directories), so a run that depends on its
    /// umask shows a difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Why a file's content was not digested (a bound was hit): the file
    /// cannot be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// Something exprun changed in an output after the run, before digesting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleaned {
    /// Path relative to the tree's root.
    pub path: String,
    /// What was there and what exprun did.
    pub change: String,
}

/// How a tree's digest is made from its entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// sha256 over the sorted listing, one line per entry (kind, path, size,
    /// mode, digest or target): outputs, build sources, and the inputs of
    /// records written before inputs had Merkle digests.
    #[default]
    Listing,
    /// A Merkle digest: each directory's over its children's name, kind,
    /// mode, size and digest (see `merkle`): inputs.
    Merkle,
}

impl Scheme {
    /// Whether this is the scheme a record without one means.
    pub fn is_listing(&self) -> bool {
        *self == Scheme::Listing
    }

    /// The digest of a whole tree (nothing left out) with these entries,
    /// sorted by path, under this scheme.
    pub fn of_entries(self, entries: &[FileEntry]) -> Digest {
        match self {
            Scheme::Listing => listing_digest(entries),
            Scheme::Merkle => merkle::digest(entries, None),
        }
    }
}

/// A tree's digest and contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDigest {
    /// The tree's digest, made as `scheme` says.
    pub digest: Digest,
    /// How `digest` was made; a record without it has a listing digest.
    #[serde(default, skip_serializing_if = "Scheme::is_listing")]
    pub scheme: Scheme,
    /// Number of regular files.
    pub files: u64,
    /// Total bytes of regular files.
    pub bytes: u64,
    /// Every entry, sorted by path.
    pub entries: Vec<FileEntry>,
    /// Why the tree is not whole: entries left out of the listing, or files not
    /// digested. Such a tree cannot be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// What exprun changed before digesting (the digest is of what is left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleaned: Vec<Cleaned>,
}

/// What an output may keep on the host (`--output SRC:DST:suid,dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// Setuid and setgid bits and file capabilities of files.
    #[serde(default)]
    pub suid: bool,
    /// Device nodes, fifos and sockets.
    #[serde(default)]
    pub dev: bool,
}

impl Keep {
    /// Everything kept: inputs and other trees exprun only reads.
    pub const ALL: Keep = Keep { suid: true, dev: true };

    /// Nothing kept beyond plain files, directories and symlinks.
    pub fn is_default(&self) -> bool {
        *self == Keep::default()
    }
}

/// How many bytes of file content the digests of one run may still read.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    limit: Option<u64>,
    left: u64,
}

impl Budget {
    /// No bound on bytes or entries (trees the user gave: inputs, build
    /// sources; outputs with `--output-digest-limit none`).
    pub fn unlimited() -> Budget {
        Budget { limit: None, left: u64::MAX }
    }

    /// At most `limit` bytes, over every tree digested with this budget.
    pub fn of(limit: u64) -> Budget {
        Budget { limit: Some(limit), left: limit }
    }

    fn max_entries(&self) -> usize {
        if self.limit.is_some() {
            MAX_ENTRIES
        } else {
            usize::MAX
        }
    }

    fn take(&mut self, size: u64) -> bool {
        let fits = size <= self.left;
        if fits {
            self.left -= size;
        }
        fits
    }
}

/// Digest the tree at `root` (a directory or a single file). `root` itself is
/// followed if it is a symlink, as the bind mount follows it; symlinks inside are
/// recorded, never followed; special files are listed, not read. A listing
/// digest, one file at a time, without the cache: build sources.
pub fn digest_tree(root: &Path) -> io::Result<TreeDigest> {
    let fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    digest_at(fd.as_fd(), &mut Budget::unlimited(), Keep::ALL)
}

/// Digest the tree `root` refers to (any descriptor, `O_PATH` included),
/// reading at most what `budget` has left and removing what `keep` does not
/// keep: outputs, whose content the container wrote, so the cache is never
/// asked about them.
pub fn digest_at(root: BorrowedFd<'_>, budget: &mut Budget, keep: Keep) -> io::Result<TreeDigest> {
    let mut w = Walker::new(budget, keep, None);
    w.root(root)?;
    Ok(w.finish(Scheme::Listing))
}

/// Digest the input at `root` as [`digest_tree`] walks it, with a Merkle
/// digest: its files hashed on every core, those unchanged since an earlier
/// digest found in the digest cache under `cache_dir` instead (when given and
/// trusted: see `cache`), and a progress line on stderr naming `label` when
/// that takes longer than a second.
pub fn digest_input(root: &Path, label: &str, cache_dir: Option<&Path>) -> io::Result<TreeDigest> {
    let fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    let root_st = fstat(fd.as_fd())?;
    let mut cache = cache_dir.map(|dir| cache::Cache::open(dir, &root_st));
    for note in cache.iter_mut().flat_map(|c| c.take_notes()) {
        crate::error::print(&format_args!("note: {note}"));
    }
    let mut budget = Budget::unlimited();
    let progress = progress::Progress::stderr(label);
    let (walked, done) = hashing::with_hashers(&progress, |queue| {
        let mut w =
            Walker::new(&mut budget, Keep::ALL, Some(hashing::Inputs { queue, cache: cache.as_mut() }));
        w.root(fd.as_fd())?;
        Ok((w.entries, w.cleaned, w.left_out))
    })?;
    let (mut entries, cleaned, left_out) = walked;
    for d in done {
        let e = &mut entries[d.index];
        e.digest = Some(d.digest);
        e.size = Some(d.size);
        if let (Some(c), Some(fresh)) = (cache.as_mut(), d.fresh) {
            c.keep(fresh);
        }
    }
    if let Some(c) = cache {
        c.save();
    }
    let w = Walker { budget: &mut budget, keep: Keep::ALL, entries, cleaned, left_out, inputs: None };
    Ok(w.finish(Scheme::Merkle))
}

struct Walker<'a, 'q> {
    budget: &'a mut Budget,
    keep: Keep,
    entries: Vec<FileEntry>,
    cleaned: Vec<Cleaned>,
    left_out: Option<String>,
    /// An input's files go to the hashers, or come from the cache.
    inputs: Option<hashing::Inputs<'q>>,
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn entry(path: String, kind: &str) -> FileEntry {
    FileEntry { path, kind: kind.into(), size: None, digest: None, target: None, mode: None, unread: None }
}

fn join(rel: &str, name: &OsStr) -> String {
    let name = name.to_string_lossy();
    if rel.is_empty() {
        name.into_owned()
    } else {
        format!("{rel}/{name}")
    }
}

fn unread_summary(n: usize) -> String {
    format!("{n} file(s) not digested (see their entries)")
}

impl TreeDigest {
    /// Whether `now` is the tree this digest was taken of: digests compared
    /// under this digest's scheme (for a record older than Merkle digests,
    /// the listing digest of `now`'s entries).
    pub fn matches(&self, now: &TreeDigest) -> bool {
        if self.scheme == now.scheme {
            return self.digest == now.digest;
        }
        self.incomplete.is_none()
            && now.incomplete.is_none()
            && self.scheme.of_entries(&now.entries) == self.digest
    }

    /// Why the listing itself was cut short (entries left out, not only files
    /// left unread), if it was.
    pub fn listing_cut(&self) -> Option<&str> {
        let why = self.incomplete.as_deref()?;
        let unread = self.entries.iter().filter(|e| e.unread.is_some()).count();
        (unread == 0 || why != unread_summary(unread)).then_some(why)
    }
}

/// The digest of a whole tree (nothing left out) with these entries, sorted
/// by path: [`TreeDigest::digest`] computed from a listing made elsewhere (the
/// archive `push --run` writes), so both agree by construction.
pub fn listing_digest(entries: &[FileEntry]) -> Digest {
    let mut h = Hasher::new();
    hash_entries(&mut h, entries);
    h.finish().0
}

fn hash_entries(h: &mut Hasher, entries: &[FileEntry]) {
    for e in entries {
        let detail = e
            .digest
            .as_ref()
            .map(|d| d.to_string())
            .or_else(|| e.target.clone())
            .or_else(|| e.unread.as_ref().map(|_| "unread".to_string()))
            .unwrap_or_default();
        let mode = e.mode.map(|m| format!("{m:04o}")).unwrap_or_default();
        let line = format!("{}\t{}\t{}\t{mode}\t{}\n", e.kind, e.path, e.size.unwrap_or(0), detail);
        h.update(line.as_bytes());
    }
}

/// `512 B`, `1.5 KiB`, `20.0 GiB`, `1.0 TiB`: sizes as people read them, in the
/// record's reasons, `exprun images` and the comparisons of `verify`.
pub fn size_text(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

impl<'a, 'q> Walker<'a, 'q> {
    fn new(budget: &'a mut Budget, keep: Keep, inputs: Option<hashing::Inputs<'q>>) -> Self {
        Walker { budget, keep, entries: Vec::new(), cleaned: Vec::new(), left_out: None, inputs }
    }

    fn root(&mut self, root: BorrowedFd<'_>) -> io::Result<()> {
        let seen = cache::now_ns();
        let st = fstat(root)?;
        match kind_of(&st) {
            SFlag::S_IFDIR => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                self.walk(openat(root, ".", flags, Mode::empty())?, "", 1)
            }
            // A single file: reopened through its own descriptor, not by name.
            SFlag::S_IFREG if self.inputs.is_some() => {
                self.input_file(root.try_clone_to_owned()?, ".".into(), &st, seen)
            }
            SFlag::S_IFREG => self.file(root.try_clone_to_owned()?, ".".into(), &st),
            // A device given as a whole input is listed, never read (nor removed).
            _ => {
                self.entries.push(entry(".".into(), "other"));
                Ok(())
            }
        }
    }

    fn walk(&mut self, dir: OwnedFd, rel: &str, depth: usize) -> io::Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        for e in Dir::from_fd(dir.try_clone()?)?.iter() {
            let e = e?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        // Sorted, so that what a bound leaves out does not depend on directory order.
        names.sort();
        for name in names {
            if self.entries.len() >= self.budget.max_entries() {
                self.left_out.get_or_insert_with(|| {
                    format!("more than {MAX_ENTRIES} entries: the rest were not listed")
                });
                return Ok(());
            }
            let path = join(rel, &name);
            // An input's file the cache knows is not even opened.
            if self.inputs.is_some() {
                let st = match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(nix::errno::Errno::ENOENT) => continue,
                    Err(e) => return Err(io::Error::from(e)),
                };
                if kind_of(&st) == SFlag::S_IFREG && self.input_from_cache(&path, &st) {
                    continue;
                }
            }
            let fd = match openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Removed by someone else since the listing.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(io::Error::from(e)),
            };
            let seen = cache::now_ns();
            let st = fstat(fd.as_fd())?;
            match kind_of(&st) {
                SFlag::S_IFDIR => {
                    let mut e = entry(path.clone(), "dir");
                    e.mode = Some(st.st_mode & 0o7777);
                    self.entries.push(e);
                    if depth >= MAX_DEPTH {
                        self.left_out.get_or_insert_with(|| {
                            format!(
                                "directories deeper than {MAX_DEPTH} levels (first: {path}) were not listed"
                            )
                        });
                        continue;
                    }
                    let sub = openat(
                        fd.as_fd(),
                        ".",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    self.walk(sub, &path, depth + 1)?;
                }
                SFlag::S_IFREG if self.inputs.is_some() => self.input_file(fd, path, &st, seen)?,
                SFlag::S_IFREG => self.file(fd, path, &st)?,
                SFlag::S_IFLNK => {
                    let mut e = entry(path, "symlink");
                    let target = nix::fcntl::readlinkat(fd.as_fd(), "")?;
                    e.target = Some(target.to_string_lossy().into_owned());
                    self.entries.push(e);
                }
                other => self.special(dir.as_fd(), &name, path, other, &st)?,
            }
        }
        Ok(())
    }

    /// A regular file: its set-id bits cleared unless kept, then its content
    /// hashed if the budget allows.
    fn file(&mut self, fd: OwnedFd, path: String, st: &FileStat) -> io::Result<()> {
        let file = crate::fsutil::reopen_for_reading(fd.as_fd())?;
        let mut mode = st.st_mode & 0o7777;
        if mode & 0o6000 != 0 && !self.keep.suid {
            let cleared = mode & !0o6000;
            let bits = match mode & 0o6000 {
                0o6000 => "setuid and setgid bits",
                0o4000 => "setuid bit",
                _ => "setgid bit",
            };
            let change = match fchmod(file.as_fd(), Mode::from_bits_truncate(cleared)) {
                Ok(()) => {
                    let change =
                        format!("{bits} removed (mode {mode:04o} -> {cleared:04o}, owner uid {})", st.st_uid);
                    mode = cleared;
                    change
                }
                // A rootless run's file of a subordinate uid: reported, not hidden.
                Err(e) => format!("{bits} NOT removed (mode {mode:04o}, owner uid {}): {e}", st.st_uid),
            };
            self.cleaned.push(Cleaned { path: path.clone(), change });
        }
        if !self.keep.suid {
            // File capabilities raise privileges on exec like a setuid bit.
            let change = match crate::sys::remove_file_caps(file.as_fd()) {
                Ok(false) => None,
                Ok(true) => Some("file capabilities (security.capability) removed".to_string()),
                Err(e) => Some(format!("file capabilities (security.capability) NOT removed: {e}")),
            };
            if let Some(change) = change {
                self.cleaned.push(Cleaned { path: path.clone(), change });
            }
        }
        let size = st.st_size as u64;
        let mut e = entry(path, "file");
        e.mode = Some(mode);
        e.size = Some(size);
        if self.budget.take(size) {
            // At most `size` bytes: a file that grows cannot stretch the budget.
            let mut reader = HashingReader::new(file.take(size));
            io::copy(&mut reader, &mut io::sink())?;
            let (d, n) = reader.finish();
            e.digest = Some(d);
            e.size = Some(n);
        } else {
            let allocated = (st.st_blocks as u64).saturating_mul(512);
            let sparse = if allocated.saturating_mul(SPARSE_RATIO) < size {
                format!(" (sparse: {} on disk)", size_text(allocated))
            } else {
                String::new()
            };
            let limit = self.budget.limit.unwrap_or(u64::MAX);
            e.unread = Some(format!(
                "not digested: its {}{sparse} would pass the run's output digest limit of {} \
                 ({} left); raise --output-digest-limit to digest it",
                size_text(size),
                size_text(limit),
                size_text(self.budget.left),
            ));
        }
        self.entries.push(e);
        Ok(())
    }

    /// A device node, fifo or socket: removed unless kept, since a node on the
    /// host is usable by anyone who reaches it.
    fn special(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: String,
        kind: SFlag,
        st: &FileStat,
    ) -> io::Result<()> {
        let what = match kind {
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                let k = if kind == SFlag::S_IFCHR { "character" } else { "block" };
                format!("{k} device {major}:{minor}")
            }
            SFlag::S_IFIFO => "fifo".to_string(),
            _ => "socket".to_string(),
        };
        if self.keep.dev {
            self.entries.push(entry(path, "other"));
            return Ok(());
        }
        match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        self.cleaned.push(Cleaned {
            path,
            change: format!("{what} (mode {:04o}, owner uid {}) removed", st.st_mode & 0o7777, st.st_uid),
        });
        Ok(())
    }

    /// An input's regular file with status `st`: its entry with the digest
    /// the cache has for this very file unchanged, if it has one.
    fn input_from_cache(&mut self, path: &str, st: &FileStat) -> bool {
        let Some(digest) = self.inputs.as_mut().and_then(|i| i.cached(st)) else { return false };
        let mut e = entry(path.to_string(), "file");
        e.mode = Some(st.st_mode & 0o7777);
        e.size = Some(st.st_size as u64);
        e.digest = Some(digest);
        self.entries.push(e);
        true
    }

    /// An input's regular file, opened as `fd`: from the cache, else hashed
    /// by the hashers.
    fn input_file(&mut self, fd: OwnedFd, path: String, st: &FileStat, seen: i64) -> io::Result<()> {
        if self.input_from_cache(&path, st) {
            return Ok(());
        }
        let mut e = entry(path, "file");
        e.mode = Some(st.st_mode & 0o7777);
        e.size = Some(st.st_size as u64);
        let index = self.entries.len();
        if let Some(inputs) = self.inputs.as_mut() {
            inputs.queue(index, fd, st, seen)?;
        }
        self.entries.push(e);
        Ok(())
    }

    fn finish(self, scheme: Scheme) -> TreeDigest {
        let mut entries = self.entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let (mut files, mut bytes, mut unread) = (0, 0, 0);
        for e in &entries {
            if e.kind == "file" {
                files += 1;
                bytes += e.size.unwrap_or(0);
            }
            unread += usize::from(e.unread.is_some());
        }
        let mut why: Vec<String> = self.left_out.into_iter().collect();
        if unread > 0 {
            why.push(unread_summary(unread));
        }
        let incomplete = (!why.is_empty()).then(|| why.join("; "));
        let digest = match scheme {
            Scheme::Listing => {
                let mut h = Hasher::new();
                hash_entries(&mut h, &entries);
                if let Some(why) = &incomplete {
                    // Two trees cut short the same way must not look equal.
                    h.update(format!("incomplete\t{why}\n").as_bytes());
                }
                h.finish().0
            }
            Scheme::Merkle => merkle::digest(&entries, incomplete.as_deref()),
        };
        let mut cleaned = self.cleaned;
        cleaned.sort_by(|a, b| a.path.cmp(&b.path));
        TreeDigest { digest, scheme, files, bytes, entries, incomplete, cleaned }
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
