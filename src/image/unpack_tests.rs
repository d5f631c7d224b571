//! Tests of [`super`]: layer unpacking, including every refused entry.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::EntryType;

use super::*;
use crate::image::testutil::{gzip, require_root, zstd, TarBuilder};

fn unpack(tar: &[u8]) -> (tempfile::TempDir, PathBuf, Result<()>) {
    unpack_with(tar, &Digest::of_bytes(tar), Limits::default())
}

fn unpack_with(tar: &[u8], diff_id: &Digest, limits: Limits) -> (tempfile::TempDir, PathBuf, Result<()>) {
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("layer");
    let r = unpack_layer(tar, &Digest::of_bytes(b"blob"), diff_id, &dest, &Budget::new(limits, None));
    (d, dest, r)
}

fn err_of(tar: &[u8]) -> String {
    let (_d, _dest, r) = unpack(tar);
    r.expect_err("the layer should be refused").to_string()
}

#[test]
fn normalize_rules() {
    let n = |s: &str| normalize(s.as_bytes()).map(|v| v.iter().collect::<PathBuf>());
    assert_eq!(n("./a/b/").unwrap(), PathBuf::from("a/b"));
    assert_eq!(n("././a//./b").unwrap(), PathBuf::from("a/b"));
    assert_eq!(n("/").unwrap(), PathBuf::new());
    assert_eq!(n(".").unwrap(), PathBuf::new());
    assert_eq!(n("./").unwrap(), PathBuf::new());
    assert_eq!(n("/etc").unwrap_err(), "absolute path; layer entries must be relative");
    assert_eq!(n("a/../b").unwrap_err(), "path escapes the layer directory");
    assert_eq!(n("..").unwrap_err(), "path escapes the layer directory");
    assert!(normalize(b"a\0b").is_err());
}

#[test]
fn files_dirs_links_modes_and_times() {
    let tar = TarBuilder::new()
        .dir("./", 0o755)
        .dir("etc", 0o750)
        .file_mode("etc/passwd", b"root:x:0:0\n", 0o644, (0, 0))
        .file_mode("bin/tool", b"#!/bin/sh\n", 0o4755, (0, 0)) // parent implicit
        .symlink("etc/link", "/absolute/anywhere")
        .symlink("up", "../../..")
        .hardlink("etc/passwd2", "./etc/passwd")
        .dir("ro", 0o555)
        .file("ro/inside", b"x")
        .build();
    let (_d, dest, r) = unpack(&tar);
    r.unwrap();
    assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
    let m = fs::symlink_metadata(dest.join("etc")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(m.mtime(), 1_600_000_000, "dir mtime is set after its children");
    let m = fs::symlink_metadata(dest.join("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(m.mtime(), 1_600_000_000);
    let bin = fs::symlink_metadata(dest.join("bin")).unwrap();
    assert_eq!((bin.permissions().mode() & 0o7777, bin.mtime()), (0o755, 0), "implicit dir");
    assert_eq!(fs::read_link(dest.join("etc/link")).unwrap(), PathBuf::from("/absolute/anywhere"));
    assert_eq!(fs::read_link(dest.join("up")).unwrap(), PathBuf::from("../../.."));
    let a = fs::metadata(dest.join("etc/passwd")).unwrap();
    let b = fs::metadata(dest.join("etc/passwd2")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(fs::symlink_metadata(dest.join("ro")).unwrap().permissions().mode() & 0o777, 0o555);
    assert_eq!(fs::read(dest.join("ro/inside")).unwrap(), b"x");
    crate::image::store::remove_all(&dest).unwrap();
}

#[test]
fn compressed_layers_are_sniffed_and_hashed_uncompressed() {
    let tar = TarBuilder::new().file("a", b"hello").build();
    for blob in [gzip(&tar), zstd(&tar), tar.clone()] {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("l");
        unpack_layer(
            &blob[..],
            &Digest::of_bytes(&blob),
            &Digest::of_bytes(&tar),
            &dest,
            &Budget::new(Limits::default(), None),
        )
        .unwrap();
        assert_eq!(fs::read(dest.join("a")).unwrap(), b"hello");
    }
}

#[test]
fn diff_id_mismatch_is_refused() {
    let tar = TarBuilder::new().file("a", b"hello").build();
    let wrong = Digest::of_bytes(b"other");
    let (_d, _dest, r) = unpack_with(&tar, &wrong, Limits::default());
    let e = r.unwrap_err().to_string();
    assert!(e.contains("uncompressed content (diff_id): digest mismatch"), "{e}");
    assert!(e.contains(&format!("expected {wrong}, found {}", Digest::of_bytes(&tar))), "{e}");
}

#[test]
fn duplicates_replace_files_and_update_dirs() {
    let tar = TarBuilder::new()
        .file("f", b"one")
        .file("f", b"two")
        .dir("d", 0o700)
        .file("d/keep", b"k")
        .dir("d", 0o751)
        .symlink("s", "x")
        .file("s", b"now a file")
        .build();
    let (_d, dest, r) = unpack(&tar);
    r.unwrap();
    assert_eq!(fs::read(dest.join("f")).unwrap(), b"two");
    assert_eq!(fs::read(dest.join("d/keep")).unwrap(), b"k");
    assert_eq!(fs::metadata(dest.join("d")).unwrap().permissions().mode() & 0o777, 0o751);
    assert!(fs::symlink_metadata(dest.join("s")).unwrap().is_file());
}

#[test]
fn pax_xattrs_user_applied_trusted_and_overlay_never() {
    let tar = TarBuilder::new()
        .raw(
            b"f",
            EntryType::Regular,
            None,
            b"x",
            0o644,
            (0, 0),
            &[
                ("SCHILY.xattr.user.note", b"hi"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.user.overlay.opaque", b"y"),
                ("mtime", b"1234.5"),
            ],
        )
        .build();
    let (_d, dest, r) = unpack(&tar);
    r.unwrap();
    let f = dest.join("f");
    assert_eq!(fs::metadata(&f).unwrap().mtime(), 1234);
    assert_eq!(fs::metadata(&f).unwrap().mtime_nsec(), 500_000_000);
    match crate::sys::lgetxattr(&f, "user.note") {
        Ok(v) => assert_eq!(v.as_deref(), Some(&b"hi"[..])),
        Err(e) => println!("SKIP: user xattrs unsupported here: {e}"),
    }
    assert_eq!(crate::sys::lgetxattr(&f, "trusted.overlay.opaque").unwrap_or(None), None);
    assert_eq!(crate::sys::lgetxattr(&f, "user.overlay.opaque").unwrap_or(None), None);
}

#[test]
fn pax_times_parse() {
    let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec(), t.tv_nsec()));
    assert_eq!(t("10"), Some((10, 0)));
    assert_eq!(t("10.25"), Some((10, 250_000_000)));
    assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
    assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
    assert_eq!(t("x"), None);
}

/// Every malicious entry, each in a layer of its own, is refused with a message
/// naming the entry.
#[test]
fn malicious_entries_are_refused_naming_the_entry() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "../etc/passwd",
            TarBuilder::new().file("../etc/passwd", b"x").build(),
            "path escapes the layer directory",
        ),
        ("a/../../x", TarBuilder::new().file("a/../../x", b"x").build(), "path escapes the layer directory"),
        ("/etc/passwd", TarBuilder::new().file("/etc/passwd", b"x").build(), "absolute path"),
        (
            "lnk/x",
            TarBuilder::new().symlink("lnk", "/tmp").file("lnk/x", b"x").build(),
            "path goes through \"lnk\", which is a symlink",
        ),
        (
            "up/x",
            TarBuilder::new().symlink("up", "..").dir("up/x", 0o755).build(),
            "path goes through \"up\", which is a symlink",
        ),
        (
            "f/x",
            TarBuilder::new().file("f", b"").file("f/x", b"x").build(),
            "path goes through \"f\", which is not a directory",
        ),
        ("h", TarBuilder::new().hardlink("h", "../outside").build(), "path escapes the layer directory"),
        ("h", TarBuilder::new().hardlink("h", "/etc/shadow").build(), "absolute path"),
        (
            "h",
            TarBuilder::new()
                .dir("real", 0o755)
                .file("real/f", b"x")
                .symlink("s", "real")
                .hardlink("h", "s/f")
                .build(),
            "hardlink target \"s/f\" is not an earlier file of this layer",
        ),
        ("h", TarBuilder::new().hardlink("h", "etc/passwd").build(), "not an earlier file of this layer"),
        (".wh.", TarBuilder::new().file(".wh.", b"").build(), "whiteout of the layer root"),
        ("./.wh..", TarBuilder::new().file("./.wh..", b"").build(), "whiteout of the layer root"),
        ("a/.wh...", TarBuilder::new().file("a/.wh...", b"").build(), "path escapes the layer directory"),
        (
            "a\u{0}b",
            TarBuilder::new()
                .raw(b"placeholder", EntryType::Regular, None, b"", 0o644, (0, 0), &[("path", b"a\0b")])
                .build(),
            "NUL byte",
        ),
        (
            "x",
            TarBuilder::new().file_mode("x", b"", 0o644, (1 << 33, 0)).build(),
            "uid 8589934592 is out of range",
        ),
    ];
    for (entry, tar, why) in cases {
        let e = err_of(&tar);
        let layer = Digest::of_bytes(b"blob");
        assert!(e.starts_with(&format!("layer {layer} entry {entry:?}: ")), "{entry}: {e}");
        assert!(e.contains(why), "{entry}: expected {why:?} in {e}");
    }
}

#[test]
fn nothing_outside_the_layer_is_touched_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let tar = TarBuilder::new().symlink("esc", &target).file("esc/pwned", b"x").build();
    let (_d, _dest, r) = unpack(&tar);
    assert!(r.is_err());
    assert!(!outside.path().join("pwned").exists());
}

#[test]
fn limits_name_the_limit() {
    let tar = TarBuilder::new().file("a", b"12345").file("b", b"").file("c", b"").build();
    let d = Digest::of_bytes(&tar);
    let (_t, _dest, r) =
        unpack_with(&tar, &d, Limits { max_bytes: 100, max_entries: 2, ..Limits::default() });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("more than 2 entries, the limit for one layer"), "{e}");
    let (_t, _dest, r) =
        unpack_with(&tar, &d, Limits { max_bytes: 4, max_entries: 100, ..Limits::default() });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("more than 4 bytes of content, the limit for one layer"), "{e}");
    assert_eq!(MAX_LAYER_BYTES, 64 << 30);
    assert_eq!(MAX_LAYER_ENTRIES, 2_000_000);
}

#[test]
fn the_image_limit_counts_every_layer_of_the_image() {
    let a = TarBuilder::new().file("a", b"123456").build();
    let b = TarBuilder::new().file("b", b"789012").build();
    let limits = Limits { max_image_bytes: 10, ..Limits::default() };
    let budget = Budget::new(limits, None);
    let d = tempfile::tempdir().unwrap();
    let blob = Digest::of_bytes(b"blob");
    unpack_layer(&a[..], &blob, &Digest::of_bytes(&a), &d.path().join("a"), &budget).unwrap();
    let e = unpack_layer(&b[..], &blob, &Digest::of_bytes(&b), &d.path().join("b"), &budget).unwrap_err();
    assert!(e.to_string().contains("more than 10 bytes of content together, the limit for one image"), "{e}");
    // Each layer alone fits: the bound is the image's, not the layer's.
    let fresh = Budget::new(limits, None);
    unpack_layer(&b[..], &blob, &Digest::of_bytes(&b), &d.path().join("b2"), &fresh).unwrap();
}

#[test]
fn runs_of_zeros_are_stored_as_holes() {
    let mut content = vec![0u8; 8 << 20];
    content[..5].copy_from_slice(b"start");
    let n = content.len();
    content[n - 3..].copy_from_slice(b"end");
    let tar = TarBuilder::new().file("f", &content).build();
    let (_t, dest, r) = unpack(&tar);
    r.unwrap();
    let meta = fs::metadata(dest.join("f")).unwrap();
    assert_eq!(fs::read(dest.join("f")).unwrap(), content);
    assert!(meta.blocks() * 512 < 1 << 20, "8 MiB of zeros take {} blocks", meta.blocks());
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlay_format() {
    if !require_root("whiteout and opaque unpacking") {
        return;
    }
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/.wh.gone", b"")
        .file("opt/data/.wh..wh..opq", b"") // dir not made yet: created
        .file("opt/data/new", b"n")
        .file("mine", b"kept")
        .file(".wh.mine", b"") // this layer's own file: kept
        .file(".wh..wh.plnk", b"") // aufs metadata: ignored
        .build();
    let (_d, dest, r) = unpack(&tar);
    r.unwrap();
    let m = fs::symlink_metadata(dest.join("etc/gone")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert!(!dest.join("etc/.wh.gone").exists());
    assert_eq!(
        crate::sys::lgetxattr(&dest.join("opt/data"), "trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join("opt/data/.wh..wh..opq").exists());
    assert_eq!(fs::read(dest.join("opt/data/new")).unwrap(), b"n");
    assert_eq!(fs::read(dest.join("mine")).unwrap(), b"kept");
    assert!(!dest.join(".wh..wh.plnk").exists() && !dest.join("plnk").exists());
}

#[test]
fn ownership_devices_and_setuid_after_chown_as_root() {
    if !require_root("ownership and device nodes") {
        return;
    }
    let tar = TarBuilder::new()
        .file_mode("suid", b"x", 0o4755, (1000, 1000))
        .raw(b"null", EntryType::Char, None, b"", 0o666, (0, 0), &[])
        .raw(b"fifo", EntryType::Fifo, None, b"", 0o600, (5, 6), &[])
        .raw(b"ln", EntryType::Symlink, Some(b"suid"), b"", 0o777, (7, 8), &[])
        .build();
    let (_d, dest, r) = unpack(&tar);
    r.unwrap();
    let m = fs::metadata(dest.join("suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o7777), (1000, 1000, 0o4755));
    let m = fs::symlink_metadata(dest.join("fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o7777), (5, 6, 0o600));
    let m = fs::symlink_metadata(dest.join("null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    let m = fs::symlink_metadata(dest.join("ln")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));
}
