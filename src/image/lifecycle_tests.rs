//! Store-level tests of an image's life: names, platforms, sharing, re-import,
//! resolve, interruption, concurrency, overlay format, inspect.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::digest::Digest;
use crate::image::testutil::{
    self, entries, layer, new_store, two_layer_image, write_layout, Image, TarBuilder,
};
use crate::image::{store, Progress};

#[test]
fn names_from_annotations_and_name_override() {
    let (d, s) = new_store();
    let a = two_layer_image();
    let b = Image::new(vec![layer(&TarBuilder::new().file("b", b"").build(), "tar")], "y");
    let src = d.path().join("two");
    write_layout(&src, &[a.clone().named(Some("1.0")), b.clone().named(None)]);
    let e = s.import(&src, Some("x:y"), Progress::Hidden).unwrap_err().to_string();
    assert!(e.contains("--name names one image, but the source holds 2"), "{e}");
    let out = s.import(&src, None, Progress::Hidden).unwrap();
    assert_eq!(out[0].name.as_deref(), Some("two:1.0"));
    assert_eq!(out[1].name, None);
    let rows = s.list().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].name, None, "untagged last");
    let e = s.import(&src, Some("Bad Name"), Progress::Hidden).unwrap_err().to_string();
    assert!(e.starts_with("invalid image reference \"Bad Name\""), "{e}");

    // Moving a name: the old image becomes untagged.
    let src1 = d.path().join("b-only");
    write_layout(&src1, std::slice::from_ref(&b));
    s.import(&src1, Some("two:1.0"), Progress::Hidden).unwrap();
    assert_eq!(s.resolve("two:1.0").unwrap().manifest_digest, b.manifest_digest());
    assert_eq!(s.list().unwrap().iter().filter(|r| r.name.is_none()).count(), 1);
}

#[test]
fn a_shared_layer_is_unpacked_once_and_reimport_is_a_no_op() {
    let (d, s) = new_store();
    let base = layer(&TarBuilder::new().file("base", b"shared").build(), "gzip");
    let a = Image::new(vec![base.clone(), layer(&TarBuilder::new().file("a", b"").build(), "tar")], "a");
    let b = Image::new(vec![base.clone(), layer(&TarBuilder::new().file("b", b"").build(), "tar")], "b");
    let (sa, sb) = (d.path().join("a"), d.path().join("b"));
    write_layout(&sa, &[a]);
    write_layout(&sb, &[b]);
    s.import(&sa, None, Progress::Hidden).unwrap();
    let shared = s.layer_dir(&base.diff_id).join("base");
    let ino = fs::metadata(&shared).unwrap().ino();
    s.import(&sb, None, Progress::Hidden).unwrap();
    assert_eq!(fs::metadata(&shared).unwrap().ino(), ino, "not unpacked again");
    assert_eq!(entries(&s.layers_root()).len(), 3);

    let refs_before = fs::read(s.dir().join("refs.json")).unwrap();
    let mtime = fs::metadata(s.dir().join("refs.json")).unwrap().mtime_nsec();
    let out = s.import(&sb, None, Progress::Hidden).unwrap();
    assert_eq!(out[0].name.as_deref(), Some("b:latest"));
    assert_eq!(fs::read(s.dir().join("refs.json")).unwrap(), refs_before);
    assert_eq!(fs::metadata(s.dir().join("refs.json")).unwrap().mtime_nsec(), mtime, "not rewritten");
    assert_eq!(fs::metadata(&shared).unwrap().ino(), ino);
}

#[test]
fn resolve_by_every_form_and_missing_layers_say_reimport() {
    let (d, s) = new_store();
    let img = two_layer_image();
    let src = d.path().join("img");
    write_layout(&src, std::slice::from_ref(&img));
    s.import(&src, None, Progress::Hidden).unwrap();
    let md = img.manifest_digest();
    for r in [
        "img",
        "img:latest",
        &format!("img@{md}"),
        &md.to_string(),
        md.hex(),
        &md.hex()[..4],
        &format!("sha256:{}", &md.hex()[..10]),
    ] {
        let got = s.resolve(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        assert_eq!(got.manifest_digest, md, "{r}");
        assert_eq!(got.reference, r);
    }
    assert_eq!(s.resolve("img").unwrap().name.as_deref(), Some("img:latest"));
    assert_eq!(s.resolve(&md.to_string()).unwrap().name, None);
    let e = s.resolve("foo:bar").unwrap_err().to_string();
    assert_eq!(e, "no image matches \"foo:bar\"; see exprun image ls");

    // A second stored image sharing a prefix makes the prefix ambiguous.
    let mut refs = s.store.load_refs().unwrap();
    let twin = Digest::from_hex(&format!("{}{}", &md.hex()[..6], "0".repeat(58))).unwrap();
    refs.images.insert(twin, store::RefEntry::default());
    s.store.save_refs(&refs).unwrap();
    let e = s.resolve(&md.hex()[..6]).unwrap_err().to_string();
    assert_eq!(e, format!("\"{}\" matches 2 images; give more digest characters", &md.hex()[..6]));
    assert_eq!(s.resolve(&md.hex()[..7]).unwrap().manifest_digest, md);

    let gone = s.resolve("img").unwrap().layers[1].diff_id.clone();
    store::remove_all(&s.layer_dir(&gone)).unwrap();
    let e = s.resolve("img").unwrap_err().to_string();
    assert!(e.contains(&format!("layer {gone} of image {md} is not unpacked; re-import the image")), "{e}");
    s.import(&src, None, Progress::Hidden).unwrap();
    assert!(s.resolve("img").is_ok());
}

#[test]
fn an_interrupted_import_is_cleaned_by_the_next() {
    let (d, s) = new_store();
    let stale = s.dir().join("tmp/0123abcd");
    fs::create_dir_all(stale.join("layer-1/usr/bin")).unwrap();
    fs::write(stale.join("lock"), b"").unwrap();
    fs::write(stale.join("blob-2"), b"half a blob").unwrap();
    let src = d.path().join("x");
    write_layout(&src, &[two_layer_image()]);
    s.import(&src, None, Progress::Hidden).unwrap();
    assert!(entries(&s.dir().join("tmp")).is_empty());
}

#[test]
fn concurrent_imports_keep_both_names() {
    let (d, s) = new_store();
    let mut srcs = Vec::new();
    for i in 0..4 {
        let img =
            Image::new(vec![layer(&TarBuilder::new().file(&format!("f{i}"), b"").build(), "gzip")], "t");
        let src = d.path().join(format!("img{i}"));
        write_layout(&src, &[img]);
        srcs.push(src);
    }
    std::thread::scope(|scope| {
        for src in &srcs {
            let s = s.clone();
            scope.spawn(move || s.import(src, None, Progress::Hidden).unwrap());
        }
    });
    let names: Vec<_> = s.list().unwrap().into_iter().filter_map(|r| r.name).collect();
    assert_eq!(names, ["img0:latest", "img1:latest", "img2:latest", "img3:latest"]);
}

#[test]
fn whiteouts_and_opaque_dirs_are_stored_in_overlay_format() {
    if !testutil::require_root("importing whiteouts") {
        return;
    }
    let (d, s) = new_store();
    let l1 = TarBuilder::new().file("etc/gone", b"g").file("opt/data/old", b"o").build();
    let l2 = TarBuilder::new()
        .file("etc/.wh.gone", b"")
        .file("opt/data/.wh..wh..opq", b"")
        .file("opt/data/new", b"n")
        .build();
    let img = Image::new(vec![layer(&l1, "gzip"), layer(&l2, "zstd")], "t");
    let src = d.path().join("wh");
    write_layout(&src, std::slice::from_ref(&img));
    s.import(&src, None, Progress::Hidden).unwrap();
    let top = s.layer_dir(&img.layers[1].diff_id);
    let m = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) && m.rdev() == 0);
    assert_eq!(
        crate::sys::lgetxattr(&top.join("opt/data"), "trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn inspect_shows_config_and_layers() {
    let (d, s) = new_store();
    let src = d.path().join("ins");
    write_layout(&src, &[two_layer_image()]);
    s.import(&src, None, Progress::Hidden).unwrap();
    let v = serde_json::to_value(s.inspect("ins").unwrap()).unwrap();
    assert_eq!(v["names"], serde_json::json!(["ins:latest"]));
    assert_eq!(v["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["config"]["Labels"], serde_json::json!({"a": "1", "b": "2"}));
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    assert!(v["layers"][0]["diff_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["os"], "linux");
    assert!(v["imported"].as_str().unwrap().ends_with('Z'));
}
