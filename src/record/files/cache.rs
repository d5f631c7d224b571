//! The input digest cache: a file's sha256 remembered under its (device,
//! inode, size, mtime, ctime), as git's index and DVC remember theirs, so an
//! input that did not change is not read again.
//!
//! One cache file per input root (named by the root's device and inode) in
//! `<state root>/cache/input-digests/`, a directory of the caller's own, mode
//! 0700. Trust: a cache is only as good as the files it vouches for, and a
//! poisoned one would make a changed dataset look unchanged. So a cache
//! directory or file that another user owns, or that group or others may
//! write, is ignored with a note (and such a directory is not written to); a
//! cache file that is not whole (wrong size, bad checksum) is ignored with a
//! note and replaced. A run never fails because of its cache.
//!
//! An entry is trusted only when the file's mtime and ctime are at least
//! [`RACY_WINDOW_NS`] older than the moment exprun looked at the file before
//! hashing it: a file changed within the same timestamp tick as it was read
//! could keep the mtime and ctime the entry holds ("racily clean", in git's
//! words); such an entry is never written, and never believed.
//!
//! File format (little-endian): the 22 bytes `exprun digest cache 1\n`; then
//! per entry 80 bytes: dev, ino, size (u64), mtime, ctime, seen (i64,
//! nanoseconds since the epoch), sha256 (32 bytes); then the sha256 of all
//! that came before. Written to a temporary file beside it, then renamed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, futimens, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::digest::Digest;

/// The cache's directory under the state root's cache directory.
pub const DIR: &str = "input-digests";
/// The first bytes of a cache file.
pub const MAGIC: &[u8] = b"exprun digest cache 1\n";
/// The bytes of one entry.
pub const ENTRY_LEN: usize = 80;
/// How much older than the moment it was looked at a file's mtime and ctime
/// must be for its entry to be trusted: above the timestamp granularity of
/// the filesystems exprun meets (a kernel tick; FAT's 2 s).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;
/// The most bytes all cache files may take together; the least recently used
/// go first.
pub const MAX_BYTES: u64 = 512 << 20;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub mtime: i64,
    /// `st_ctime` in nanoseconds.
    pub ctime: i64,
}

impl Key {
    /// The key of a file with this status.
    pub fn of(st: &FileStat) -> Key {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Key {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: ns(st.st_mtime, st.st_mtime_nsec),
            ctime: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// One remembered digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file it is the digest of.
    pub key: Key,
    /// When exprun looked at the file, before reading it (ns since the epoch).
    pub seen: i64,
    /// The sha256 of its content.
    pub sha256: [u8; 32],
}

impl Entry {
    /// An entry for a file hashed to `digest`.
    pub fn new(key: Key, seen: i64, digest: &Digest) -> Option<Entry> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(digest.hex(), &mut sha256).ok()?;
        Some(Entry { key, seen, sha256 })
    }

    /// Whether the file was last changed well before it was looked at.
    pub fn trusted(&self) -> bool {
        self.key.mtime.max(self.key.ctime).saturating_add(RACY_WINDOW_NS) <= self.seen
    }

    fn digest(&self) -> Option<Digest> {
        Digest::from_hex(&hex::encode(self.sha256)).ok()
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The cache of one input root, loaded.
pub struct Cache {
    /// The directory, when it can be trusted and written.
    dir: Option<OwnedFd>,
    path: PathBuf,
    name: String,
    loaded: HashMap<Key, Entry>,
    kept: Vec<Entry>,
    /// Entries of the loaded file that this walk did not use, or new ones.
    changed: bool,
    notes: Vec<String>,
}

fn trusted_owner(st: &FileStat) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(format!("owned by uid {}, not by you (uid {me})", st.st_uid));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!("mode {:04o}: group or others may write it", st.st_mode & 0o7777));
    }
    Ok(())
}

impl Cache {
    /// The cache of the input whose root has status `root` in
    /// `cache_dir/input-digests` (made, 0700, when missing). A cache that
    /// cannot be trusted or read is empty, with a note saying why.
    pub fn open(cache_dir: &Path, root: &FileStat) -> Cache {
        let path = cache_dir.join(DIR);
        let id = format!("{}:{}", root.st_dev, root.st_ino);
        let name = Digest::of_bytes(id.as_bytes()).hex()[..32].to_string();
        let mut c = Cache {
            dir: None,
            path,
            name,
            loaded: HashMap::new(),
            kept: Vec::new(),
            changed: false,
            notes: Vec::new(),
        };
        // A root that cannot hold a cache (read-only) costs the reads, not the run.
        if crate::fsutil::create_private_dir_all(&c.path).is_err() {
            return c;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = match nix::fcntl::open(&c.path, flags, Mode::empty()) {
            Ok(d) => d,
            Err(e) => {
                c.note(&c.path.clone(), &format!("cannot be opened ({e})"));
                return c;
            }
        };
        if let Err(why) = fstat(dir.as_fd()).map_err(|e| e.to_string()).and_then(|st| trusted_owner(&st)) {
            c.note(&c.path.clone(), &format!("{why}; not used and not written"));
            return c;
        }
        match c.read(&dir) {
            Ok(entries) => c.loaded = entries.into_iter().map(|e| (e.key, e)).collect(),
            Err(Some(why)) => {
                c.note(&c.path.join(&c.name), &why);
                c.changed = true;
            }
            Err(None) => {}
        }
        c.dir = Some(dir);
        c
    }

    fn note(&mut self, path: &Path, why: &str) {
        self.notes.push(format!(
            "the input digest cache {} is ignored: {why}; every file of this input is read",
            path.display()
        ));
    }

    /// What went wrong with the cache, once.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The entries of the cache file; `Err(None)` when there is none.
    fn read(&self, dir: &OwnedFd) -> Result<Vec<Entry>, Option<String>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(dir, self.name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Err(None),
            Err(e) => return Err(Some(format!("cannot be opened ({e})"))),
        };
        let st = fstat(fd.as_fd()).map_err(|e| Some(e.to_string()))?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Err(Some("not a regular file".into()));
        }
        trusted_owner(&st).map_err(Some)?;
        let len = st.st_size as u64;
        if len > MAX_BYTES {
            return Err(Some(format!("{len} bytes, more than a cache file may hold")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::fs::File::from(fd)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Some(format!("cannot be read ({e})")))?;
        parse(&bytes).map_err(|why| Some(format!("it is corrupt ({why})")))
    }

    /// The digest of the file with status `st`, if the cache holds it and
    /// can believe it; the entry is kept for the next run.
    pub fn lookup(&mut self, st: &FileStat) -> Option<Digest> {
        let key = Key::of(st);
        let e = self.loaded.get(&key).filter(|e| e.trusted())?;
        let digest = e.digest()?;
        self.kept.push(e.clone());
        Some(digest)
    }

    /// Remember a file hashed in this walk (only if it can be trusted later).
    pub fn keep(&mut self, e: Entry) {
        if e.trusted() {
            self.kept.push(e);
            self.changed = true;
        }
    }

    /// Write the entries this walk used and made, if they differ from the
    /// file's (and mark the file used either way), then bring the directory
    /// back under [`MAX_BYTES`]. Failures cost the next run its reads only.
    pub fn save(mut self) {
        let Some(dir) = self.dir.take() else { return };
        // Hard links: one entry per inode, however many names it has.
        self.kept.sort_by_key(|e| (e.key.dev, e.key.ino));
        self.kept.dedup_by_key(|e| e.key);
        let changed = self.changed || self.kept.len() != self.loaded.len();
        if !changed {
            let flags = OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            if let Ok(fd) = openat(&dir, self.name.as_str(), flags, Mode::empty()) {
                let _ = futimens(&fd, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW);
            }
            return;
        }
        let bytes = serialize(&self.kept);
        if bytes.len() as u64 > MAX_BYTES || write_atomic(&dir, &self.name, &bytes).is_err() {
            return;
        }
        evict(&dir, &self.name);
    }
}

/// The bytes of a cache file holding `entries`.
pub fn serialize(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * ENTRY_LEN + 32);
    out.extend_from_slice(MAGIC);
    for e in entries {
        out.extend_from_slice(&e.key.dev.to_le_bytes());
        out.extend_from_slice(&e.key.ino.to_le_bytes());
        out.extend_from_slice(&e.key.size.to_le_bytes());
        out.extend_from_slice(&e.key.mtime.to_le_bytes());
        out.extend_from_slice(&e.key.ctime.to_le_bytes());
        out.extend_from_slice(&e.seen.to_le_bytes());
        out.extend_from_slice(&e.sha256);
    }
    let sum = Digest::of_bytes(&out);
    let mut raw = [0u8; 32];
    if hex::decode_to_slice(sum.hex(), &mut raw).is_ok() {
        out.extend_from_slice(&raw);
    }
    out
}

/// The entries of a cache file, or why it is not one.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let body_len = bytes.len().checked_sub(32).ok_or("shorter than its checksum")?;
    let (body, sum) = bytes.split_at(body_len);
    let entries = body.strip_prefix(MAGIC).ok_or("it does not start as a cache file of this exprun does")?;
    if entries.len() % ENTRY_LEN != 0 {
        return Err(format!(
            "{} bytes of entries, not a whole number of {ENTRY_LEN}-byte entries",
            entries.len()
        ));
    }
    if Digest::of_bytes(body).hex() != hex::encode(sum) {
        return Err("its checksum does not match its content".into());
    }
    let u = |b: &[u8], i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        a
    };
    Ok(entries
        .chunks_exact(ENTRY_LEN)
        .map(|b| {
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&b[48..80]);
            Entry {
                key: Key {
                    dev: u64::from_le_bytes(u(b, 0)),
                    ino: u64::from_le_bytes(u(b, 1)),
                    size: u64::from_le_bytes(u(b, 2)),
                    mtime: i64::from_le_bytes(u(b, 3)),
                    ctime: i64::from_le_bytes(u(b, 4)),
                },
                seen: i64::from_le_bytes(u(b, 5)),
                sha256,
            }
        })
        .collect())
}

/// `bytes` into `dir/name` through a temporary file beside it, renamed over it.
fn write_atomic(dir: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!(".{name}.tmp-{}", crate::fsutil::random_hex(6));
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let result = (|| {
        let fd = openat(dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))?;
        std::fs::File::from(fd).write_all(bytes)?;
        renameat(dir, tmp.as_str(), dir, name)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// Remove the least recently used cache files (never `keep`) until all of
/// them take at most [`MAX_BYTES`].
fn evict(dir: &OwnedFd, keep: &str) {
    let Ok(d) = nix::dir::Dir::from_fd(match dir.try_clone() {
        Ok(fd) => fd,
        Err(_) => return,
    }) else {
        return;
    };
    let mut files: Vec<(i64, u64, OsString)> = Vec::new();
    let mut d = d;
    for e in d.iter().flatten() {
        let name = std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_owned();
        if name == "." || name == ".." {
            continue;
        }
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        if let Ok(st) = nix::sys::stat::fstatat(dir, name.as_os_str(), flags) {
            files.push((st.st_mtime, st.st_size as u64, name));
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, size, name) in files {
        if total <= MAX_BYTES {
            break;
        }
        if name != keep && unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}
