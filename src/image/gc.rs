//! `rm` (drop names and images from refs.json) and `gc` (delete what no image,
//! and no live container, refers to). Both hold the exclusive store lock.
//!
//! gc never deletes a layer directory in place: it first renames it into a tmp
//! dir, so an interrupted gc cannot leave a half-deleted layer under layers/ that
//! a later import would take for a complete one.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use serde::Serialize;

use super::reference::{self, Reference};
use super::store::{self, Store};
use super::{Error, Result};
use crate::digest::Digest;

/// What [`super::ImageStore::remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// Names taken off an image.
    pub untagged: Vec<String>,
    /// Images removed from refs.json (their blobs and layers stay until gc).
    pub removed: Vec<Digest>,
}

/// What [`super::ImageStore::gc`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Layer directories deleted.
    pub layers_removed: usize,
    /// Stale tmp directories deleted.
    pub tmp_removed: usize,
    /// Bytes freed (blob sizes plus the apparent size of layer files).
    pub bytes_freed: u64,
}

pub(crate) fn remove(store: &Store, reference: &str) -> Result<RemoveReport> {
    let _lock = store.lock(true)?;
    let mut refs = store.load_refs()?;
    let (digest, matched) = reference::find(&refs, reference)?;
    let by_name = matches!(reference::parse(reference)?, Reference::Tagged { .. } | Reference::Pinned { .. });
    let mut report = RemoveReport::default();
    let Some(entry) = refs.images.get_mut(&digest) else {
        return Err(Error::NotFound { reference: reference.to_string() });
    };
    match matched.filter(|_| by_name) {
        Some(name) => {
            entry.names.retain(|n| n != &name);
            report.untagged.push(name);
            if entry.names.is_empty() {
                refs.images.remove(&digest);
                report.removed.push(digest);
            }
        }
        None => {
            report.untagged = std::mem::take(&mut entry.names);
            refs.images.remove(&digest);
            report.removed.push(digest);
        }
    }
    store.save_refs(&refs)?;
    Ok(report)
}

pub(crate) fn gc(store: &Store, layers_in_use: &BTreeSet<Digest>) -> Result<GcReport> {
    let _lock = store.lock(true)?;
    let mut report = GcReport { tmp_removed: store.clean_stale_tmp()?, ..GcReport::default() };
    // Under the exclusive lock no pull is running: its partial downloads go too.
    let dir = store.partial_dir();
    for entry in fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?.flatten() {
        let path = entry.path();
        report.bytes_freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => report.tmp_removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }

    // What the images refer to. An image whose manifest or config cannot be read
    // stops gc: deleting on a partial view could delete what it needs.
    let refs = store.load_refs()?;
    let mut blobs = BTreeSet::new();
    let mut layers = layers_in_use.clone();
    for digest in refs.images.keys() {
        let image = store.load_image(digest).map_err(|e| Error::Store {
            path: store.refs_path(),
            why: format!(
                "image {digest} cannot be read ({e}); nothing was collected. Remove it with \
                 exprun image rm {digest} and run gc again"
            ),
        })?;
        blobs.insert(digest.clone());
        blobs.insert(image.config_digest.clone());
        for l in image.layers {
            blobs.insert(l.digest);
            layers.insert(l.diff_id);
        }
    }

    let dir = store.blobs_dir();
    for (digest, path) in listing(&dir)? {
        if blobs.contains(&digest) {
            continue;
        }
        let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }

    let dir = store.layers_dir();
    let doomed = listing(&dir)?.into_iter().filter(|(d, _)| !layers.contains(d)).collect::<Vec<_>>();
    if !doomed.is_empty() {
        let mut tmp = store.new_tmp()?;
        for (_, path) in doomed {
            let dest = tmp.fresh("doomed");
            fs::rename(&path, &dest).map_err(|e| Error::io("move out of the store", &path, e))?;
            report.bytes_freed += store::tree_size(&dest);
            store::remove_all(&dest)?;
            report.layers_removed += 1;
        }
    }
    Ok(report)
}

/// The entries of blobs/sha256 or layers/ named by a digest's hex.
fn listing(dir: &std::path::Path) -> Result<Vec<(Digest, std::path::PathBuf)>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(d) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
            out.push((d, entry.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::image::testutil::{layer, write_layout, Image, TarBuilder};
    use crate::image::{ImageStore, Progress};

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    fn hexes<'a>(ds: impl IntoIterator<Item = &'a Digest>) -> BTreeSet<String> {
        ds.into_iter().map(|d| d.hex().to_string()).collect()
    }

    #[test]
    fn rm_untags_then_removes_and_gc_deletes_exactly_the_unreferenced() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(&d.path().join("store")).unwrap();
        let base = layer(&TarBuilder::new().file("base", b"b").build(), "gzip");
        let only_a = layer(&TarBuilder::new().dir("ro", 0o555).file("ro/a", b"a").build(), "zstd");
        let only_b = layer(&TarBuilder::new().file("b", b"b").build(), "tar");
        let a = Image::new(vec![base.clone(), only_a.clone()], "a");
        let b = Image::new(vec![base.clone(), only_b.clone()], "b");
        write_layout(&d.path().join("a"), std::slice::from_ref(&a));
        write_layout(&d.path().join("b"), std::slice::from_ref(&b));
        s.import(&d.path().join("a"), None, Progress::Hidden).unwrap();
        s.import(&d.path().join("a"), Some("a:second"), Progress::Hidden).unwrap();
        s.import(&d.path().join("b"), None, Progress::Hidden).unwrap();

        // Untag one of two names: the image stays.
        let r = s.remove("a:second").unwrap();
        assert_eq!((r.untagged, r.removed), (vec!["a:second".to_string()], vec![]));
        // Untag the last name: the image goes.
        let r = s.remove("a").unwrap();
        assert_eq!((r.untagged, r.removed), (vec!["a:latest".to_string()], vec![a.manifest_digest()]));
        assert!(s.resolve("a").is_err());
        let e = s.remove("a").unwrap_err().to_string();
        assert_eq!(e, "no image matches \"a\"; see exprun image ls");

        // gc keeps b, and a's top layer while a container uses it.
        let in_use = BTreeSet::from([only_a.diff_id.clone()]);
        let before = names(&s.dir().join("blobs/sha256")).len();
        let g = s.gc(&in_use).unwrap();
        let a_only_blobs = hexes([&a.manifest_digest(), &Digest::of_bytes(&a.config), &only_a.digest]);
        assert_eq!(g.blobs_removed, 3);
        assert_eq!(g.layers_removed, 0);
        assert!(g.bytes_freed > 0);
        let blobs = names(&s.dir().join("blobs/sha256"));
        assert_eq!(blobs.len(), before - 3);
        assert!(blobs.is_disjoint(&a_only_blobs));
        let b_blobs =
            hexes([&b.manifest_digest(), &Digest::of_bytes(&b.config), &base.digest, &only_b.digest]);
        assert_eq!(blobs, b_blobs);
        assert_eq!(names(&s.layers_root()), hexes([&base.diff_id, &only_a.diff_id, &only_b.diff_id]));
        assert!(s.resolve("b").is_ok());

        // Once no container uses it, the layer goes too (its 0555 dir included).
        let g = s.gc(&BTreeSet::new()).unwrap();
        assert_eq!((g.blobs_removed, g.layers_removed), (0, 1));
        assert_eq!(names(&s.layers_root()), hexes([&base.diff_id, &only_b.diff_id]));
        assert!(names(&s.dir().join("tmp")).is_empty());

        // Removing by digest prefix drops every name, and gc empties the store.
        s.import(&d.path().join("b"), Some("b:other"), Progress::Hidden).unwrap();
        let r = s.remove(&b.manifest_digest().hex()[..8]).unwrap();
        assert_eq!(r.untagged, ["b:latest", "b:other"]);
        assert_eq!(r.removed, [b.manifest_digest()]);
        let g = s.gc(&BTreeSet::new()).unwrap();
        assert_eq!((g.blobs_removed, g.layers_removed), (4, 2));
        assert!(names(&s.dir().join("blobs/sha256")).is_empty());
        assert!(names(&s.layers_root()).is_empty());
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn gc_removes_stale_tmp_dirs_and_refuses_on_a_broken_image() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(&d.path().join("store")).unwrap();
        let stale = s.dir().join("tmp/deadbeef");
        fs::create_dir_all(stale.join("layer-1")).unwrap();
        fs::write(stale.join("lock"), b"").unwrap();
        assert_eq!(s.gc(&BTreeSet::new()).unwrap().tmp_removed, 1);
        assert!(!stale.exists());

        let img = Image::new(vec![layer(&TarBuilder::new().file("x", b"").build(), "tar")], "x");
        write_layout(&d.path().join("i"), std::slice::from_ref(&img));
        s.import(&d.path().join("i"), None, Progress::Hidden).unwrap();
        fs::remove_file(s.dir().join("blobs/sha256").join(img.manifest_digest().hex())).unwrap();
        let e = s.gc(&BTreeSet::new()).unwrap_err().to_string();
        assert!(e.contains("nothing was collected"), "{e}");
        assert_eq!(names(&s.layers_root()).len(), 1);
        s.remove(&img.manifest_digest().to_string()).unwrap();
        assert_eq!(s.gc(&BTreeSet::new()).unwrap().layers_removed, 1);
    }
}
