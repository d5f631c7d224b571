//! What "nothing on the host changed" means for the adversarial tests: the
//! host's own device nodes (owner, mode, numbers, times), a marker tree that no
//! run was given, and every file of an exprun store (owner, mode, content).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The host device nodes a container could reach through a bind mount.
pub const HOST_NODES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/kmsg"];

/// A snapshot of what an attack must not change.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<PathBuf, String>,
}

/// A tree of files on the host that no container is given: an attack that
/// writes through a symlink or a redirected mount would land here.
pub struct Marker {
    pub dir: tempfile::TempDir,
}

impl Marker {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("exprun-marker-").tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "host marker\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/file"), "untouched\n").unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn describe(p: &Path, content: bool) -> String {
    match std::fs::symlink_metadata(p) {
        Err(e) => format!("absent ({e})"),
        Ok(m) => {
            let mut s = format!(
                "mode={:o} uid={} gid={} rdev={:x} size={} mtime={}.{} ctime={}.{}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.rdev(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            );
            if m.file_type().is_symlink() {
                s.push_str(&format!(" -> {}", std::fs::read_link(p).unwrap().display()));
            } else if content && m.is_file() {
                let bytes = std::fs::read(p).unwrap_or_default();
                s.push_str(&format!(" sha256={}", sha256_hex(&bytes)));
            }
            s
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>, content: bool) {
    out.insert(dir.to_path_buf(), describe(dir, false));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out, content);
        } else {
            out.insert(p.clone(), describe(&p, content));
        }
    }
}

impl Snapshot {
    /// The host's device nodes, the marker tree, and each store given
    /// (`<root>/store/blobs` and `<root>/store/layers`: the layers' files
    /// with owner, mode and digest).
    pub fn take(marker: &Marker, roots: &[&Path]) -> Self {
        let mut entries = BTreeMap::new();
        for n in HOST_NODES {
            entries.insert(PathBuf::from(n), describe(Path::new(n), false));
        }
        walk(marker.path(), &mut entries, true);
        for r in roots {
            for sub in ["store/blobs", "store/layers"] {
                let d = r.join(sub);
                if d.exists() {
                    walk(&d, &mut entries, true);
                }
            }
        }
        Self { entries }
    }

    /// Panic naming every entry that differs from `before`.
    pub fn assert_same_as(&self, before: &Snapshot, attack: &str) {
        let mut diffs = Vec::new();
        for (p, was) in &before.entries {
            match self.entries.get(p) {
                Some(now) if now == was => {}
                Some(now) => diffs.push(format!("{}: {was} -> {now}", p.display())),
                None => diffs.push(format!("{}: removed", p.display())),
            }
        }
        for p in self.entries.keys().filter(|p| !before.entries.contains_key(*p)) {
            diffs.push(format!("{}: appeared", p.display()));
        }
        assert!(diffs.is_empty(), "{attack}: the host changed:\n{}", diffs.join("\n"));
    }
}
