#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The input digest cache, end to end: a second run does not read an
//! unchanged input again, a change is seen through the ctime or the inode
//! even with size and mtime kept, replay reports it as drift as before, a
//! record from before Merkle digests still replays and verifies, and a slow
//! digest shows its progress.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{privileged, skip, TestRoot};
use exprun::record::files::{cache, FileEntry, Scheme};
use serde_json::Value;

fn code_out_err(out: &std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait until files written now are old enough for their cache entries to
/// be trusted (not "racily clean").
fn let_settle() {
    std::thread::sleep(Duration::from_nanos(cache::RACY_WINDOW_NS as u64) + Duration::from_millis(200));
}

fn input_arg(dir: &Path, dst: &str) -> String {
    format!("{}:{dst}", dir.display())
}

/// The digest recorded for `path` in the newest record's first input.
fn recorded_file(r: &TestRoot, path: &str) -> Value {
    let rec = r.last_record();
    let entries = rec["inputs"][0]["tree"]["entries"].as_array().unwrap().clone();
    entries.into_iter().find(|e| e["path"] == path).unwrap()["digest"].clone()
}

fn sha256(b: &[u8]) -> Value {
    Value::String(exprun::digest::Digest::of_bytes(b).to_string())
}

/// `exprun run` of `/bin/true` with `data` at /data, under `strace` (every
/// thread and child): its exit status, stderr, and the trace of every read.
fn traced_run(r: &TestRoot, data: &Path, trace: &Path) -> (i32, String, String) {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=read,pread64,readv,preadv,preadv2", "-s", "48", "-o"])
        .arg(trace)
        .arg(common::exprun_bin())
        .arg("--root")
        .arg(r.path())
        .args(["run", "--input", &input_arg(data, "/data"), "busybox:latest", "true"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (code, _, err) = code_out_err(&out);
    (code, err, std::fs::read_to_string(trace).unwrap())
}

#[test]
fn a_second_run_reads_no_unchanged_input_file() {
    if !privileged("a_second_run_reads_no_unchanged_input_file") {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        skip("a_second_run_reads_no_unchanged_input_file", "needs strace");
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let marker = "EXPRUN-INPUT-CACHE-MARKER-7f3a";
    for i in 0..20 {
        std::fs::create_dir_all(data.path().join(format!("d{}", i % 3))).unwrap();
        std::fs::write(data.path().join(format!("d{}/f{i}", i % 3)), format!("{marker} {i}\n")).unwrap();
    }
    let_settle();
    let traces = tempfile::tempdir().unwrap();
    let (code, err, first) = traced_run(&r, data.path(), &traces.path().join("first"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(first.matches(marker).count(), 20, "the first run reads every file: {first}");
    let digest = r.last_record()["inputs"][0]["tree"]["digest"].clone();

    let (code, err, second) = traced_run(&r, data.path(), &traces.path().join("second"));
    assert_eq!(code, 0, "{err}");
    let read: Vec<&str> = second.lines().filter(|l| l.contains(marker)).collect();
    assert!(read.is_empty(), "the second run read unchanged input files:\n{}", read.join("\n"));
    let rec = r.last_record();
    assert_eq!(rec["inputs"][0]["tree"]["digest"], digest, "the same digest from the cache");
    assert_eq!(rec["inputs"][0]["tree"]["scheme"], "merkle");
    assert_eq!(rec["inputs"][0]["tree"]["files"], 20);
    // Nothing of the cache in the record or on stderr: it is an optimisation.
    assert!(!err.contains("cache"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn a_changed_input_is_noticed_through_ctime_or_inode_and_replay_reports_it() {
    if !privileged("a_changed_input_is_noticed_through_ctime_or_inode_and_replay_reports_it") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let x = input.join("x.csv");
    std::fs::write(&x, "1,2\n").unwrap();
    let mtime = std::fs::metadata(&x).unwrap().modified().unwrap();
    let_settle();
    let arg = input_arg(&input, "/in");
    let (code, out, err) = r.run(&["--name", "orig", "--input", &arg, "busybox:latest", "cat", "/in/x.csv"]);
    assert_eq!((code, out.as_str()), (0, "1,2\n"), "{err}");
    assert_eq!(recorded_file(&r, "x.csv"), sha256(b"1,2\n"));
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "orig"], None));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no drift"), "{err}");

    // Same size, mtime put back: only the ctime says it changed.
    std::fs::write(&x, "1,3\n").unwrap();
    std::fs::File::options().write(true).open(&x).unwrap().set_modified(mtime).unwrap();
    let (code, out, err) = r.run(&["--input", &arg, "busybox:latest", "cat", "/in/x.csv"]);
    assert_eq!((code, out.as_str()), (0, "1,3\n"), "{err}");
    assert_eq!(recorded_file(&r, "x.csv"), sha256(b"1,3\n"), "the cache vouched for the old content");
    let before = r.records().len();
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "orig"], None));
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("input /in") && err.contains("changed: x.csv") && err.contains("--allow-drift"),
        "{err}"
    );
    assert_eq!(r.records().len(), before, "a refused replay leaves no record");

    // Put back as it was, and let the cache learn it again.
    std::fs::write(&x, "1,2\n").unwrap();
    let_settle();
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "orig"], None));
    assert_eq!(code, 0, "{err}");
    // Another file renamed over it: same size, same mtime, another inode.
    let swap = data.path().join("swap");
    std::fs::write(&swap, "9,9\n").unwrap();
    std::fs::File::options().write(true).open(&swap).unwrap().set_modified(mtime).unwrap();
    std::fs::rename(&swap, &x).unwrap();
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "orig"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("input /in") && err.contains("changed: x.csv"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn a_record_with_a_listing_digest_still_replays_and_verifies() {
    if !privileged("a_record_with_a_listing_digest_still_replays_and_verifies") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/a"), "a\n").unwrap();
    std::fs::write(data.path().join("b"), "b\n").unwrap();
    let arg = input_arg(data.path(), "/in");
    let (code, _, err) = r.run(&["--name", "old", "--input", &arg, "busybox:latest", "cat", "/in/sub/a"]);
    assert_eq!(code, 0, "{err}");
    // As exprun wrote it before inputs had Merkle digests: a listing digest, no scheme.
    let id = r.last_record()["run_id"].as_str().unwrap().to_string();
    let path = r.path().join("runs").join(&id).join("record.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let tree = &mut rec["inputs"][0]["tree"];
    let entries: Vec<FileEntry> = serde_json::from_value(tree["entries"].clone()).unwrap();
    let merkle = tree["digest"].clone();
    tree["digest"] = Value::String(Scheme::Listing.of_entries(&entries).to_string());
    tree.as_object_mut().unwrap().remove("scheme");
    assert_ne!(tree["digest"], merkle);
    std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();

    let (code, _, err) = code_out_err(&r.exprun(&["replay", "old"], None));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no drift"), "{err}");
    let (code, out, err) = code_out_err(&r.exprun(&["verify", "old"], None));
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(data.path().join("sub/a"), "A\n").unwrap();
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "old"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("input /in") && err.contains("changed: sub/a"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn a_slow_input_digest_shows_its_progress_and_a_fast_one_does_not() {
    if !privileged("a_slow_input_digest_shows_its_progress_and_a_fast_one_does_not") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("small"), "s").unwrap();
    let arg = input_arg(data.path(), "/data");
    let (code, _, err) = r.run(&["--input", &arg, "busybox:latest", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("hashing"), "{err}");
    // A sparse file: seconds of hashing, no disk.
    std::fs::File::create(data.path().join("big")).unwrap().set_len(6 << 30).unwrap();
    let (code, _, err) = r.run(&["--input", &arg, "busybox:latest", "true"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("exprun: hashing input /data: ")).expect(&err);
    assert!(lines[first].contains(" of 6.0 GiB, ") && lines[first].ends_with(" of 2 files"), "{err}");
    assert!(!err.contains('\r'), "not a terminal: plain lines: {err:?}");
    assert!(
        lines[first..].iter().any(|l| l.starts_with("exprun: hashed input /data: 6.0 GiB, 2 files in ")),
        "{err}"
    );
    r.assert_no_leftovers();
}
