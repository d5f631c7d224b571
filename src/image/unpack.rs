//! Unpacking one layer tar into a directory, in overlayfs format.
//!
//! Written on the `tar` crate's entry reader, not its `unpack`: every entry is
//! created relative to directory fds opened with `O_NOFOLLOW | O_DIRECTORY`, one
//! path component at a time, so nothing a layer contains (a symlink `etc -> /`,
//! say) can make us write outside the layer directory. Symlinks are created but
//! never followed.
//!
//! Refused, with an error naming the layer and the entry: absolute paths (a
//! leading `./` is stripped first; `/` or `.` alone is the root directory), `..`
//! components, NUL bytes, parents that are symlinks or not directories,
//! hardlinks whose target is not an earlier entry of the same layer, a whiteout
//! of the layer root, and a layer over [`MAX_LAYER_ENTRIES`] entries or
//! [`MAX_LAYER_BYTES`] of content.
//!
//! OCI whiteouts become overlayfs ones: `.wh.NAME` → a 0/0 character device
//! `NAME` (unless this layer itself already made `NAME`: a whiteout hides lower
//! layers only); `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory.
//! From PAX `SCHILY.xattr.*` records only `user.*` (but not `user.overlay.*`) and
//! `security.capability` are applied; `trusted.*` never is, so a layer cannot
//! forge overlay metadata.
//!
//! As a non-root user, ownership is not applied (files belong to the importer),
//! device nodes other than whiteouts are skipped, `security.capability` is
//! skipped, and an opaque directory gets `user.overlay.opaque=y`: the form a
//! rootless overlay (mounted with `userxattr` in a user namespace) reads.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::stream::{decompressed, normalize, parse_pax_time};
use super::{Error, Result};
use crate::digest::{Digest, HashingReader};

/// Most bytes of file content one layer may hold (zip-bomb guard).
pub const MAX_LAYER_BYTES: u64 = 64 << 30;
/// Most entries one layer may hold (zip-bomb guard).
pub const MAX_LAYER_ENTRIES: u64 = 2_000_000;
/// Most bytes of file content all the layers of one image may hold together.
pub const MAX_IMAGE_BYTES: u64 = 128 << 30;
/// The store's filesystem keeps at least this much free while layers unpack
/// (or a twentieth of its size, when that is less: a small disk still works).
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// At most this much is written between two looks at the free space (and at
/// most a quarter of the reserve, so that the look comes before the disk is full).
const FREE_CHECK_EVERY: u64 = 64 << 20;
/// Most bytes accepted after the tar's end-of-archive marker.
const MAX_TRAILING_BYTES: u64 = 64 << 20;

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
/// The same for an overlay mounted with `userxattr` (rootless runs).
const USER_OPAQUE_XATTR: &CStr = c"user.overlay.opaque";

/// The zip-bomb limits: for one layer, for one image, and the free space the
/// store's filesystem keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file content of one layer.
    pub max_bytes: u64,
    /// Most entries of one layer.
    pub max_entries: u64,
    /// Most bytes of file content of all the layers of one image.
    pub max_image_bytes: u64,
    /// Free space the store's filesystem keeps (capped at a twentieth of its size).
    pub min_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_LAYER_BYTES,
            max_entries: MAX_LAYER_ENTRIES,
            max_image_bytes: MAX_IMAGE_BYTES,
            min_free_bytes: MIN_FREE_BYTES,
        }
    }
}

/// What one image's layers may expand to together, shared by the threads that
/// unpack them, and where the free space is watched.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    /// Bytes of file content of every layer so far.
    content: AtomicU64,
    /// Bytes really written to disk (holes cost none) since the last look at
    /// the free space.
    since_check: AtomicU64,
    /// A directory on the store's filesystem, the free space it keeps, and how
    /// much may be written between two looks; none: no free-space check.
    fs: Option<(PathBuf, u64, u64)>,
}

impl Budget {
    /// A budget for one image unpacked into the store at `fs`.
    pub fn new(limits: Limits, fs: Option<&Path>) -> Self {
        let fs = fs.and_then(|dir| {
            let st = nix::sys::statvfs::statvfs(dir).ok()?;
            let size = st.blocks() * st.fragment_size();
            let reserve = limits.min_free_bytes.min(size / 20);
            Some((dir.to_path_buf(), reserve, (reserve / 4).clamp(1 << 20, FREE_CHECK_EVERY)))
        });
        Self { limits, content: AtomicU64::new(0), since_check: AtomicU64::new(0), fs }
    }

    /// Count `content` more bytes of file content, of which `written` went to
    /// disk; the error says which bound was passed.
    fn charge(&self, content: u64, written: u64) -> EntryResult {
        let total = self.content.fetch_add(content, Ordering::Relaxed).saturating_add(content);
        if total > self.limits.max_image_bytes {
            return Err(format!(
                "the image's layers hold more than {} bytes of content together, the limit for one \
                 image; refusing what looks like a tar bomb (raise it with image import \
                 --max-image-size if the image is genuine)",
                self.limits.max_image_bytes
            ));
        }
        let Some((fs, reserve, every)) = &self.fs else { return Ok(()) };
        let since = self.since_check.fetch_add(written, Ordering::Relaxed).saturating_add(written);
        if since < *every {
            return Ok(());
        }
        self.since_check.store(0, Ordering::Relaxed);
        let Ok(st) = nix::sys::statvfs::statvfs(fs.as_path()) else { return Ok(()) };
        let free = st.blocks_available() * st.fragment_size();
        if free < *reserve {
            return Err(format!(
                "the store's filesystem ({}) is down to {} MiB free, below the {} MiB it keeps; \
                 free space there (exprun image gc, or a larger disk for --root) and import again",
                fs.display(),
                free >> 20,
                reserve >> 20
            ));
        }
        Ok(())
    }
}

/// Unpack the layer blob read from `blob` (plain, gzip or zstd: sniffed) into the
/// new directory `dest`, checking that the uncompressed stream hashes to
/// `diff_id`. `layer` (the blob digest) names the layer in errors. On error
/// `dest` is left for the caller to remove.
pub(crate) fn unpack_layer(
    blob: impl Read,
    layer: &Digest,
    diff_id: &Digest,
    dest: &Path,
    budget: &Budget,
) -> Result<()> {
    let limits = budget.limits;
    let layer_err = |why: String| Error::Layer { layer: layer.clone(), why };
    let (_, stream) = decompressed(blob).map_err(|e| layer_err(format!("reading the blob: {e}")))?;
    fs::create_dir(dest).map_err(|e| Error::io("create directory", dest, e))?;
    let root = openat(nix::fcntl::AT_FDCWD, dest, dir_flags(), Mode::empty())
        .map_err(|e| Error::io("open", dest, e.into()))?;
    let mut u = Unpacker {
        layer,
        root,
        root_path: dest.to_path_buf(),
        limits,
        budget,
        privileged: nix::unistd::geteuid().is_root() && crate::userns::in_initial_userns(),
        owners: nix::unistd::geteuid().is_root(),
        entries: 0,
        bytes: 0,
        written: 0,
        created: HashSet::new(),
        dirs: BTreeMap::new(),
        buf: vec![0; 1 << 17],
    };
    u.dirs.insert(PathBuf::new(), DirMeta { mode: 0o755, mtime: TimeSpec::new(0, 0) });

    let mut archive = tar::Archive::new(HashingReader::new(stream));
    let entries = archive.entries().map_err(|e| layer_err(format!("reading the tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| layer_err(format!("reading the tar stream: {e}")))?;
        u.entry(&mut entry)?;
    }
    u.finish()?;

    let mut rest = archive.into_inner();
    let trailing = io::copy(&mut (&mut rest).take(MAX_TRAILING_BYTES + 1), &mut io::sink())
        .map_err(|e| layer_err(format!("reading the tar stream: {e}")))?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(layer_err(format!(
            "more than {MAX_TRAILING_BYTES} bytes of data after the end of the tar archive"
        )));
    }
    let (found, _) = rest.finish();
    if &found != diff_id {
        return Err(Error::DigestMismatch {
            what: format!("layer {layer} uncompressed content (diff_id)"),
            expected: diff_id.clone(),
            found,
        });
    }
    Ok(())
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn sys(op: &'static str) -> impl Fn(Errno) -> String {
    move |e| format!("{op}: {e}")
}

/// Mode and mtime of a directory, applied after all its children are made.
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: TimeSpec,
}

/// What an entry's header and PAX records say about the file.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

type EntryResult<T = ()> = std::result::Result<T, String>;

struct Unpacker<'a> {
    layer: &'a Digest,
    root: OwnedFd,
    root_path: PathBuf,
    limits: Limits,
    budget: &'a Budget,
    privileged: bool,
    /// Ownership can be applied: root, on the host or in a user namespace that
    /// maps the caller's subordinate ids.
    owners: bool,
    entries: u64,
    bytes: u64,
    written: u64,
    /// Non-directories this layer made (valid hardlink targets).
    created: HashSet<PathBuf>,
    /// Every directory made, with the mode and mtime to give it at the end.
    dirs: BTreeMap<PathBuf, DirMeta>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::Layer {
                layer: self.layer.clone(),
                why: format!(
                    "more than {} entries, the limit for one layer; refusing what looks like a \
                     tar bomb (raise it with image import --max-layer-entries if the layer is genuine)",
                    self.limits.max_entries
                ),
            });
        }
        // Declared sizes fail fast; what is written is counted too (a sparse file
        // can write more than the archive holds).
        let declared = e.header().size().unwrap_or(0).max(e.size());
        self.bytes = self.bytes.saturating_add(declared);
        if self.bytes > self.limits.max_bytes {
            return Err(Error::Layer { layer: self.layer.clone(), why: self.too_big() });
        }
        if e.header().entry_type() == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw = e.path_bytes().into_owned();
        let result = match normalize(&raw) {
            Ok(comps) => self.entry_at(e, &raw, &comps),
            Err(why) => Err(why.to_string()),
        };
        result.map_err(|why| Error::LayerEntry {
            layer: self.layer.clone(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            why,
        })
    }

    fn entry_at<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        raw: &[u8],
        comps: &[OsString],
    ) -> EntryResult {
        let kind = e.header().entry_type();
        let file_like = matches!(kind, EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse);
        // Old tars mark directories as regular files whose name ends in '/'.
        let is_dir = kind == EntryType::Directory || (file_like && raw.ends_with(b"/"));
        let Some((name, parent_comps)) = comps.split_last() else {
            if !is_dir {
                return Err("the layer root can only be a directory".into());
            }
            let meta = self.meta(e)?;
            let root = self.root.try_clone().map_err(|e| format!("dup: {e}"))?;
            return self.dir_meta(&root, PathBuf::new(), meta);
        };

        // Whiteouts.
        let nb = name.as_bytes();
        if nb == b".wh..wh..opq" {
            let dir = self.open_dir(parent_comps, true)?;
            let xattr = if self.privileged { OPAQUE_XATTR } else { USER_OPAQUE_XATTR };
            return crate::sys::fsetxattr(dir.as_fd(), xattr, b"y")
                .map_err(|e| format!("set {}: {e}", xattr.to_string_lossy()));
        }
        if nb.starts_with(b".wh..wh.") {
            return Ok(()); // other aufs metadata (.wh..wh.plnk, ...): ignored, as docker does
        }
        if let Some(target) = nb.strip_prefix(b".wh.") {
            match target {
                b"" | b"." => return Err("whiteout of the layer root".into()),
                b".." => return Err("path escapes the layer directory".into()),
                _ => {}
            }
            let target = OsStr::from_bytes(target);
            let parent = self.open_dir(parent_comps, true)?;
            if exists(&parent, target)? {
                return Ok(()); // made by this layer: the whiteout hides lower layers only
            }
            return mknodat(&parent, target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(sys("mknod (whiteout)"));
        }

        let key: PathBuf = comps.iter().collect();
        let meta = self.meta(e)?;
        let parent = self.open_dir(parent_comps, true)?;
        match kind {
            _ if is_dir => {
                match fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                    Ok(_) => {
                        self.clear(&parent, name, &key)?;
                        mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                            .map_err(sys("mkdir"))?;
                    }
                    Err(Errno::ENOENT) => {
                        mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                            .map_err(sys("mkdir"))?;
                    }
                    Err(e) => return Err(format!("stat: {e}")),
                }
                let fd = openat(&parent, name.as_os_str(), dir_flags(), Mode::empty())
                    .map_err(sys("open directory"))?;
                self.dir_meta(&fd, key, meta)
            }
            _ if file_like => self.file(e, &parent, name, key, meta),
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or("symlink without a target")?.into_owned();
                if target.contains(&0) {
                    return Err("symlink target contains a NUL byte".into());
                }
                self.clear(&parent, name, &key)?;
                symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str()).map_err(sys("symlink"))?;
                self.finish_node(&parent, name, meta, false)?;
                self.created.insert(key);
                Ok(())
            }
            EntryType::Link => {
                let target = e.link_name_bytes().ok_or("hardlink without a target")?.into_owned();
                self.hardlink(&parent, name, key, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = e.header();
                let (kind, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ if !self.privileged => return Ok(()), // cannot mknod as a user
                    _ => {
                        let major = h.device_major().map_err(|e| format!("device major: {e}"))?;
                        let minor = h.device_minor().map_err(|e| format!("device minor: {e}"))?;
                        let dev = makedev(major.unwrap_or(0).into(), minor.unwrap_or(0).into());
                        let k = if kind == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                        (k, dev)
                    }
                };
                self.clear(&parent, name, &key)?;
                mknodat(&parent, name.as_os_str(), kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(sys("mknod"))?;
                self.finish_node(&parent, name, meta, true)?;
                self.created.insert(key);
                Ok(())
            }
            other => Err(format!("unsupported entry type {other:?}")),
        }
    }

    fn too_big(&self) -> String {
        format!(
            "more than {} bytes of content, the limit for one layer; refusing what looks like \
             a tar bomb (raise it with image import --max-layer-size if the layer is genuine)",
            self.limits.max_bytes
        )
    }

    /// Read the entry's mode, owner, mtime and the xattrs we apply.
    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>) -> EntryResult<Meta> {
        let h = e.header();
        let mode = h.mode().map_err(|e| format!("mode field: {e}"))? & 0o7777;
        let id = |v: io::Result<u64>, what: &str| -> EntryResult<u32> {
            let v = v.map_err(|e| format!("{what} field: {e}"))?;
            u32::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
        };
        let uid = id(h.uid(), "uid")?;
        let gid = id(h.gid(), "gid")?;
        let secs = h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let mut meta = Meta { mode, uid, gid, mtime: TimeSpec::new(secs, 0), xattrs: Vec::new() };
        if let Some(exts) = e.pax_extensions().map_err(|e| format!("PAX header: {e}"))? {
            for ext in exts {
                let ext = ext.map_err(|e| format!("PAX header: {e}"))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        meta.mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if self.xattr_allowed(name) {
                        let name = CString::new(name).map_err(|_| "xattr name contains NUL")?;
                        meta.xattrs.push((name, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Which xattrs a layer may set: `user.*` except overlay's own, and file
    /// capabilities (as root). Never `trusted.*`: `trusted.overlay.*` would let a
    /// layer forge whiteouts, opaque dirs and redirects.
    fn xattr_allowed(&self, name: &[u8]) -> bool {
        (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
            || (name == b"security.capability" && self.privileged)
    }

    fn chown_fd(&self, fd: impl AsFd, meta: &Meta) -> EntryResult {
        if !self.owners {
            return Ok(());
        }
        fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
            .map_err(|e| self.chown_err(e, meta))
    }

    fn chown_err(&self, e: Errno, meta: &Meta) -> String {
        if e == Errno::EINVAL && !self.privileged {
            format!(
                "owner {}:{} is outside the caller's subordinate ids (/etc/subuid, /etc/subgid); give the caller a wider range",
                meta.uid, meta.gid
            )
        } else {
            format!("chown: {e}")
        }
    }

    fn set_xattrs(&self, fd: impl AsFd, meta: &Meta) -> EntryResult {
        for (name, value) in &meta.xattrs {
            crate::sys::fsetxattr(fd.as_fd(), name, value)
                .map_err(|e| format!("set xattr {}: {e}", name.to_string_lossy()))?;
        }
        Ok(())
    }

    /// Owner and xattrs now; mode and mtime when all entries are in.
    fn dir_meta(&mut self, fd: &OwnedFd, key: PathBuf, meta: Meta) -> EntryResult {
        self.chown_fd(fd, &meta)?;
        self.set_xattrs(fd, &meta)?;
        self.dirs.insert(key, DirMeta { mode: meta.mode, mtime: meta.mtime });
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsStr,
        key: PathBuf,
        meta: Meta,
    ) -> EntryResult {
        self.clear(parent, name, &key)?;
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(parent, name, flags, Mode::from_bits_truncate(0o600)).map_err(sys("create"))?;
        let mut f = File::from(fd);
        // Runs of zeros become holes (as `cp --sparse=always` makes them), so a
        // GNU sparse entry of a few bytes that says 10 GiB costs no disk; its
        // content still counts against the limits.
        let mut len = 0u64;
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(format!("reading the tar stream: {err}")),
            };
            self.written += n as u64;
            if self.written > self.limits.max_bytes {
                return Err(self.too_big());
            }
            let chunk = &self.buf[..n];
            let hole = chunk.iter().all(|b| *b == 0);
            self.budget.charge(n as u64, if hole { 0 } else { n as u64 })?;
            if hole {
                f.seek(io::SeekFrom::Current(n as i64)).map_err(|e| format!("seek: {e}"))?;
            } else {
                f.write_all(chunk).map_err(|e| format!("write: {e}"))?;
            }
            len += n as u64;
        }
        f.set_len(len).map_err(|e| format!("truncate: {e}"))?;
        // Order matters: chown clears setuid/setgid and file capabilities, so
        // chown first, then xattrs, then the mode.
        self.chown_fd(&f, &meta)?;
        self.set_xattrs(&f, &meta)?;
        fchmod(&f, Mode::from_bits_truncate(meta.mode)).map_err(sys("chmod"))?;
        futimens(&f, &meta.mtime, &meta.mtime).map_err(sys("set times"))?;
        self.created.insert(key);
        Ok(())
    }

    /// Owner, mode and times of a just-made symlink or special file, by name.
    fn finish_node(&self, parent: &OwnedFd, name: &OsStr, meta: Meta, chmod: bool) -> EntryResult {
        if self.owners {
            let (u, g) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
            fchownat(parent, name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.chown_err(e, &meta))?;
        }
        if chmod {
            // Not a symlink (we just made it, in a directory only we write to).
            fchmodat(parent, name, Mode::from_bits_truncate(meta.mode), FchmodatFlags::FollowSymlink)
                .map_err(sys("chmod"))?;
        }
        utimensat(parent, name, &meta.mtime, &meta.mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(sys("set times"))
    }

    fn hardlink(&mut self, parent: &OwnedFd, name: &OsStr, key: PathBuf, target: &[u8]) -> EntryResult {
        let shown = String::from_utf8_lossy(target);
        let tcomps = normalize(target).map_err(|why| format!("hardlink target {shown:?}: {why}"))?;
        let Some((tname, tparent_comps)) = tcomps.split_last() else {
            return Err("hardlink to the layer root".into());
        };
        let tkey: PathBuf = tcomps.iter().collect();
        if tkey == key {
            return Ok(());
        }
        if !self.created.contains(&tkey) {
            return Err(format!("hardlink target {shown:?} is not an earlier file of this layer"));
        }
        let tparent =
            self.open_dir(tparent_comps, false).map_err(|why| format!("hardlink target {shown:?}: {why}"))?;
        self.clear(parent, name, &key)?;
        linkat(&tparent, tname.as_os_str(), parent, name, AtFlags::empty()).map_err(sys("link"))?;
        self.created.insert(key);
        Ok(())
    }

    /// Make room for a new entry: a later entry replaces an earlier one (a
    /// directory is replaced with its contents, as containerd does).
    fn clear(&mut self, parent: &OwnedFd, name: &OsStr, key: &Path) -> EntryResult {
        match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(format!("stat: {e}")),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                // Every component of `key`'s parent was just opened with O_NOFOLLOW
                // and only we write here, so this path has no symlink in it.
                fs::remove_dir_all(self.root_path.join(key)).map_err(|e| format!("remove: {e}"))?;
                self.dirs.retain(|k, _| !k.starts_with(key));
                self.created.retain(|k| !k.starts_with(key));
                Ok(())
            }
            Ok(_) => {
                unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(sys("remove"))?;
                self.created.remove(key);
                Ok(())
            }
        }
    }

    /// Open the directory `comps` under the root, one component at a time without
    /// following symlinks; with `create`, make missing ones (mode 0755, mtime 0,
    /// unless an entry for them says otherwise).
    fn open_dir(&mut self, comps: &[OsString], create: bool) -> EntryResult<OwnedFd> {
        let mut fd = self.root.try_clone().map_err(|e| format!("dup: {e}"))?;
        for (i, c) in comps.iter().enumerate() {
            let c = c.as_os_str();
            let shown = || comps[..=i].iter().collect::<PathBuf>().display().to_string();
            fd = match openat(&fd, c, dir_flags(), Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) if create => {
                    mkdirat(&fd, c, Mode::from_bits_truncate(0o755)).map_err(sys("mkdir"))?;
                    let key: PathBuf = comps[..=i].iter().collect();
                    self.dirs.entry(key).or_insert(DirMeta { mode: 0o755, mtime: TimeSpec::new(0, 0) });
                    openat(&fd, c, dir_flags(), Mode::empty()).map_err(sys("open directory"))?
                }
                Err(Errno::ENOENT) => return Err(format!("{:?} does not exist", shown())),
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    let what = match fstatat(&fd, c, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => "a symlink",
                        _ => "not a directory",
                    };
                    return Err(format!("path goes through {:?}, which is {what}", shown()));
                }
                Err(e) => return Err(format!("open directory {:?}: {e}", shown())),
            };
        }
        Ok(fd)
    }

    /// Give every directory its mode and mtime, children before parents.
    fn finish(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (key, meta) in dirs.iter().rev() {
            let comps: Vec<OsString> = key.iter().map(OsStr::to_os_string).collect();
            let result = self.open_dir(&comps, false).and_then(|fd| {
                fchmod(&fd, Mode::from_bits_truncate(meta.mode)).map_err(sys("chmod"))?;
                futimens(&fd, &meta.mtime, &meta.mtime).map_err(sys("set times"))
            });
            result.map_err(|why| Error::LayerEntry {
                layer: self.layer.clone(),
                entry: key.display().to_string(),
                why,
            })?;
        }
        Ok(())
    }
}

fn exists(dir: &OwnedFd, name: &OsStr) -> EntryResult<bool> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(format!("stat: {e}")),
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
