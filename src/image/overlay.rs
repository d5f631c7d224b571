//! An image's unpacked layers read as overlayfs merges them, without mounting
//! them: whiteouts, opaque directories, and the topmost layer's entry.
//!
//! A layer is an image's, so anything in it is hostile: no lookup goes through
//! a symlink of a layer, neither in the container's sense nor on the host.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// What the layers (bottom first) show at `path` (absolute, or relative to
/// the image's root), as overlayfs would merge them: the host path and status
/// of the topmost layer's entry, unless a layer above hides it (a whiteout,
/// an opaque directory or a non-directory on the way). Each layer's parents
/// are checked from the top down before the entry itself is looked at, so an
/// image's `etc -> /some/host/dir` is never read on the host; in the
/// container it would resolve inside the image instead, which this does not
/// follow either: a symlink on the way hides the entry.
pub fn lookup(layers: &[PathBuf], path: &Path) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
    let rel: PathBuf = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if rel.as_os_str().is_empty() {
        return layers.last().map(|l| Ok((l.clone(), fs::symlink_metadata(l)?))).transpose();
    }
    let mut parents: Vec<&Path> = rel.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).collect();
    parents.reverse();
    let absent =
        |e: &io::Error| e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR);
    'layers: for layer in layers.iter().rev() {
        // An opaque directory on the way hides the lower layers.
        let mut opaque = false;
        for parent in &parents {
            let p = layer.join(parent);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => opaque |= is_opaque(&p)?,
                // A symlink, a whiteout or a file on the way: nothing below it.
                Ok(_) => return Ok(None),
                Err(e) if absent(&e) => {
                    if opaque {
                        return Ok(None);
                    }
                    continue 'layers;
                }
                Err(e) => return Err(e),
            }
        }
        let p = layer.join(&rel);
        match fs::symlink_metadata(&p) {
            Ok(m) if is_whiteout(&p, &m)? => return Ok(None),
            Ok(m) => return Ok(Some((p, m))),
            Err(e) if absent(&e) => {}
            Err(e) => return Err(e),
        }
        if opaque {
            return Ok(None);
        }
    }
    Ok(None)
}

/// An overlayfs whiteout: a 0:0 character device, or an empty file carrying
/// an `overlay.whiteout` xattr.
pub fn is_whiteout(path: &Path, meta: &fs::Metadata) -> io::Result<bool> {
    let ft = meta.file_type();
    if ft.is_char_device() {
        return Ok(meta.rdev() == 0);
    }
    Ok(ft.is_file() && meta.len() == 0 && xattr(path, "overlay.whiteout")?.is_some())
}

/// An opaque directory: `overlay.opaque=y` (`x` only says it holds whiteout files).
pub fn is_opaque(path: &Path) -> io::Result<bool> {
    Ok(xattr(path, "overlay.opaque")?.is_some_and(|v| v == b"y"))
}

/// overlayfs's xattr `name` in its `trusted.` (root) or `user.` (userxattr) form.
pub fn xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match crate::sys::lgetxattr(path, &format!("trusted.{name}"))? {
        Some(v) => Ok(Some(v)),
        None => crate::sys::lgetxattr(path, &format!("user.{name}")),
    }
}
