//! Test helpers: build layer tars (including malicious ones), compress them, and
//! write OCI layouts, oci-archives and docker-archives by hand.

use std::fs;
use std::io::Write;
use std::path::Path;

use tar::{EntryType, Header};

use super::manifest::{MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD, MT_OCI_CONFIG, MT_OCI_MANIFEST};
use super::ImageStore;
use crate::digest::Digest;

/// Whether the tests run as root; if not, print why a test is skipped, or fail
/// when `CI=true` (CI hosts are expected to run everything).
pub(crate) fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} needs root, and CI=true forbids skipping");
    }
    println!("SKIP: {what} needs root");
    false
}

/// A layer tar built entry by entry. Names are written as given (no checks), in
/// the header when they fit and in a PAX record otherwise.
pub(crate) struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self { b: tar::Builder::new(Vec::new()) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        path: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        let mut pax: Vec<(&str, &[u8])> = pax.to_vec();
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        {
            let old = h.as_old_mut();
            if path.len() < old.name.len() {
                old.name[..path.len()].copy_from_slice(path);
            } else {
                pax.push(("path", path));
            }
            if let Some(l) = link {
                if l.len() < old.linkname.len() {
                    old.linkname[..l.len()].copy_from_slice(l);
                } else {
                    pax.push(("linkpath", l));
                }
            }
        }
        if !pax.is_empty() {
            self.b.append_pax_extensions(pax).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Directory, None, b"", mode, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Regular, None, data, 0o644, (0, 0), &[])
    }

    pub fn file_mode(&mut self, path: &str, data: &[u8], mode: u32, owner: (u64, u64)) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Regular, None, data, mode, owner, &[])
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Symlink, Some(target.as_bytes()), b"", 0o777, (0, 0), &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Link, Some(target.as_bytes()), b"", 0o644, (0, 0), &[])
    }

    pub fn build(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(crate) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}

/// A layer blob and what describes it.
#[derive(Clone)]
pub(crate) struct Layer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    pub diff_id: Digest,
}

/// A layer from a tar: `how` is "tar", "gzip" or "zstd".
pub(crate) fn layer(tar: &[u8], how: &str) -> Layer {
    let (blob, media_type) = match how {
        "gzip" => (gzip(tar), MT_LAYER_GZIP),
        "zstd" => (zstd(tar), MT_LAYER_ZSTD),
        _ => (tar.to_vec(), MT_LAYER_TAR),
    };
    Layer {
        digest: Digest::of_bytes(&blob),
        blob,
        media_type: media_type.into(),
        diff_id: Digest::of_bytes(tar),
    }
}

/// An image: config and manifest JSON over some layers.
#[derive(Clone)]
pub(crate) struct Image {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub layers: Vec<Layer>,
    pub ref_name: Option<String>,
}

impl Image {
    pub fn new(layers: Vec<Layer>, created: &str) -> Self {
        Self::with_arch(layers, created, super::manifest::host_arch())
    }

    pub fn with_arch(layers: Vec<Layer>, created: &str, arch: &str) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.diff_id)).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","created":"{created}","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"Labels":{{"b":"2","a":"1"}}}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        )
        .into_bytes();
        let mut img = Self { config, manifest: Vec::new(), layers, ref_name: Some("latest".into()) };
        img.manifest = img.manifest_with(|_| {});
        img
    }

    /// The manifest JSON, with a hook to change descriptors (to make it lie).
    pub fn manifest_with(&self, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.blob.len()})
            })
            .collect();
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": Digest::of_bytes(&self.config).to_string(), "size": self.config.len()},
            "layers": layers,
        });
        edit(&mut m);
        serde_json::to_vec(&m).unwrap()
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::of_bytes(&self.manifest)
    }

    pub fn named(mut self, ref_name: Option<&str>) -> Self {
        self.ref_name = ref_name.map(str::to_string);
        self
    }
}

fn put_blob(dir: &Path, bytes: &[u8]) {
    let p = dir.join("blobs/sha256").join(Digest::of_bytes(bytes).hex());
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

/// Write an OCI image layout holding `images` into `dir`.
pub(crate) fn write_layout(dir: &Path, images: &[Image]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    for img in images {
        put_blob(dir, &img.manifest);
        put_blob(dir, &img.config);
        for l in &img.layers {
            put_blob(dir, &l.blob);
        }
        let mut d = serde_json::json!({"mediaType": MT_OCI_MANIFEST, "digest": img.manifest_digest().to_string(), "size": img.manifest.len()});
        if let Some(n) = &img.ref_name {
            d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
        }
        descs.push(d);
    }
    write_index(dir, descs);
}

/// Write index.json with these descriptors.
pub(crate) fn write_index(dir: &Path, descs: Vec<serde_json::Value>) {
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": super::manifest::MT_OCI_INDEX, "manifests": descs});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Tar up a directory (as an oci-archive), entries relative to it.
pub(crate) fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// A legacy `docker save` archive: `<id>/layer.tar`, `<config hex>.json`,
/// manifest.json. Layers must be uncompressed.
pub(crate) fn docker_archive(images: &[(&Image, &[&str])]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    let mut manifest = Vec::new();
    for (img, tags) in images {
        let config_name = format!("{}.json", Digest::of_bytes(&img.config).hex());
        t.file(&config_name, &img.config);
        let mut layer_paths = Vec::new();
        for l in &img.layers {
            let p = format!("{}/layer.tar", l.diff_id.hex());
            t.dir(&format!("{}/", l.diff_id.hex()), 0o755);
            t.file(&p, &l.blob);
            layer_paths.push(p);
        }
        manifest.push(serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": layer_paths}));
    }
    t.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    t.build()
}

pub(crate) fn new_store() -> (tempfile::TempDir, ImageStore) {
    let d = tempfile::tempdir().unwrap();
    let s = ImageStore::open(&d.path().join("store")).unwrap();
    (d, s)
}

pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Nothing was stored: no blob, no layer, no refs, no tmp leftovers.
pub(crate) fn assert_untouched(s: &ImageStore) {
    let root = s.dir();
    assert!(
        entries(&root.join("blobs/sha256")).is_empty(),
        "blobs: {:?}",
        entries(&root.join("blobs/sha256"))
    );
    assert!(entries(&root.join("layers")).is_empty(), "layers: {:?}", entries(&root.join("layers")));
    assert!(entries(&root.join("tmp")).is_empty(), "tmp: {:?}", entries(&root.join("tmp")));
    assert!(!root.join("refs.json").exists());
}

pub(crate) fn two_layer_image() -> Image {
    let l1 =
        TarBuilder::new().dir("etc", 0o755).file("etc/hostname", b"base\n").file("etc/old", b"o").build();
    let l2 = TarBuilder::new().file("usr/bin/exp", b"#!/bin/sh\n").build();
    Image::new(vec![layer(&l1, "gzip"), layer(&l2, "zstd")], "2024-01-02T03:04:05Z")
}
