//! Digests of input and output trees: every file's sha256, and one digest over the
//! sorted listing, so two trees are equal exactly when their digests are.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

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
}

/// A tree's digest and contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDigest {
    /// sha256 over the sorted entries (kind, path, size, mode, digest or target).
    pub digest: Digest,
    /// Number of regular files.
    pub files: u64,
    /// Total bytes of regular files.
    pub bytes: u64,
    /// Every entry, sorted by path.
    pub entries: Vec<FileEntry>,
}

/// Digest the tree at `root` (a directory or a single file). `root` itself is
/// followed if it is a symlink, as the bind mount follows it; symlinks inside are
/// recorded, never followed; special files are listed, not read.
pub fn digest_tree(root: &Path) -> io::Result<TreeDigest> {
    let mut entries = Vec::new();
    let meta = fs::metadata(root)?;
    if meta.is_dir() {
        walk(root, PathBuf::new(), &mut entries)?;
    } else {
        entries.push(entry(root, ".".into(), &meta)?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Hasher::new();
    let (mut files, mut bytes) = (0, 0);
    for e in &entries {
        if e.kind == "file" {
            files += 1;
            bytes += e.size.unwrap_or(0);
        }
        let detail =
            e.digest.as_ref().map(|d| d.to_string()).or_else(|| e.target.clone()).unwrap_or_default();
        let mode = e.mode.map(|m| format!("{m:04o}")).unwrap_or_default();
        let line = format!("{}\t{}\t{}\t{mode}\t{}\n", e.kind, e.path, e.size.unwrap_or(0), detail);
        h.update(line.as_bytes());
    }
    Ok(TreeDigest { digest: h.finish().0, files, bytes, entries })
}

fn walk(dir: &Path, rel: PathBuf, out: &mut Vec<FileEntry>) -> io::Result<()> {
    for de in fs::read_dir(dir)? {
        let de = de?;
        let path = de.path();
        let rel_path = rel.join(de.file_name());
        let meta = fs::symlink_metadata(&path)?;
        out.push(entry(&path, rel_path.to_string_lossy().into_owned(), &meta)?);
        if meta.is_dir() {
            walk(&path, rel_path, out)?;
        }
    }
    Ok(())
}

fn entry(path: &Path, rel: String, meta: &fs::Metadata) -> io::Result<FileEntry> {
    let ft = meta.file_type();
    let mut e =
        FileEntry { path: rel, kind: "other".into(), size: None, digest: None, target: None, mode: None };
    if ft.is_file() || ft.is_dir() {
        e.mode = Some(meta.permissions().mode() & 0o7777);
    }
    if ft.is_file() {
        let (d, n) = Digest::of_file(path)?;
        e.kind = "file".into();
        e.size = Some(n);
        e.digest = Some(d);
    } else if ft.is_dir() {
        e.kind = "dir".into();
    } else if ft.is_symlink() {
        e.kind = "symlink".into();
        e.target = Some(fs::read_link(path)?.to_string_lossy().into_owned());
    } else if ft.is_fifo() || ft.is_socket() || ft.is_char_device() || ft.is_block_device() {
        e.kind = "other".into();
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_trees_equal_digests_and_any_change_shows() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir(d.join("sub")).unwrap();
            fs::write(d.join("sub/x.csv"), "1,2\n").unwrap();
            fs::write(d.join("top"), "t").unwrap();
            std::os::unix::fs::symlink("top", d.join("link")).unwrap();
        }
        let da = digest_tree(a.path()).unwrap();
        assert_eq!(da, digest_tree(b.path()).unwrap());
        assert_eq!((da.files, da.bytes), (2, 5));
        assert_eq!(
            da.entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["link", "sub", "sub/x.csv", "top"]
        );
        fs::set_permissions(b.path().join("top"), fs::Permissions::from_mode(0o600)).unwrap();
        let mode_changed = digest_tree(b.path()).unwrap();
        assert_ne!(da.digest, mode_changed.digest, "a mode change shows");
        fs::set_permissions(b.path().join("top"), fs::Permissions::from_mode(da.entries[3].mode.unwrap()))
            .unwrap();
        assert_eq!(da, digest_tree(b.path()).unwrap());
        fs::write(b.path().join("sub/x.csv"), "1,3\n").unwrap();
        assert_ne!(da.digest, digest_tree(b.path()).unwrap().digest);
    }

    #[test]
    fn a_symlinked_root_is_followed_like_the_bind_mount() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("real")).unwrap();
        fs::write(d.path().join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        assert_eq!(
            digest_tree(&d.path().join("link")).unwrap(),
            digest_tree(&d.path().join("real")).unwrap()
        );
    }

    #[test]
    fn a_single_file_is_a_tree_of_one() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.bin");
        fs::write(&f, b"abc").unwrap();
        let t = digest_tree(&f).unwrap();
        assert_eq!(t.entries.len(), 1);
        assert_eq!(t.entries[0].digest, Some(Digest::of_bytes(b"abc")));
    }
}
