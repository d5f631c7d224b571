//! Tests of import: the three formats, verification (digests, sizes, diff_ids,
//! media types, platforms), and refusals that leave nothing behind.

use super::*;
use crate::image::testutil::{
    assert_untouched, docker_archive, entries, gzip, layer, new_store, tar_dir, two_layer_image, write_index,
    write_layout, Image, TarBuilder,
};

/// The same content as `two_layer_image`, uncompressed (docker-archive layers).
fn two_layer_image_plain() -> Image {
    let img = two_layer_image();
    let plain = img.layers.iter().map(|l| {
        let (_, mut r) = crate::image::stream::decompressed(&l.blob[..]).unwrap();
        let mut tar = Vec::new();
        r.read_to_end(&mut tar).unwrap();
        layer(&tar, "tar")
    });
    Image::new(plain.collect(), "2024-01-02T03:04:05Z")
}

#[test]
fn oci_layout_dir_imports_and_resolves() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let src = d.path().join("My_Image.oci");
    write_layout(&src, std::slice::from_ref(&img));
    let out = s.import(&src, None, Progress::Hidden).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name.as_deref(), Some("my_image:latest"));
    assert_eq!(out[0].manifest_digest, img.manifest_digest());
    assert_eq!(out[0].layers, 2);
    assert_eq!(out[0].created.as_deref(), Some("2024-01-02T03:04:05Z"));
    let r = s.resolve("my_image").unwrap();
    assert_eq!(r.manifest_digest, img.manifest_digest());
    assert_eq!(r.platform, manifest::host_platform());
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.layers[1].media_type, manifest::MT_LAYER_ZSTD);
    assert_eq!(fs::read(s.layer_dir(&r.layers[0].diff_id).join("etc/hostname")).unwrap(), b"base\n");
    assert!(s.layer_dir(&r.layers[1].diff_id).join("usr/bin/exp").is_file());
    assert_eq!(entries(&s.dir().join("blobs/sha256")).len(), 4);
    assert!(entries(&s.dir().join("tmp")).is_empty());
    let refs: serde_json::Value =
        serde_json::from_slice(&fs::read(s.dir().join("refs.json")).unwrap()).unwrap();
    assert_eq!(refs["schema"], 1);
    let e = &refs["images"][img.manifest_digest().to_string()];
    assert_eq!(e["names"], serde_json::json!(["my_image:latest"]));
    assert_eq!(e["source"], src.canonicalize().unwrap().display().to_string());
}

#[test]
fn oci_archives_plain_and_gzip_import_by_rename() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let layout = d.path().join("layout");
    write_layout(&layout, &[img.clone().named(Some("example.com/team/tool:v2"))]);
    let tar = tar_dir(&layout);
    fs::write(d.path().join("a.tar"), &tar).unwrap();
    fs::write(d.path().join("b.tar.gz"), gzip(&tar)).unwrap();
    let out = s.import(&d.path().join("a.tar"), None, Progress::Hidden).unwrap();
    assert_eq!(out[0].name.as_deref(), Some("example.com/team/tool:v2"));
    assert_eq!(out[0].manifest_digest, img.manifest_digest());
    let (_d2, s2) = new_store();
    let out = s2.import(&d.path().join("b.tar.gz"), Some("other:1"), Progress::Hidden).unwrap();
    assert_eq!(out[0].name.as_deref(), Some("other:1"));
    assert_eq!(out[0].manifest_digest, img.manifest_digest());
    assert!(s2.resolve("other:1").is_ok());
}

#[test]
fn docker_archive_imports_with_a_synthesised_manifest() {
    let (d, s) = new_store();
    let img = two_layer_image_plain();
    let src = d.path().join("saved.tar");
    fs::write(&src, docker_archive(&[(&img, &["fixtures/busybox:latest", "fixtures/busybox:1"])])).unwrap();
    let out = s.import(&src, None, Progress::Hidden).unwrap();
    let names: Vec<_> = out.iter().map(|o| o.name.clone().unwrap()).collect();
    assert_eq!(names, ["fixtures/busybox:latest", "fixtures/busybox:1"], "in RepoTags order");
    let r = s.resolve("fixtures/busybox").unwrap();
    assert_eq!(r.config_digest, Digest::of_bytes(&img.config));
    assert_eq!(r.layers[0].diff_id, img.layers[0].diff_id);
    assert_eq!(r.layers[0].media_type, manifest::MT_LAYER_TAR);
    assert_eq!(r.layers[0].digest, r.layers[0].diff_id);
    // The manifest is a stored blob whose digest is the image's digest.
    let m = fs::read(s.dir().join("blobs/sha256").join(r.manifest_digest.hex())).unwrap();
    assert_eq!(Digest::of_bytes(&m), r.manifest_digest);
    assert!(
        m.starts_with(b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"")
    );
    // Same archive, same digest.
    let (_d2, s2) = new_store();
    assert_eq!(s2.import(&src, None, Progress::Hidden).unwrap()[0].manifest_digest, r.manifest_digest);
}

#[test]
fn docker_archive_checks_layers_against_diff_ids_and_config_name() {
    let (d, s) = new_store();
    let mut img = two_layer_image_plain();
    let good = img.layers[0].clone();
    img.layers[0] = layer(&TarBuilder::new().file("evil", b"x").build(), "tar");
    img.layers[0].diff_id = good.diff_id.clone(); // config claims the good diff_id
    img = Image::new(img.layers.clone(), "x");
    let src = d.path().join("bad.tar");
    fs::write(&src, docker_archive(&[(&img, &["x:y"])])).unwrap();
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("digest mismatch") && e.contains(&format!("expected {}", good.diff_id)), "{e}");
    assert_untouched(&s);

    // A config whose file name is not its digest.
    let img = two_layer_image_plain();
    let mut t = TarBuilder::new();
    let fake = Digest::of_bytes(b"not the config");
    t.file(&format!("{}.json", fake.hex()), &img.config);
    let mut paths = Vec::new();
    for l in &img.layers {
        let p = format!("{}/layer.tar", l.diff_id.hex());
        t.file(&p, &l.blob);
        paths.push(p);
    }
    let m =
        serde_json::json!([{"Config": format!("{}.json", fake.hex()), "RepoTags": null, "Layers": paths}]);
    t.file("manifest.json", &serde_json::to_vec(&m).unwrap());
    fs::write(&src, t.build()).unwrap();
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains(&format!("digest mismatch: expected {fake}")), "{e}");
    assert_untouched(&s);
}

#[test]
fn a_corrupt_blob_is_refused_and_nothing_is_stored() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let src = d.path().join("layout");
    write_layout(&src, std::slice::from_ref(&img));
    let l2 = &img.layers[1];
    let path = src.join("blobs/sha256").join(l2.digest.hex());
    let mut bad = l2.blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    let src = src.canonicalize().unwrap();
    assert_eq!(
        e,
        format!(
            "blob {} in {}: digest mismatch: expected {}, found {}",
            l2.digest,
            src.display(),
            l2.digest,
            Digest::of_bytes(&bad)
        )
    );
    assert_untouched(&s);
    // A retry after fixing the source works.
    fs::write(&path, &l2.blob).unwrap();
    s.import(&src, None, Progress::Hidden).unwrap();
}

#[test]
fn a_corrupt_blob_in_an_archive_stores_nothing() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let layout = d.path().join("layout");
    write_layout(&layout, std::slice::from_ref(&img));
    let cfg = layout.join("blobs/sha256").join(Digest::of_bytes(&img.config).hex());
    let mut bad = img.config.clone();
    bad[0] = b' ';
    fs::write(&cfg, bad).unwrap();
    fs::write(d.path().join("a.tar"), tar_dir(&layout)).unwrap();
    let e = s.import(&d.path().join("a.tar"), None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.starts_with(&format!("config {} in ", Digest::of_bytes(&img.config))), "{e}");
    assert!(e.contains(": digest mismatch: expected "), "{e}");
    assert_untouched(&s);
}

#[test]
fn lying_sizes_are_refused() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let src = d.path().join("layout");
    let mut liar = img.clone();
    liar.manifest =
        img.manifest_with(|m| m["layers"][0]["size"] = serde_json::json!(img.layers[0].blob.len() - 1));
    write_layout(&src, &[liar]);
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    let n = img.layers[0].blob.len();
    assert!(
        e.contains(&format!(
            "size mismatch: the descriptor says {} bytes, the blob has more than {}",
            n - 1,
            n - 1
        )),
        "{e}"
    );
    assert!(!s.dir().join("refs.json").exists());

    // The index lying about the manifest's size.
    let (_d2, s2) = new_store();
    let src2 = d.path().join("layout2");
    write_layout(&src2, std::slice::from_ref(&img));
    write_index(
        &src2,
        vec![
            serde_json::json!({"mediaType": manifest::MT_OCI_MANIFEST, "digest": img.manifest_digest().to_string(), "size": 10}),
        ],
    );
    let e = s2.import(&src2, None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("size mismatch: the descriptor says 10 bytes"), "{e}");
    assert_untouched(&s2);
}

#[test]
fn a_malicious_layer_is_refused_and_nothing_is_renamed_into_layers() {
    let (d, s) = new_store();
    let evil = TarBuilder::new().file("ok", b"fine").file("../etc/passwd", b"x").build();
    let img = Image::new(vec![layer(&evil, "gzip")], "x");
    let src = d.path().join("layout");
    write_layout(&src, std::slice::from_ref(&img));
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("layer {} entry \"../etc/passwd\": path escapes the layer directory", img.layers[0].digest)
    );
    assert_untouched(&s);
}

#[test]
fn a_wrong_diff_id_is_refused() {
    let (d, s) = new_store();
    let mut img = two_layer_image();
    img.layers[1].diff_id = Digest::of_bytes(b"lie");
    let img = Image::new(img.layers, "x");
    let src = d.path().join("layout");
    write_layout(&src, &[img]);
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("uncompressed content (diff_id): digest mismatch: expected"), "{e}");
    assert_untouched(&s);
}

#[test]
fn unsupported_media_types_and_non_images_are_refused() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let src = d.path().join("layout");
    let mut foreign = img.clone();
    foreign.manifest = img.manifest_with(|m| {
        m["layers"][0]["mediaType"] =
            serde_json::json!("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    });
    write_layout(&src, &[foreign]);
    let e = s.import(&src, None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("foreign (Windows base) layer"), "{e}");

    fs::write(d.path().join("junk.bin"), vec![7u8; 2000]).unwrap();
    let e = s.import(&d.path().join("junk.bin"), None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("not an image: not a tar archive"), "{e}");
    fs::create_dir(d.path().join("empty")).unwrap();
    let e = s.import(&d.path().join("empty"), None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("not an image: a directory must be an OCI image layout"), "{e}");
    let e = s.import(&d.path().join("missing"), None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.starts_with("cannot open ") && e.contains("missing"), "{e}");
    let evil = TarBuilder::new().file("../index.json", b"{}").build();
    fs::write(d.path().join("evil.tar"), evil).unwrap();
    let e = s.import(&d.path().join("evil.tar"), None, Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("entry \"../index.json\": path escapes"), "{e}");
    assert_untouched(&s);
}

#[test]
fn the_host_platform_is_picked_from_a_nested_index() {
    let (d, s) = new_store();
    let host = two_layer_image();
    let other =
        Image::with_arch(vec![layer(&TarBuilder::new().file("arm", b"").build(), "tar")], "x", "s390x");
    let src = d.path().join("multi");
    write_layout(&src, &[host.clone(), other.clone()]);
    // Replace index.json: one nested index listing both platforms.
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::MT_OCI_INDEX, "manifests": [
        {"mediaType": manifest::MT_OCI_MANIFEST, "digest": other.manifest_digest().to_string(), "size": other.manifest.len(),
         "platform": {"architecture": "s390x", "os": "linux"}},
        {"mediaType": manifest::MT_OCI_MANIFEST, "digest": host.manifest_digest().to_string(), "size": host.manifest.len(),
         "platform": {"architecture": manifest::host_arch(), "os": "linux"}},
    ]});
    let nb = serde_json::to_vec(&nested).unwrap();
    fs::write(src.join("blobs/sha256").join(Digest::of_bytes(&nb).hex()), &nb).unwrap();
    write_index(
        &src,
        vec![
            serde_json::json!({"mediaType": manifest::MT_OCI_INDEX, "digest": Digest::of_bytes(&nb).to_string(),
        "size": nb.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"}}),
        ],
    );
    let out = s.import(&src, None, Progress::Hidden).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].manifest_digest, host.manifest_digest());
    assert_eq!(out[0].name.as_deref(), Some("multi:v1"));

    // Only another platform: refused, naming what is there.
    let src2 = d.path().join("s390x-only");
    write_layout(&src2, std::slice::from_ref(&other));
    let e = s.import(&src2, None, Progress::Hidden).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "the image is for linux/s390x, but this host runs {}",
            manifest::host_platform()
        )),
        "{e}"
    );
    write_index(
        &src2,
        vec![
            serde_json::json!({"mediaType": manifest::MT_OCI_MANIFEST, "digest": other.manifest_digest().to_string(),
        "size": other.manifest.len(), "platform": {"architecture": "s390x", "os": "linux"}}),
        ],
    );
    let e = s.import(&src2, None, Progress::Hidden).unwrap_err().to_string();
    assert!(
        e.ends_with(&format!("no image for {}; the layout has linux/s390x", manifest::host_platform())),
        "{e}"
    );
}
