//! Hostile OCI image layouts, written byte by byte: layers as tar streams the
//! test composes, blobs named by their sha256, the JSON documents around them.

use std::path::Path;

use sha2::Digest as _;

/// `sha256:<hex>` of `b`.
pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// One tar entry of a layer.
pub enum Entry<'a> {
    /// A regular file: path, content, mode, uid.
    File(&'a str, &'a [u8], u32, u64),
    /// A directory: path, mode.
    Dir(&'a str, u32),
    /// A device node: path, kind (`Char`/`Block`), major, minor, mode.
    Node(&'a str, tar::EntryType, u32, u32, u32),
}

/// An uncompressed layer tar holding `entries`.
pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (path, data): (&str, &[u8]) = match e {
            Entry::File(p, data, mode, uid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_size(data.len() as u64);
                (p, data)
            }
            Entry::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                (p, &[])
            }
            Entry::Node(p, kind, major, minor, mode) => {
                h.set_entry_type(*kind);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_mode(*mode);
                h.set_size(0);
                (p, &[])
            }
        };
        if !matches!(e, Entry::File(..)) {
            h.set_uid(0);
        }
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Write an OCI image layout to `dir`: `layers` as (blob, uncompressed tar)
/// pairs, bottom first, and `config` as the image config's `config` object.
pub fn write(dir: &Path, layers: &[(Vec<u8>, Vec<u8>)], config: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = digest(b);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), b).unwrap();
        d
    };
    let diff_ids: Vec<String> = layers.iter().map(|(_, tar)| digest(tar)).collect();
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(blob, _)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": put(blob),
                "size": blob.len(),
            })
        })
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len()}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// The busybox fixture's own layers, as (blob, uncompressed tar) pairs, so a
/// hostile image can sit on a working userland.
pub fn busybox_layers() -> Vec<(Vec<u8>, Vec<u8>)> {
    let dir = crate::common::fixture_dir().join("busybox-oci");
    let blob =
        |d: &str| std::fs::read(dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let json = |d: &str| -> serde_json::Value { serde_json::from_slice(&blob(d)).unwrap() };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = json(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let b = blob(l["digest"].as_str().unwrap());
            let tar = decompress(&b);
            (b, tar)
        })
        .collect()
}

fn decompress(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    if b.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
    } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(b).unwrap().read_to_end(&mut out).unwrap();
    } else {
        out = b.to_vec();
    }
    out
}
