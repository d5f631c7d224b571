use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use super::*;

/// A header and the entry's data.
type Raw = (tar::Header, Vec<u8>);

/// One raw entry: the name and link bytes are written as given (the tar
/// crate's setters refuse `..` and absolute names).
fn raw(kind: EntryType, name: &[u8], mode: u32, data: &[u8], link: &[u8]) -> Raw {
    let mut h = tar::Header::new_old();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    (h, data.to_vec())
}

fn file(name: &str, mode: u32, data: &[u8]) -> Raw {
    raw(EntryType::Regular, name.as_bytes(), mode, data, b"")
}

fn dir(name: &str, mode: u32) -> Raw {
    raw(EntryType::Directory, name.as_bytes(), mode, b"", b"")
}

fn tar_gz(entries: &[Raw]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (h, data) in entries {
        b.append(h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

struct Dirs {
    _t: tempfile::TempDir,
    blob: PathBuf,
    dest: PathBuf,
    scratch: PathBuf,
}

fn dirs(entries: &[Raw]) -> Dirs {
    let t = tempfile::tempdir().unwrap();
    let blob = t.path().join("blob");
    fs::write(&blob, tar_gz(entries)).unwrap();
    let scratch = t.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let dest = t.path().join("outputs");
    Dirs { blob, dest, scratch, _t: t }
}

fn unpack_outputs(d: &Dirs) -> Result<(), Error> {
    unpack(&d.blob, "outputs.tar.gz", &d.dest, &d.scratch, &Tops::Indices(1), Limits::default())
}

#[test]
fn modes_are_sanitised_and_symlinks_stay_links() {
    let d = dirs(&[
        dir("0", 0o1777),
        file("0/suid", 0o6777, b"#!/bin/sh\n"),
        dir("0/sub", 0o555),
        file("0/sub/plain", 0o664, b"x"),
        raw(EntryType::Symlink, b"0/link", 0o777, b"", b"/etc/shadow"),
    ]);
    unpack_outputs(&d).unwrap();
    let mode = |p: &str| fs::symlink_metadata(d.dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("0"), 0o755);
    assert_eq!(mode("0/suid"), 0o755);
    assert_eq!(mode("0/sub"), 0o755);
    assert_eq!(mode("0/sub/plain"), 0o644);
    assert_eq!(fs::read_link(d.dest.join("0/link")).unwrap(), Path::new("/etc/shadow"));
    assert_eq!(fs::symlink_metadata(&d.dest).unwrap().mode() & 0o7777, 0o700);
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(fs::symlink_metadata(d.dest.join("0/suid")).unwrap().uid(), me);
    assert!(fs::read_dir(&d.scratch).unwrap().next().is_none());
}

#[test]
fn entries_that_are_not_files_directories_or_links_refuse_the_layer() {
    let marker = tempfile::tempdir().unwrap();
    let target = marker.path().join("host-file");
    fs::write(&target, "host").unwrap();
    let host = target.to_str().unwrap().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<Raw>)> = vec![
        ("hardlink", vec![dir("0", 0o755), raw(EntryType::Link, b"0/h", 0o644, b"", &host)]),
        ("character device", vec![dir("0", 0o755), raw(EntryType::Char, b"0/null", 0o666, b"", b"")]),
        ("block device", vec![dir("0", 0o755), raw(EntryType::Block, b"0/sda", 0o660, b"", b"")]),
        ("fifo", vec![dir("0", 0o755), raw(EntryType::Fifo, b"0/pipe", 0o644, b"", b"")]),
        ("`..`", vec![raw(EntryType::Regular, b"0/../../escaped", 0o644, b"x", b"")]),
        ("absolute path", vec![raw(EntryType::Regular, &host, 0o644, b"x", b"")]),
        ("symlink at the top", vec![raw(EntryType::Symlink, b"0", 0o777, b"", &host)]),
        (
            "not a directory, and nothing is written through it",
            vec![
                dir("0", 0o755),
                raw(EntryType::Symlink, b"0/l", 0o777, b"", marker.path().to_str().unwrap().as_bytes()),
                file("0/l/host-file", 0o644, b"pwned"),
            ],
        ),
        ("made twice", vec![dir("0", 0o755), file("0/a", 0o644, b"1"), file("0/a", 0o644, b"2")]),
        ("holds only 0", vec![file("1", 0o644, b"x")]),
        ("holds only 0", vec![file("00", 0o644, b"x")]),
    ];
    for (why, entries) in cases {
        let d = dirs(&entries);
        let e = unpack_outputs(&d).unwrap_err().to_string();
        let name = if why == "symlink at the top" { "symlink" } else { why };
        assert!(e.contains("outputs.tar.gz of the artifact, entry") && e.contains(name), "{why}: {e}");
        assert!(!d.dest.exists(), "{why}: the destination was made");
        assert!(fs::read_dir(&d.scratch).unwrap().next().is_none(), "{why}: staging left");
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "host");
    assert_eq!(fs::read_dir(marker.path()).unwrap().count(), 1);
}

#[test]
fn streams_hold_only_stdout_and_stderr_as_files() {
    let d = dirs(&[file("stdout", 0o644, b"out\n"), file("stderr", 0o4755, b"")]);
    let tops = Tops::Names(&["stdout", "stderr"]);
    unpack(&d.blob, "streams.tar.gz", &d.dest, &d.scratch, &tops, Limits::default()).unwrap();
    assert_eq!(fs::read(d.dest.join("stdout")).unwrap(), b"out\n");
    assert_eq!(fs::metadata(d.dest.join("stderr")).unwrap().mode() & 0o7777, 0o755);

    let host = b"/etc/passwd";
    let d = dirs(&[raw(EntryType::Symlink, b"stdout", 0o777, b"", host)]);
    let e = unpack(&d.blob, "streams.tar.gz", &d.dest, &d.scratch, &tops, Limits::default()).unwrap_err();
    assert!(e.to_string().contains("entry stdout") && e.to_string().contains("symlink"), "{e}");
    let d = dirs(&[raw(EntryType::Fifo, b"stderr", 0o644, b"", b"")]);
    let e = unpack(&d.blob, "streams.tar.gz", &d.dest, &d.scratch, &tops, Limits::default()).unwrap_err();
    assert!(e.to_string().contains("fifo"), "{e}");
    assert!(!d.dest.exists());
}

#[test]
fn an_artifact_tar_past_the_limits_is_refused_and_leaves_nothing() {
    let d = dirs(&[dir("0", 0o755), file("0/a", 0o644, b"data"), file("0/b", 0o644, b"data")]);
    let small = Limits { max_bytes: 1 << 20, max_entries: 2, ..Limits::default() };
    let e = unpack(&d.blob, "outputs.tar.gz", &d.dest, &d.scratch, &Tops::Indices(1), small).unwrap_err();
    assert!(e.to_string().contains("past 2 entries"), "{e}");
    assert!(!d.dest.exists() && fs::read_dir(&d.scratch).unwrap().next().is_none());
    unpack_outputs(&d).unwrap();
    assert_eq!(fs::read(d.dest.join("0/b")).unwrap(), b"data");
    assert!(!fs::symlink_metadata(d.dest.join("0/b")).unwrap().file_type().is_fifo());
}
