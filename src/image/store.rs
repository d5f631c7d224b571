//! The store's files: paths, the store lock, tmp work directories, refs.json, and
//! publishing blobs and layers by rename.
//!
//! Publishing never replaces anything: a blob or layer directory is renamed into
//! place with `RENAME_NOREPLACE`, and if the name already exists somebody else
//! finished the same work first, so ours is discarded.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::manifest::{self, Manifest};
use super::{Error, ImageSummary, LayerInfo, Result};
use crate::digest::{Digest, HashingWriter};
use crate::fsutil::{self, Lock};

/// Largest JSON blob (index, manifest, config) read into memory.
pub(crate) const MAX_JSON_BLOB: u64 = 32 << 20;

/// A staging tmp dir (name starting with '.') older than this is abandoned.
const STAGING_GRACE: Duration = Duration::from_secs(3600);

/// The refs.json schema this code reads and writes.
const REFS_SCHEMA: u32 = 1;

/// The store directory and the paths inside it.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

/// refs.json: which manifests are images, and their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refs {
    pub schema: u32,
    pub images: BTreeMap<Digest, RefEntry>,
}

impl Default for Refs {
    fn default() -> Self {
        Self { schema: REFS_SCHEMA, images: BTreeMap::new() }
    }
}

/// One image in refs.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefEntry {
    pub imported: String,
    pub source: String,
    pub names: Vec<String>,
    /// Where a pulled image came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<super::Origin>,
}

/// A stored image, read back from its manifest and config blobs.
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub config_digest: Digest,
    pub config_size: u64,
    pub config: oci_spec::image::ImageConfiguration,
    pub layers: Vec<LayerInfo>,
}

impl StoredImage {
    pub fn size(&self) -> u64 {
        self.manifest_size + self.config_size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    pub fn platform(&self) -> String {
        let mut p = format!("{}/{}", self.config.os(), self.config.architecture());
        if let Some(v) = self.config.variant() {
            p.push('/');
            p.push_str(v);
        }
        p
    }

    pub fn summary(&self, name: Option<String>) -> ImageSummary {
        ImageSummary {
            name,
            manifest_digest: self.manifest_digest.clone(),
            config_digest: self.config_digest.clone(),
            size: self.size(),
            created: self.config.created().clone(),
            layers: self.layers.len(),
        }
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        let store = Self { root: dir.to_path_buf() };
        // Layers hold what images hold: setuid-root programs, files with
        // capabilities, device nodes, world-writable directories shared by every
        // image with that layer. Only the store's owner may reach them.
        match fsutil::private_dir(dir) {
            Ok(None) => {}
            Ok(Some(was)) => eprintln!(
                "exprun: note: the image store {} was mode {was:04o}, open to other users; it is now 0700",
                dir.display()
            ),
            Err(e) => return Err(Error::io("make private", dir, e)),
        }
        for d in [store.blobs_dir(), store.layers_dir(), store.tmp_dir(), store.partial_dir()] {
            fsutil::create_private_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Blobs being downloaded, kept between attempts so that a pull resumes.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }
    pub fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }

    /// Take the store lock, blocking until it is available.
    pub fn lock(&self, exclusive: bool) -> Result<Lock> {
        let path = self.root.join("lock");
        Lock::acquire(&path, exclusive).map_err(|e| Error::io("lock", &path, e))
    }

    /// The size of a stored blob, or `None` if it is not stored.
    pub fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(d);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    /// Read a small stored blob, checking its digest again (cheap for JSON, and it
    /// catches a store edited by hand).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let mut bytes = Vec::new();
        File::open(&path).and_then(|f| f.take(MAX_JSON_BLOB + 1).read_to_end(&mut bytes)).map_err(
            |e| match e.kind() {
                io::ErrorKind::NotFound => Error::Store {
                    path: path.clone(),
                    why: format!(
                        "blob {d} is missing; remove the image (exprun image rm) and import it again"
                    ),
                },
                _ => Error::io("read", &path, e),
            },
        )?;
        let found = Digest::of_bytes(&bytes);
        if &found != d {
            return Err(Error::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: d.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Load an image's manifest and config from the store.
    pub fn load_image(&self, manifest_digest: &Digest) -> Result<StoredImage> {
        let what = format!("stored manifest {manifest_digest}");
        let bytes = self.read_blob(manifest_digest)?;
        let m: Manifest = manifest::parse_json(&bytes, &what)?;
        let config_bytes = self.read_blob(&m.config.digest)?;
        let config: oci_spec::image::ImageConfiguration =
            manifest::parse_json(&config_bytes, &format!("stored config {}", m.config.digest))?;
        let diff_ids = manifest::diff_ids(&config, m.layers.len(), &what)?;
        let layers = m
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, diff_id)| LayerInfo {
                digest: l.digest.clone(),
                diff_id,
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect();
        Ok(StoredImage {
            manifest_digest: manifest_digest.clone(),
            manifest_size: bytes.len() as u64,
            config_digest: m.config.digest,
            config_size: config_bytes.len() as u64,
            config,
            layers,
        })
    }

    pub fn load_refs(&self) -> Result<Refs> {
        let path = self.refs_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Refs::default()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        #[derive(Deserialize)]
        struct Version {
            schema: u32,
        }
        let what = path.display().to_string();
        let v: Version = manifest::parse_json(&bytes, &what)?;
        if v.schema != REFS_SCHEMA {
            return Err(Error::Store {
                path,
                why: format!(
                    "unsupported refs.json schema {} (this exprun knows {REFS_SCHEMA}); \
                     use the exprun version that wrote it",
                    v.schema
                ),
            });
        }
        manifest::parse_json(&bytes, &what)
    }

    /// Write refs.json durably. Call with the exclusive store lock held.
    pub fn save_refs(&self, refs: &Refs) -> Result<()> {
        let path = self.refs_path();
        fsutil::write_json_atomic(&path, refs, true).map_err(|e| Error::io("write", &path, e))
    }

    /// Flush everything written to the store's filesystem (one syncfs instead of an
    /// fsync per file), so that what is published next is on disk first.
    pub fn sync(&self) -> Result<()> {
        let f = File::open(&self.root).map_err(|e| Error::io("open", &self.root, e))?;
        nix::unistd::syncfs(&f).map_err(|e| Error::io("syncfs", &self.root, e.into()))
    }

    /// A new tmp work directory, locked for as long as the returned value lives and
    /// removed when it is dropped.
    ///
    /// It is made under a staging name (`.<x>`, which cleaners leave alone), its
    /// lock taken, and only then renamed to `<x>`: a cleaner that sees `<x>` can
    /// trust that an unheld lock means an abandoned directory.
    pub fn new_tmp(&self) -> Result<TmpDir> {
        let name = fsutil::random_hex(8);
        let staging = self.tmp_dir().join(format!(".{name}"));
        let path = self.tmp_dir().join(&name);
        fs::create_dir(&staging).map_err(|e| Error::io("create directory", &staging, e))?;
        let lock = match Lock::acquire(&staging.join("lock"), true) {
            Ok(l) => l,
            Err(e) => {
                let _ = fsutil::remove_tree(&staging);
                return Err(Error::io("lock", &staging.join("lock"), e));
            }
        };
        if let Err(e) = fs::rename(&staging, &path) {
            let _ = fsutil::remove_tree(&staging);
            return Err(Error::io("rename", &staging, e));
        }
        Ok(TmpDir { path, _lock: lock, counter: 0 })
    }

    /// Remove the tmp dirs whose owner is gone (their lock is not held). Returns how
    /// many were removed.
    pub fn clean_stale_tmp(&self) -> Result<usize> {
        let dir = self.tmp_dir();
        let rd = fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
        let mut removed = 0;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue, // gone meanwhile
            };
            if name.as_encoded_bytes().starts_with(b".") {
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STAGING_GRACE);
                if old {
                    remove_all(&path)?;
                    removed += 1;
                }
                continue;
            }
            if !meta.is_dir() {
                remove_all(&path)?;
                removed += 1;
                continue;
            }
            // Open the lock without creating it: a directory without one was never
            // live under this name (the lock is made before the rename).
            let lock_path = path.join("lock");
            let held = match OpenOptions::new().read(true).write(true).open(&lock_path) {
                Ok(f) => match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(flock) => Some(flock),
                    Err((_, Errno::EWOULDBLOCK)) => continue, // live
                    Err((_, e)) => return Err(Error::io("lock", &lock_path, e.into())),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("open", &lock_path, e)),
            };
            remove_all(&path)?;
            drop(held);
            removed += 1;
        }
        Ok(removed)
    }

    /// Move a verified blob from a tmp file into blobs/. If the blob is already
    /// there, ours is discarded.
    pub fn publish_blob(&self, tmp_file: &Path, d: &Digest) -> Result<()> {
        let _ = fs::set_permissions(tmp_file, fs::Permissions::from_mode(0o444));
        let dest = self.blob_path(d);
        match crate::sys::rename_noreplace(tmp_file, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let _ = fs::remove_file(tmp_file);
                Ok(())
            }
            Err(e) => Err(Error::io("rename into the store", tmp_file, e)),
        }
    }

    /// Write verified bytes as a blob (through a tmp file).
    pub fn put_blob_bytes(&self, tmp: &mut TmpDir, d: &Digest, bytes: &[u8]) -> Result<()> {
        if self.blob_size(d)?.is_some() {
            return Ok(());
        }
        let (mut file, path) = tmp.create_file("blob")?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Error::io("write", &path, e))?;
        self.publish_blob(&path, d)
    }

    /// Move an unpacked layer directory into layers/. If that layer is already
    /// there, ours is discarded.
    pub fn publish_layer(&self, tmp_dir: &Path, diff_id: &Digest) -> Result<()> {
        let dest = self.layer_path(diff_id);
        match crate::sys::rename_noreplace(tmp_dir, &dest) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => remove_all(tmp_dir),
            Err(e) => Err(Error::io("rename into the store", tmp_dir, e)),
        }
    }
}

/// A locked tmp work directory, removed (lock still held) when dropped.
#[derive(Debug)]
pub(crate) struct TmpDir {
    path: PathBuf,
    _lock: Lock,
    counter: u64,
}

impl TmpDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh path inside, `<prefix>-<n>`.
    pub fn fresh(&mut self, prefix: &str) -> PathBuf {
        self.counter += 1;
        self.path.join(format!("{prefix}-{}", self.counter))
    }

    /// Create a new file inside.
    pub fn create_file(&mut self, prefix: &str) -> Result<(File, PathBuf)> {
        let path = self.fresh(prefix);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok((f, path))
    }

    /// Copy at most `limit` bytes from `r` into a new file, hashing them; the file
    /// is fsync'd. Returns the path, digest and length.
    pub fn copy_hashed(
        &mut self,
        r: &mut dyn Read,
        limit: u64,
        what: &Path,
    ) -> Result<(PathBuf, Digest, u64)> {
        let (file, path) = self.create_file("blob")?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 17, file));
        io::copy(&mut r.take(limit), &mut w).map_err(|e| Error::io("read", what, e))?;
        let (buf, digest, len) = w.finish();
        buf.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("write", &path, e))?;
        Ok((path, digest, len))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        // The lock (a field) is released after this body, i.e. after the removal.
        let _ = remove_all(&self.path);
    }
}

/// Remove a file or a directory tree, also when it holds directories without
/// write permission (an unpacked layer's `0555` dirs, as a non-root user).
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", path, e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        };
    }
    match fsutil::remove_tree(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path);
            fsutil::remove_tree(path).map_err(|e| Error::io("remove", path, e))
        }
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Give the owner rwx on every directory of a tree (never following symlinks).
fn make_dirs_writable(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o700));
        if let Ok(rd) = fs::read_dir(&dir) {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
}

/// Apparent size of a tree (regular files), never following symlinks.
pub(crate) fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_dir_is_removed_on_drop_and_locked_while_alive() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let tmp = store.new_tmp().unwrap();
        let p = tmp.path.clone();
        assert!(p.is_dir());
        // A live tmp dir is not stale.
        assert_eq!(store.clean_stale_tmp().unwrap(), 0);
        assert!(p.is_dir());
        drop(tmp);
        assert!(!p.exists());
    }

    #[test]
    fn stale_tmp_dirs_are_cleaned_but_young_staging_dirs_are_not() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let stale = store.tmp_dir().join("abandoned");
        fs::create_dir_all(stale.join("layer-1/usr")).unwrap();
        fs::write(stale.join("lock"), b"").unwrap();
        let no_lock = store.tmp_dir().join("nolock");
        fs::create_dir_all(&no_lock).unwrap();
        let staging = store.tmp_dir().join(".young");
        fs::create_dir_all(&staging).unwrap();
        assert_eq!(store.clean_stale_tmp().unwrap(), 2);
        assert!(!stale.exists());
        assert!(!no_lock.exists());
        assert!(staging.exists());
    }

    #[test]
    fn publish_blob_keeps_the_first_copy() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let digest = Digest::of_bytes(b"x");
        let mut tmp = store.new_tmp().unwrap();
        store.put_blob_bytes(&mut tmp, &digest, b"x").unwrap();
        let ino = fs::metadata(store.blob_path(&digest)).unwrap().ino();
        let (mut f, p) = tmp.create_file("blob").unwrap();
        f.write_all(b"x").unwrap();
        store.publish_blob(&p, &digest).unwrap();
        assert!(!p.exists());
        assert_eq!(fs::metadata(store.blob_path(&digest)).unwrap().ino(), ino);
    }

    #[test]
    fn refs_round_trip_and_unknown_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        assert_eq!(store.load_refs().unwrap(), Refs::default());
        let mut refs = Refs::default();
        refs.images.insert(
            Digest::of_bytes(b"m"),
            RefEntry { imported: "now".into(), source: "/x".into(), names: vec!["a:b".into()], origin: None },
        );
        store.save_refs(&refs).unwrap();
        assert_eq!(store.load_refs().unwrap(), refs);
        fs::write(store.refs_path(), br#"{"schema":2,"images":{}}"#).unwrap();
        let err = store.load_refs().unwrap_err().to_string();
        assert!(err.contains("unsupported refs.json schema 2"), "{err}");
    }
}
