//! The captured layer: the assemble step's overlayfs upper directory, less what
//! exprun itself made for the run, as an OCI layer tar that is byte-for-byte the
//! same whenever the content is.
//!
//! What goes in:
//! - every regular file, symlink, device node and fifo assemble created or
//!   changed (sockets are skipped, as docker and buildah do), with its mode
//!   (setuid/setgid/sticky included) and numeric owner as in the container;
//!   hard links between them as tar hard links, to the first path in order;
//!   `user.*` (except overlayfs's own `user.overlay.*`) and
//!   `security.capability` xattrs as PAX `SCHILY.xattr.*` records (a value
//!   holding a newline byte is refused: tar-rs, which imports layers, splits
//!   PAX records at newlines);
//! - a directory when something below it is in the layer, when it is new, when
//!   its mode or owner changed, or when it is opaque;
//! - overlayfs whiteouts (0:0 character devices, or files marked with an
//!   `overlay.whiteout` xattr) as `.wh.NAME`; opaque directories (`trusted.` or
//!   `user.overlay.opaque=y`) as the directory plus `.wh..wh..opq`.
//!
//! What stays out: the mount points exprun made for the run (`/proc`, `/sys`,
//! `/dev`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, the source's
//! `/tmp/src`, ...) and the working directory it created, when the builder
//! did not have them and assemble left them empty, and the directories made
//! only to hold them; directories that were merely copied up (same mode and
//! owner as below); the layer root itself.
//!
//! The tar: entries sorted by their path's bytes (so a directory comes before
//! its contents), GNU headers (long names as GNU long-name records), every
//! mtime `SOURCE_DATE_EPOCH`, no atime or ctime, numeric owners without user
//! or group names, whiteouts as empty files of mode 0 owned by 0:0. By default
//! it is stored uncompressed: its digest is its diff_id, and depends on
//! nothing but the content. With [`Compression::Gzip`] the blob is the tar
//! gzip'd at level 6 with a fixed header (no name, mtime 0): the same for the
//! same content and the same exprun, but a later compressor may give other
//! bytes (the diff_id stays).
//!
//! Refused, naming the path: an overlayfs redirect (a directory of the builder
//! renamed with `redirect_dir=on`) or metacopy (a metadata-only copy-up with
//! `metacopy=on`): the upper directory alone does not hold their content.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Error;
use crate::digest::{Digest, HashingWriter};
use crate::image::manifest::{MT_LAYER_GZIP, MT_LAYER_TAR};
use crate::image::overlay;

/// What to capture.
pub struct Capture<'a> {
    /// The run's upper directory.
    pub upper: &'a Path,
    /// The builder's unpacked layers, bottom first (overlayfs format).
    pub lower: &'a [PathBuf],
    /// Paths in the container exprun may have created for the run: mount
    /// destinations and the working directory.
    pub stubs: &'a BTreeSet<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: every entry's mtime.
    pub epoch: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// Not: the blob is the tar.
    #[default]
    None,
    /// gzip, level 6, with a fixed header.
    Gzip,
}

impl Compression {
    /// The layer's media type in the manifest.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => MT_LAYER_TAR,
            Self::Gzip => MT_LAYER_GZIP,
        }
    }
}

/// The layer written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// sha256 of the tar: the diff_id in the image config.
    pub diff_id: Digest,
    /// Size of the tar in bytes.
    pub tar_size: u64,
    /// sha256 of the blob (the tar, compressed or not): its digest in the manifest.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
    /// Number of entries (whiteout and opaque markers included).
    pub entries: usize,
}

/// What an entry of the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: its content is read from `source`.
    File {
        /// The file in the upper directory.
        source: PathBuf,
        /// Its size.
        size: u64,
        /// (device, inode) when it has other links.
        inode: Option<(u64, u64)>,
    },
    /// A directory.
    Dir,
    /// A symlink and its target.
    Symlink(PathBuf),
    /// A hard link to an earlier entry.
    Hardlink(PathBuf),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A fifo.
    Fifo,
    /// `.wh.NAME`: NAME is deleted.
    Whiteout,
    /// `.wh..wh..opq`: the directory hides what lower layers have in it.
    Opaque,
}

/// One entry of the layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path in the tar: relative, without `./`.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// xattrs, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Capture `c.upper` into a layer blob at `out`.
pub fn capture(c: &Capture<'_>, out: &Path) -> Result<Layer, Error> {
    let mut entries = Vec::new();
    walk(c, c.upper, Path::new(""), &mut entries)?;
    let entries = finish(entries);
    write_tar(&entries, c.epoch, c.compression, out)
}

/// Sort entries by path bytes and turn later links of one inode into hard links.
pub fn finish(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for e in &mut entries {
        if let Kind::File { inode: Some(key), .. } = e.kind {
            match first.get(&key) {
                Some(target) => e.kind = Kind::Hardlink(target.clone()),
                None => {
                    first.insert(key, e.path.clone());
                }
            }
        }
    }
    entries
}

fn layer_err(rel: &Path, why: impl Into<String>) -> Error {
    Error::Layer { path: Path::new("/").join(rel), why: why.into() }
}

/// Add the entries below `dir` (at `rel` in the container) to `out`; returns
/// whether any was added.
fn walk(c: &Capture<'_>, dir: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<bool, Error> {
    let read = |e: io::Error| layer_err(rel, format!("reading the directory: {e}"));
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    names.sort();
    let mut added = false;
    for name in names {
        let abs = dir.join(&name);
        let rel = rel.join(&name);
        let in_container = Path::new("/").join(&rel);
        let meta = fs::symlink_metadata(&abs).map_err(|e| layer_err(&rel, format!("stat: {e}")))?;
        let ft = meta.file_type();
        for (attr, what) in [
            ("overlay.redirect", "a renamed directory of the builder image (overlayfs redirect_dir)"),
            ("overlay.metacopy", "a metadata-only copy-up (overlayfs metacopy)"),
        ] {
            if overlay::xattr(&abs, attr)
                .map_err(|e| layer_err(&rel, format!("reading xattrs: {e}")))?
                .is_some()
            {
                return Err(layer_err(
                    &rel,
                    format!(
                        "{what}, whose content is not in the writable layer; mount overlayfs without \
                         redirect_dir and metacopy (the kernel's defaults), or have assemble copy instead \
                         of rename"
                    ),
                ));
            }
        }
        if overlay::is_whiteout(&abs, &meta).map_err(|e| layer_err(&rel, format!("reading xattrs: {e}")))? {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(&name);
            out.push(marker(rel.with_file_name(wh), Kind::Whiteout));
            added = true;
            continue;
        }
        let xattrs = || kept_xattrs(&abs).map_err(|e| layer_err(&rel, format!("reading xattrs: {e}")));
        let lower = || {
            overlay::lookup(c.lower, &in_container)
                .map(|found| found.map(|(_, m)| m))
                .map_err(|e| layer_err(&rel, format!("looking it up in the builder's layers: {e}")))
        };
        if ft.is_dir() {
            let opaque =
                overlay::is_opaque(&abs).map_err(|e| layer_err(&rel, format!("reading xattrs: {e}")))?;
            let inner = walk(c, &abs, &rel, out)?;
            let changed = match lower()? {
                // New: assemble's, unless exprun made it for a mount point or
                // the working directory (or to hold one).
                None => !c.stubs.iter().any(|s| s.starts_with(&in_container)),
                Some(l) => {
                    !l.is_dir() || l.mode() != meta.mode() || l.uid() != meta.uid() || l.gid() != meta.gid()
                }
            };
            if inner || opaque || changed {
                out.push(entry(rel.clone(), Kind::Dir, &meta, xattrs()?));
                if opaque {
                    out.push(marker(rel.join(".wh..wh..opq"), Kind::Opaque));
                }
                added = true;
            }
            continue;
        }
        if ft.is_socket() {
            continue;
        }
        if c.stubs.contains(&in_container) && ft.is_file() && meta.len() == 0 && lower()?.is_none() {
            // A mount point exprun made for a file bind (/etc/hostname, ...).
            continue;
        }
        let kind = if ft.is_file() {
            Kind::File {
                source: abs.clone(),
                size: meta.len(),
                inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
            }
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&abs).map_err(|e| layer_err(&rel, format!("reading the link: {e}")))?)
        } else if ft.is_char_device() {
            Kind::Char(nix::sys::stat::major(meta.rdev()) as u32, nix::sys::stat::minor(meta.rdev()) as u32)
        } else if ft.is_block_device() {
            Kind::Block(nix::sys::stat::major(meta.rdev()) as u32, nix::sys::stat::minor(meta.rdev()) as u32)
        } else {
            Kind::Fifo
        };
        let xattrs = xattrs()?;
        out.push(entry(rel, kind, &meta, xattrs));
        added = true;
    }
    Ok(added)
}

fn entry(path: PathBuf, kind: Kind, meta: &fs::Metadata, xattrs: Vec<(String, Vec<u8>)>) -> Entry {
    Entry { path, kind, mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid(), xattrs }
}

fn marker(path: PathBuf, kind: Kind) -> Entry {
    Entry { path, kind, mode: 0, uid: 0, gid: 0, xattrs: Vec::new() }
}

/// Write `entries` (already in order) as a tar at `out`, compressed as asked.
pub fn write_tar(
    entries: &[Entry],
    epoch: u64,
    compression: Compression,
    out: &Path,
) -> Result<Layer, Error> {
    let write_err = |e: io::Error| Error::Io { op: "writing the layer", path: out.to_path_buf(), source: e };
    let file = fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(write_err)?;
    let blob = HashingWriter::new(BufWriter::new(file));
    let (buf, diff_id, tar_size, digest, size) = match compression {
        Compression::None => {
            let (buf, d, n) = append_all(entries, epoch, blob, out)?.finish();
            (buf, d.clone(), n, d, n)
        }
        Compression::Gzip => {
            let gz = flate2::GzBuilder::new().mtime(0).write(blob, flate2::Compression::new(6));
            let (gz, d, n) = append_all(entries, epoch, HashingWriter::new(gz), out)?.finish();
            let (buf, cd, cn) = gz.finish().map_err(write_err)?.finish();
            (buf, d, n, cd, cn)
        }
    };
    let file = buf.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    Ok(Layer { diff_id, tar_size, digest, size, compression, entries: entries.len() })
}

/// The tar of `entries` written to `w` (the layer at `out`), ended.
fn append_all<W: Write>(entries: &[Entry], epoch: u64, w: W, out: &Path) -> Result<W, Error> {
    let write_err = |e: io::Error| Error::Io { op: "writing the layer", path: out.to_path_buf(), source: e };
    let mut tar = tar::Builder::new(w);
    for e in entries {
        append(&mut tar, e, epoch).map_err(|err| match err {
            Appended::Read(why) => layer_err(&e.path, why),
            Appended::Write(w) => write_err(w),
        })?;
    }
    tar.into_inner().map_err(write_err)
}

enum Appended {
    Read(String),
    Write(io::Error),
}

fn append<W: Write>(tar: &mut tar::Builder<W>, e: &Entry, epoch: u64) -> Result<(), Appended> {
    use tar::EntryType;
    let w = Appended::Write;
    let mut h = tar::Header::new_gnu();
    h.set_mtime(epoch);
    h.set_uid(u64::from(e.uid));
    h.set_gid(u64::from(e.gid));
    h.set_mode(e.mode);
    h.set_size(0);
    if !e.xattrs.is_empty() {
        pax(tar, &e.xattrs, epoch).map_err(w)?;
    }
    match &e.kind {
        Kind::File { source, size, .. } => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(*size);
            // The run has ended and nothing else can reach the upper
            // directory, but a symlink is never followed here all the same.
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(source)
                .map_err(|err| Appended::Read(format!("opening: {err}")))?;
            if !f.metadata().is_ok_and(|m| m.is_file()) {
                return Err(Appended::Read("is no longer a regular file".into()));
            }
            let mut data = Exact { inner: f, left: *size, shrank: false };
            let r = tar.append_data(&mut h, &e.path, &mut data);
            if data.shrank {
                return Err(Appended::Read("the file shrank while it was read".into()));
            }
            r.map_err(w)
        }
        Kind::Dir => {
            h.set_entry_type(EntryType::Directory);
            tar.append_data(&mut h, &e.path, io::empty()).map_err(w)
        }
        Kind::Symlink(target) | Kind::Hardlink(target) => {
            h.set_entry_type(if matches!(e.kind, Kind::Symlink(_)) {
                EntryType::Symlink
            } else {
                EntryType::Link
            });
            tar.append_link(&mut h, &e.path, target).map_err(w)
        }
        Kind::Char(major, minor) | Kind::Block(major, minor) => {
            h.set_entry_type(if matches!(e.kind, Kind::Char(..)) {
                EntryType::Char
            } else {
                EntryType::Block
            });
            h.set_device_major(*major).map_err(w)?;
            h.set_device_minor(*minor).map_err(w)?;
            tar.append_data(&mut h, &e.path, io::empty()).map_err(w)
        }
        Kind::Fifo => {
            h.set_entry_type(EntryType::Fifo);
            tar.append_data(&mut h, &e.path, io::empty()).map_err(w)
        }
        Kind::Whiteout | Kind::Opaque => {
            h.set_entry_type(EntryType::Regular);
            tar.append_data(&mut h, &e.path, io::empty()).map_err(w)
        }
    }
}

/// A PAX extended header with `SCHILY.xattr.NAME=VALUE` records, for the entry
/// that follows.
fn pax<W: Write>(tar: &mut tar::Builder<W>, xattrs: &[(String, Vec<u8>)], epoch: u64) -> io::Result<()> {
    let mut data = Vec::new();
    for (name, value) in xattrs {
        let body_len = " SCHILY.xattr.".len() + name.len() + 1 + value.len() + 1;
        // The length counts its own digits.
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} SCHILY.xattr.{name}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    let name = b"././@PaxHeader";
    if let Some(u) = h.as_ustar_mut() {
        u.name[..name.len()].copy_from_slice(name);
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    tar.append(&h, data.as_slice())
}

/// Reads exactly `left` bytes of `inner`, noting a file that ends early.
struct Exact<R> {
    inner: R,
    left: u64,
    shrank: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            self.shrank = true;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The xattrs a layer carries: `user.*` except overlayfs's, and file capabilities.
fn kept_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in crate::sys::llistxattr(path)? {
        let keep = (name.starts_with("user.") && !name.starts_with("user.overlay."))
            || name == "security.capability";
        if keep {
            if let Some(v) = crate::sys::lgetxattr(path, &name)? {
                if v.contains(&b'\n') {
                    // tar-rs, which reads layers at import, splits PAX records
                    // at newlines whatever their length says.
                    return Err(io::Error::other(format!(
                        "the value of the xattr {name} holds a newline byte, which the layer reader \
                         cannot take; remove the xattr in assemble"
                    )));
                }
                out.push((name, v));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
