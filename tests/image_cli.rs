#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun image ...` end to end, on the busybox fixture image in its three
//! formats (built by rootfs-fixtures/build.sh).
//!
//! Needs root: the fixture's second layer has a whiteout and an opaque
//! directory, which are stored as a 0/0 device and a `trusted.*` xattr. As a
//! normal user the test prints `SKIP: ...`, unless `CI=true`, where it fails.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn exprun(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exprun"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run exprun")
}

/// Run and require success; returns stdout.
fn ok(root: &Path, args: &[&str]) -> String {
    let out = exprun(root, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exprun {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(root, args)).unwrap_or_else(|e| panic!("exprun {args:?}: not JSON: {e}"))
}

fn diff_ids(inspect: &serde_json::Value) -> Vec<String> {
    inspect["layers"].as_array().unwrap().iter().map(|l| l["diff_id"].as_str().unwrap().to_string()).collect()
}

fn dir_entries(p: &Path) -> Vec<String> {
    fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn import_ls_inspect_rm_gc_on_the_fixture_in_three_formats() {
    if !common::privileged("import_ls_inspect_rm_gc_on_the_fixture_in_three_formats (whiteout devices and trusted.overlay.opaque)") {
        return;
    }
    let out = common::fixture_dir();
    let pin = |k: &str| common::pinned(k);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let store = root.join("store");

    // OCI layout directory: name from the directory, digest pinned.
    let line = ok(root, &["image", "import", out.join("busybox-oci").to_str().unwrap()]);
    assert_eq!(line, format!("imported busybox-oci:latest {}\n", pin("MANIFEST_DIGEST")));
    // oci-archive: the same image; --quiet prints only the digest.
    let line = ok(root, &["image", "import", "--quiet", out.join("busybox-oci.tar").to_str().unwrap()]);
    assert_eq!(line, format!("{}\n", pin("MANIFEST_DIGEST")));
    // docker-archive: a synthesised manifest, the same config and layers.
    let line = ok(root, &["image", "import", out.join("busybox-docker.tar").to_str().unwrap()]);
    let docker_digest =
        line.strip_prefix("imported fixtures/busybox:latest ").expect(&line).trim().to_string();
    assert_ne!(docker_digest, pin("MANIFEST_DIGEST"));

    let oci = json(root, &["image", "inspect", "busybox-oci"]);
    let docker = json(root, &["image", "inspect", "fixtures/busybox:latest"]);
    assert_eq!(oci["manifest_digest"], pin("MANIFEST_DIGEST").as_str());
    assert_eq!(docker["manifest_digest"], docker_digest.as_str());
    for img in [&oci, &docker] {
        assert_eq!(img["config_digest"], pin("CONFIG_DIGEST").as_str());
        assert_eq!(diff_ids(img), [pin("LAYER1_DIFF_ID").clone(), pin("LAYER2_DIFF_ID").clone()]);
        assert_eq!(img["architecture"], "amd64");
        assert_eq!(img["os"], "linux");
        assert_eq!(img["created"], "1970-01-01T00:00:00Z");
        assert_eq!(img["config"]["Cmd"][0], "/bin/sh");
    }
    let layers = oci["layers"].as_array().unwrap();
    assert_eq!(layers[0]["digest"], pin("LAYER1_DIGEST").as_str());
    assert_eq!(layers[1]["digest"], pin("LAYER2_DIGEST").as_str());
    assert_eq!(layers[1]["media_type"], "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_eq!(docker["layers"][0]["media_type"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(oci["names"], serde_json::json!(["busybox-oci:latest"]));

    // ls: the table and the JSON.
    let table = ok(root, &["image", "ls"]);
    let oci_short = &pin("MANIFEST_DIGEST")[7..19];
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("TAG") && lines[0].contains("DIGEST"),
        "{table}"
    );
    assert!(lines[0].contains("SIZE") && lines[0].ends_with("CREATED"), "{table}");
    let row = lines.iter().find(|l| l.starts_with("busybox-oci ")).expect(&table);
    assert!(row.contains(" latest ") && row.contains(oci_short) && row.contains("iB "), "{table}");
    assert!(row.ends_with("1970-01-01T00:00:00Z"), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("fixtures/busybox ")), "{table}");
    let full = ok(root, &["image", "ls", "--digests"]);
    assert!(full.contains(&pin("MANIFEST_DIGEST")), "{full}");
    let rows = json(root, &["image", "ls", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 2);

    // The unpacked layers, in overlay format.
    let l1 = store.join("layers").join(&pin("LAYER1_DIFF_ID")[7..]);
    let l2 = store.join("layers").join(&pin("LAYER2_DIFF_ID")[7..]);
    assert_eq!(dir_entries(&store.join("layers")).len(), 2, "layers shared by all three imports");
    assert!(fs::symlink_metadata(l1.join("etc/removed-by-layer2")).unwrap().is_file());
    assert_eq!(fs::metadata(l1.join("home/researcher")).unwrap().uid(), 1000);
    assert_eq!(fs::metadata(l1.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    assert_eq!(fs::read_link(l1.join("bin/sh")).unwrap(), PathBuf::from("busybox"));
    let wh = fs::symlink_metadata(l2.join("etc/removed-by-layer2")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(wh.rdev(), 0, "whiteout is 0/0");
    assert!(!l2.join("etc/.wh.removed-by-layer2").exists());
    assert_eq!(
        exprun::sys::lgetxattr(&l2.join("opt/data"), "trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l2.join("opt/data/.wh..wh..opq").exists());
    assert!(l2.join("opt/data/new").is_file());

    // Failures: exit 125 and a message naming the reference.
    let bad = exprun(root, &["image", "inspect", "nope:1"]);
    assert_eq!(bad.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "exprun: error: no image matches \"nope:1\"; see exprun image ls\n"
    );

    // rm + gc empty the store.
    let rm = ok(root, &["image", "rm", "busybox-oci:latest", "fixtures/busybox"]);
    assert_eq!(
        rm,
        format!(
            "untagged busybox-oci:latest\nremoved {}\nuntagged fixtures/busybox:latest\nremoved {docker_digest}\n",
            pin("MANIFEST_DIGEST")
        )
    );
    let gc = ok(root, &["image", "gc"]);
    assert!(gc.starts_with("removed 7 blobs, 2 layers, 0 stale temp dirs; freed "), "{gc}");
    assert!(dir_entries(&store.join("blobs/sha256")).is_empty());
    assert!(dir_entries(&store.join("layers")).is_empty());
    assert!(dir_entries(&store.join("tmp")).is_empty());
    assert_eq!(ok(root, &["image", "ls"]).lines().count(), 1, "only the header");
}
