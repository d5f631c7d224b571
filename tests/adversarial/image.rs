//! Hostile images that `exprun image import` already refuses: layer entries
//! that would land outside the layer (`..`, absolute paths, paths through a
//! symlink, hardlinks to host files, a whiteout of the root) and layouts whose
//! manifest or config lie about the blobs. Each layout is built here, byte by
//! byte; each import must fail with exit 125 and a message naming the layer
//! entry or blob, store nothing (no name, no blob, no layer, no staging), and
//! leave the marker tree an escape would write to as it was.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest as _;
use tar::{EntryType, Header};

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One tar entry, written as given: the `tar` crate's own setters refuse the
/// very paths these tests need.
pub(crate) struct Entry {
    pub path: String,
    pub kind: EntryType,
    pub link: Option<String>,
    pub data: Vec<u8>,
    pub mode: u32,
}

pub(crate) fn file(path: impl Into<String>, data: &[u8]) -> Entry {
    Entry { path: path.into(), kind: EntryType::Regular, link: None, data: data.to_vec(), mode: 0o644 }
}

fn symlink(path: impl Into<String>, target: impl Into<String>) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryType::Symlink,
        link: Some(target.into()),
        data: Vec::new(),
        mode: 0o777,
    }
}

fn hardlink(path: impl Into<String>, target: impl Into<String>) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryType::Link,
        link: Some(target.into()),
        data: Vec::new(),
        mode: 0o644,
    }
}

/// A layer tar of `entries`; names and link targets go in PAX records, so any
/// length and any bytes reach exprun unchanged.
pub(crate) fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut pax: Vec<(&str, &[u8])> = vec![("path", e.path.as_bytes())];
        if let Some(l) = &e.link {
            pax.push(("linkpath", l.as_bytes()));
        }
        b.append_pax_extensions(pax).unwrap();
        let mut h = Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// How a layout lies about its blobs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lie {
    None,
    /// index.json names the manifest by a digest its bytes do not have.
    ManifestDigest,
    /// index.json gives the manifest a size it does not have.
    ManifestSize,
    /// The manifest names the layer by a digest its bytes do not have.
    LayerDigest,
    /// The config's diff_ids name content the layer does not have.
    DiffId,
}

/// Write an OCI layout of one image with one layer `tar` into `dir`, lying as told.
pub(crate) fn layout(dir: &Path, tar: &[u8], lie: Lie) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8], digest: &str| {
        std::fs::write(blobs.join(digest.strip_prefix("sha256:").unwrap()), bytes).unwrap();
    };
    let real_layer = sha256(tar);
    let layer_digest = match lie {
        Lie::LayerDigest => sha256(b"another layer"),
        _ => real_layer.clone(),
    };
    put(tar, &layer_digest);
    let diff_id = match lie {
        Lie::DiffId => sha256(b"other content"),
        _ => real_layer,
    };
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    put(&config, &sha256(&config));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": tar.len()}],
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = match lie {
        Lie::ManifestDigest => (sha256(b"another manifest"), manifest.len()),
        Lie::ManifestSize => (sha256(&manifest), manifest.len() - 1),
        _ => (sha256(&manifest), manifest.len()),
    };
    put(&manifest, &manifest_digest);
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MT_MANIFEST, "digest": manifest_digest, "size": manifest_size}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn image_names(r: &TestRoot) -> serde_json::Value {
    let out = r.exprun(&["image", "ls", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Import the layout `make` writes (given the marker's path) into a store that
/// holds busybox, as `evil:latest`: refused with exit 125 and a message holding
/// every one of `want`, and nothing on the host or in the store changed.
fn assert_import_refused(attack: &str, lie: Lie, make: impl Fn(&str) -> Vec<u8>, want: &[&str]) {
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let work = tempfile::tempdir().unwrap();
    let tar = make(marker.path().to_str().unwrap());
    let src = layout(&work.path().join("evil-oci"), &tar, lie);
    let names = image_names(&r);
    let before = Snapshot::take(&marker, &[r.path()]);

    let out = r.exprun(&["image", "import", "--name", "evil:latest"], Some(&src));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{attack}: {err}");
    for w in want {
        assert!(err.contains(w), "{attack}: the error does not say {w:?}: {err}");
    }

    assert_eq!(image_names(&r), names, "{attack}: the image list changed");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, attack);
    r.assert_no_leftovers();
}

/// The path from the layer directory (below the store's staging dir) up to `/`
/// and down to `target`: deeper than any root a test runs under.
fn up_to(target: &str) -> String {
    format!("{}{}", "../".repeat(32), target.trim_start_matches('/'))
}

#[test]
fn a_layer_entry_climbing_out_with_dotdot_is_refused() {
    if !privileged("a_layer_entry_climbing_out_with_dotdot_is_refused") {
        return;
    }
    assert_import_refused(
        "a layer entry ../../<marker>/pwned",
        Lie::None,
        |m| layer(&[file("etc/ok", b"x"), file(up_to(&format!("{m}/pwned")), b"pwned\n")]),
        &["path escapes the layer directory", "/pwned\""],
    );
}

#[test]
fn an_absolute_layer_entry_is_refused() {
    if !privileged("an_absolute_layer_entry_is_refused") {
        return;
    }
    assert_import_refused(
        "a layer entry /<marker>/pwned",
        Lie::None,
        |m| layer(&[file(format!("{m}/pwned"), b"pwned\n")]),
        &["absolute path; layer entries must be relative", "/pwned\""],
    );
}

#[test]
fn a_layer_entry_through_a_symlink_pointing_out_is_refused() {
    if !privileged("a_layer_entry_through_a_symlink_pointing_out_is_refused") {
        return;
    }
    assert_import_refused(
        "link -> <marker>/sub, then link/pwned",
        Lie::None,
        |m| layer(&[symlink("link", format!("{m}/sub")), file("link/pwned", b"pwned\n")]),
        &["entry \"link/pwned\"", "path goes through \"link\", which is a symlink"],
    );
}

#[test]
fn a_symlink_replacing_a_directory_does_not_redirect_later_entries() {
    if !privileged("a_symlink_replacing_a_directory_does_not_redirect_later_entries") {
        return;
    }
    // The directory exists first, so a check made only when it is created
    // would pass; the symlink then takes its place.
    assert_import_refused(
        "dir/, then dir -> <marker>, then dir/pwned",
        Lie::None,
        |m| {
            let dir = Entry {
                path: "dir/".into(),
                kind: EntryType::Directory,
                link: None,
                data: Vec::new(),
                mode: 0o755,
            };
            layer(&[dir, symlink("dir", m), file("dir/pwned", b"pwned\n")])
        },
        &["entry \"dir/pwned\"", "path goes through \"dir\", which is a symlink"],
    );
}

#[test]
fn a_hardlink_to_an_absolute_host_path_is_refused() {
    if !privileged("a_hardlink_to_an_absolute_host_path_is_refused") {
        return;
    }
    assert_import_refused(
        "hardlink stolen -> /<marker>/secret",
        Lie::None,
        |m| layer(&[hardlink("stolen", format!("{m}/secret"))]),
        &["entry \"stolen\"", "hardlink target", "absolute path"],
    );
}

#[test]
fn a_hardlink_climbing_out_with_dotdot_is_refused() {
    if !privileged("a_hardlink_climbing_out_with_dotdot_is_refused") {
        return;
    }
    assert_import_refused(
        "hardlink stolen -> ../../<marker>/secret",
        Lie::None,
        |m| layer(&[hardlink("stolen", up_to(&format!("{m}/secret")))]),
        &["entry \"stolen\"", "hardlink target", "path escapes the layer directory"],
    );
}

#[test]
fn a_hardlink_through_a_symlink_pointing_out_is_refused() {
    if !privileged("a_hardlink_through_a_symlink_pointing_out_is_refused") {
        return;
    }
    // The target is a relative path inside the layer, but only a symlink leads
    // there: a link(2) that followed it would give the image the host's inode.
    assert_import_refused(
        "link -> <marker>, then hardlink stolen -> link/secret",
        Lie::None,
        |m| layer(&[symlink("link", m), hardlink("stolen", "link/secret")]),
        &["entry \"stolen\"", "hardlink target \"link/secret\" is not an earlier file of this layer"],
    );
}

#[test]
fn a_whiteout_of_the_layer_root_is_refused() {
    if !privileged("a_whiteout_of_the_layer_root_is_refused") {
        return;
    }
    for name in [".wh.", "./.wh.."] {
        assert_import_refused(
            &format!("a whiteout {name:?} of /"),
            Lie::None,
            |_| layer(&[file("etc/ok", b"x"), file(name, b"")]),
            &[&format!("entry {name:?}"), "whiteout of the layer root"],
        );
    }
}

#[test]
fn a_manifest_whose_digest_lies_is_refused() {
    if !privileged("a_manifest_whose_digest_lies_is_refused") {
        return;
    }
    assert_import_refused(
        "index.json names the manifest by another digest",
        Lie::ManifestDigest,
        |_| layer(&[file("etc/evil", b"evil\n")]),
        &["manifest sha256:", "digest mismatch"],
    );
}

#[test]
fn a_manifest_whose_size_lies_is_refused() {
    if !privileged("a_manifest_whose_size_lies_is_refused") {
        return;
    }
    assert_import_refused(
        "index.json gives the manifest a smaller size",
        Lie::ManifestSize,
        |_| layer(&[file("etc/evil", b"evil\n")]),
        &["manifest sha256:", "size mismatch"],
    );
}

#[test]
fn a_layer_whose_digest_lies_is_refused() {
    if !privileged("a_layer_whose_digest_lies_is_refused") {
        return;
    }
    assert_import_refused(
        "the manifest names the layer by another digest",
        Lie::LayerDigest,
        |_| layer(&[file("etc/evil", b"evil\n")]),
        &["blob sha256:", "digest mismatch"],
    );
}

#[test]
fn a_config_whose_diff_ids_lie_is_refused() {
    if !privileged("a_config_whose_diff_ids_lie_is_refused") {
        return;
    }
    // The layer itself is harmless and is unpacked before the lie shows: what
    // was unpacked must go, not be published under the claimed diff_id.
    assert_import_refused(
        "the config's diff_id names other content",
        Lie::DiffId,
        |_| layer(&[file("etc/evil", b"evil\n")]),
        &["uncompressed content (diff_id)", "digest mismatch"],
    );
}
