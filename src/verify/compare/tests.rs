//! Tree and stream comparisons on real temporary files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

use super::*;
use crate::record::files::digest_tree;

/// Two output directories made from (path, content) lists.
struct Pair {
    orig: TempDir,
    replay: TempDir,
}

impl Pair {
    fn new(orig: &[(&str, &str)], replay: &[(&str, &str)]) -> Pair {
        let p = Pair { orig: tempfile::tempdir().unwrap(), replay: tempfile::tempdir().unwrap() };
        for (dir, files) in [(p.orig.path(), orig), (p.replay.path(), replay)] {
            for (path, content) in files {
                let full = dir.join(path);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, content).unwrap();
            }
        }
        p
    }

    fn compare(&self, tol: &Tolerances) -> TreeReport {
        let (e, a) = (digest_tree(self.orig.path()).unwrap(), digest_tree(self.replay.path()).unwrap());
        compare_tree(&e, Some(self.orig.path()), &a, self.replay.path(), Path::new("/out"), tol)
    }
}

fn tol(rtol: Option<&str>, rules: &[&str]) -> Tolerances {
    let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
    Tolerances::parse(rtol, None, &rules).unwrap()
}

fn rendered(r: &TreeReport) -> String {
    let mut s = String::new();
    r.render(&mut s);
    s
}

#[test]
fn identical_trees() {
    let files = [("a.txt", "x\n"), ("sub/b.csv", "1,2\n")];
    let r = Pair::new(&files, &files).compare(&Tolerances::default());
    assert!(r.reproduced() && r.files.is_empty() && r.warnings.is_empty(), "{r:?}");
    assert_eq!((r.entries, r.identical), (3, 3));
    assert_eq!(rendered(&r), "output /out: reproduced (3 entries, bit-identical)\n");
}

#[test]
fn changed_file_has_offset_and_diff() {
    let p = Pair::new(&[("log.txt", "one\ntwo\nthree\n")], &[("log.txt", "one\nTWO\nthree\n")]);
    let r = p.compare(&Tolerances::default());
    assert!(!r.reproduced());
    assert_eq!(r.differing, 1);
    let f = &r.files[0];
    assert_eq!((f.path.as_str(), f.verdict), ("log.txt", Verdict::Differs));
    assert_eq!((f.expected_size, f.actual_size, f.first_difference), (Some(14), Some(14), Some(4)));
    let d = f.diff.as_ref().unwrap();
    assert_eq!(d.text, "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n");
    assert!(!d.truncated && f.numeric.is_none());
    let s = rendered(&r);
    assert!(
        s.contains("  out/log.txt  differs  14 B -> 14 B, first difference at byte 4\n    @@ -1,3 +1,3 @@\n"),
        "{s}"
    );
    // The report round-trips through JSON.
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"verdict\":\"differs\""), "{json}");
    assert_eq!(serde_json::from_str::<TreeReport>(&json).unwrap(), r);
}

#[test]
fn binary_files_get_no_diff() {
    let p = Pair::new(&[("m.bin", "a\0b")], &[("m.bin", "a\0c")]);
    let f = &p.compare(&Tolerances::default()).files[0];
    assert_eq!((f.first_difference, f.diff.is_none()), (Some(2), true));
}

#[test]
fn missing_and_added() {
    let p = Pair::new(
        &[("keep", "k"), ("gone.txt", "g"), ("olddir/a", "1"), ("olddir/b/c", "2")],
        &[("keep", "k"), ("new.txt", "n")],
    );
    let r = p.compare(&Tolerances::default());
    let got: Vec<_> = r.files.iter().map(|f| (f.path.as_str(), f.verdict, f.entries_inside)).collect();
    assert_eq!(
        got,
        [("gone.txt", Verdict::Missing, 0), ("new.txt", Verdict::Added, 0), ("olddir", Verdict::Missing, 3)]
    );
    assert_eq!((r.entries, r.identical, r.differing), (7, 1, 3));
    let s = rendered(&r);
    assert!(s.contains("  out/gone.txt  missing  file, 1 B\n"), "{s}");
    assert!(s.contains("  out/olddir  missing  dir, and 3 entries inside\n"), "{s}");
}

#[test]
fn mode_change() {
    let p = Pair::new(&[("run.sh", "#!/bin/sh\n")], &[("run.sh", "#!/bin/sh\n")]);
    fs::set_permissions(p.orig.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(p.replay.path().join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = p.compare(&Tolerances::default());
    let f = &r.files[0];
    assert_eq!((f.verdict, f.expected_mode, f.actual_mode), (Verdict::ModeChanged, Some(0o755), Some(0o644)));
    assert!(!r.reproduced());
    assert!(rendered(&r).contains("  out/run.sh  mode-changed  mode 0755 -> 0644\n"));
}

#[test]
fn symlink_and_kind_changes() {
    let p = Pair::new(&[("x", "1")], &[]);
    fs::create_dir(p.replay.path().join("x")).unwrap();
    std::os::unix::fs::symlink("a", p.orig.path().join("l")).unwrap();
    std::os::unix::fs::symlink("b", p.replay.path().join("l")).unwrap();
    let r = p.compare(&Tolerances::default());
    let got: Vec<_> = r.files.iter().map(|f| (f.path.as_str(), f.verdict)).collect();
    assert_eq!(got, [("l", Verdict::SymlinkTargetChanged), ("x", Verdict::KindChanged)]);
    assert_eq!(r.files[0].actual_target.as_deref(), Some("b"));
}

const METRICS: &str = r#"{"accuracy": 0.91, "label": "cat", "epochs": 10}"#;
const JITTER: &str = r#"{"accuracy": 0.910000001, "label": "cat", "epochs": 10}"#;

#[test]
fn json_jitter_within_a_path_tolerance() {
    let p = Pair::new(&[("metrics.json", METRICS)], &[("metrics.json", JITTER)]);
    let r = p.compare(&tol(None, &["metrics.json:$.accuracy=1e-6"]));
    assert!(r.reproduced() && r.warnings.is_empty(), "{r:?}");
    assert_eq!((r.within_tolerance, r.differing), (1, 0));
    let f = &r.files[0];
    assert_eq!(f.verdict, Verdict::WithinTolerance);
    let n = f.numeric.as_ref().unwrap();
    assert_eq!((n.format, n.compared, n.outside), (NumericFormat::Json, 2, 0));
    assert_eq!(n.worst.as_ref().unwrap().location, "$.accuracy");
    let s = rendered(&r);
    assert!(s.starts_with("output /out: reproduced (1 entry: 0 bit-identical, 1 within tolerance)\n"), "{s}");
    assert!(s.contains("worst deviation of 2 numbers: $.accuracy: 0.91 -> 0.910000001 (abs 1e-9, rel 1.099e-9, allowed 1e-6)"), "{s}");
    assert!(!s.contains("@@"), "no diff for a file within tolerance: {s}");

    // The same rule written with the mount point.
    assert!(p.compare(&tol(None, &["/out/metrics.json:$.accuracy=1e-6"])).reproduced());
    // Too tight a tolerance.
    let r = p.compare(&tol(None, &["metrics.json:$.accuracy=1e-12"]));
    assert!(!r.reproduced());
    let f = &r.files[0];
    assert_eq!(f.verdict, Verdict::Differs);
    let m = f.numeric.as_ref().unwrap().failure.as_ref().unwrap();
    assert_eq!(m.location, "$.accuracy");
    assert_eq!(
        m.reason,
        "expected 0.91, got 0.910000001: |difference| 1e-9 > 1e-12 allowed (--tolerance metrics.json:$.accuracy=1e-12)"
    );
    assert!(rendered(&r).contains("    $.accuracy: expected 0.91, got 0.910000001"));
    // Without any tolerance, bit-exact only: no numeric comparison.
    let r = p.compare(&Tolerances::default());
    assert!(r.files[0].numeric.is_none() && r.files[0].diff.is_some());
}

#[test]
fn changed_json_label_fails_even_with_a_huge_tolerance() {
    let changed = JITTER.replace("cat", "dog");
    let p = Pair::new(&[("metrics.json", METRICS)], &[("metrics.json", &changed)]);
    let r = p.compare(&tol(Some("1e300"), &["metrics.json=1e300"]));
    assert!(!r.reproduced());
    let m = r.files[0].numeric.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!((m.location.as_str(), m.reason.as_str()), ("$.label", r#"expected "cat", got "dog""#));
}

#[test]
fn csv_jitter_under_rtol_and_changed_label() {
    let orig = "model,loss,acc\nresnet,0.25,0.91\nvit,0.5,0.88\n";
    let jitter = "model,loss,acc\nresnet,0.2500001,0.91\nvit,0.5,0.8800002\n";
    let p = Pair::new(&[("results/run.csv", orig)], &[("results/run.csv", jitter)]);
    let r = p.compare(&tol(Some("1e-5"), &[]));
    assert!(r.reproduced(), "{r:?}");
    let n = r.files[0].numeric.as_ref().unwrap();
    assert_eq!((n.format, n.compared), (NumericFormat::Csv, 4));
    assert!(!p.compare(&tol(Some("1e-9"), &[])).reproduced());
    assert!(p.compare(&tol(None, &["results/*.csv=1e-5"])).reproduced());
    assert!(p.compare(&tol(None, &["**/*.csv=1e-5"])).reproduced());

    let relabeled = jitter.replace("vit", "deit");
    let p = Pair::new(&[("results/run.csv", orig)], &[("results/run.csv", &relabeled)]);
    let r = p.compare(&tol(Some("1e-5"), &[]));
    assert!(!r.reproduced());
    let m = r.files[0].numeric.as_ref().unwrap().failure.clone().unwrap();
    assert_eq!(
        (m.location.as_str(), m.reason.as_str()),
        ("row 3, column 1 (model)", r#"expected "vit", got "deit""#)
    );
}

#[test]
fn original_changed_since_the_run() {
    let p = Pair::new(&[("metrics.json", METRICS)], &[("metrics.json", JITTER)]);
    let (e, a) = (digest_tree(p.orig.path()).unwrap(), digest_tree(p.replay.path()).unwrap());
    fs::write(p.orig.path().join("metrics.json"), JITTER).unwrap();
    let t = tol(None, &["metrics.json=1"]);
    let r = compare_tree(&e, Some(p.orig.path()), &a, p.replay.path(), Path::new("/out"), &t);
    let f = &r.files[0];
    assert_eq!(f.verdict, Verdict::Differs);
    assert_eq!((f.first_difference, &f.diff, &f.numeric), (None, &None, &None));
    assert_eq!(f.notes[0], "original content not available (changed since the run)");
    assert_eq!(f.notes[1], "the declared tolerance could not be checked");
    assert!(rendered(&r).contains("    original content not available (changed since the run)\n"));
    // Without the original directory at all.
    let r = compare_tree(&e, None, &a, p.replay.path(), Path::new("/out"), &t);
    assert!(r.files[0].notes[0].starts_with("original content not available"));
    // Replaced by a directory: not read.
    fs::remove_file(p.orig.path().join("metrics.json")).unwrap();
    fs::create_dir(p.orig.path().join("metrics.json")).unwrap();
    let r = compare_tree(&e, Some(p.orig.path()), &a, p.replay.path(), Path::new("/out"), &t);
    assert_eq!(r.files[0].notes[0], "original content not available (changed since the run)");
}

#[test]
fn rules_that_match_nothing_warn() {
    let files = [("metrics.json", METRICS)];
    let p = Pair::new(&files, &files);
    let r =
        p.compare(&tol(None, &["metrcs.json=1e-6", "stdout=1", "/other/metrics.json=1", "metrics.json=1"]));
    assert!(r.reproduced());
    assert_eq!(r.unmatched_rules, ["metrcs.json=1e-6", "/other/metrics.json=1"]);
    assert_eq!(r.warnings[0], "--tolerance metrcs.json=1e-6 matches no file in the output at /out");
    assert!(rendered(&r).contains("  warning: --tolerance metrcs.json=1e-6 matches no file"));
    let mut other = r.clone();
    other.unmatched_rules = vec!["metrcs.json=1e-6".into()];
    assert_eq!(unmatched_in_all(&[r, other]), ["metrcs.json=1e-6"]);
}

#[test]
fn single_file_output() {
    let d = tempfile::tempdir().unwrap();
    let (o, n) = (d.path().join("o.json"), d.path().join("n.json"));
    fs::write(&o, METRICS).unwrap();
    fs::write(&n, JITTER).unwrap();
    let (e, a) = (digest_tree(&o).unwrap(), digest_tree(&n).unwrap());
    let t = tol(None, &["/out/result.json:$.accuracy=1e-6"]);
    let r = compare_tree(&e, Some(&o), &a, &n, Path::new("/out/result.json"), &t);
    assert!(r.reproduced() && r.warnings.is_empty(), "{r:?}");
    assert!(rendered(&r).contains("  out/result.json  within-tolerance"));
    assert!(compare_tree(
        &e,
        Some(&o),
        &a,
        &n,
        Path::new("/out/result.json"),
        &tol(None, &["result.json=1e-6"])
    )
    .reproduced());
}

#[test]
fn streams() {
    let t = Tolerances::default();
    let d = Digest::of_bytes(b"hello\n");
    assert_eq!(compare_stream("stdout", &d, 6, Some(b"hello\n"), b"hello\n", &t), None);
    let f = compare_stream("stdout", &d, 6, Some(b"hello\n"), b"hullo\n", &t).unwrap();
    assert_eq!((f.verdict, f.first_difference), (Verdict::Differs, Some(1)));
    assert_eq!(f.diff.unwrap().text, "@@ -1 +1 @@\n-hello\n+hullo\n");
    let f = compare_stream("stderr", &d, 6, None, b"x", &t).unwrap();
    assert_eq!(f.notes, ["original content not available (not kept)"]);
    let f = compare_stream("stderr", &d, 6, Some(b"other"), b"x", &t).unwrap();
    assert!(f.notes[0].contains("does not match the recorded digest"));

    let orig = b"{\"loss\": 0.25}\n";
    let d = Digest::of_bytes(orig);
    let jitter = b"{\"loss\": 0.2500001}\n";
    let f = compare_stream("stdout", &d, 15, Some(orig), jitter, &tol(None, &["stdout=1e-6"])).unwrap();
    assert_eq!(f.verdict, Verdict::WithinTolerance);
    let f = compare_stream("stdout", &d, 15, Some(orig), jitter, &tol(Some("1e-5"), &[])).unwrap();
    assert_eq!(f.verdict, Verdict::WithinTolerance);
    let f = compare_stream("stdout", &d, 15, Some(orig), jitter, &tol(None, &["stderr=1"])).unwrap();
    assert_eq!(f.verdict, Verdict::Differs);

    let orig = b"epoch\tloss\n1\t0.5\n2\t0.25\n";
    let d = Digest::of_bytes(orig);
    let f = compare_stream(
        "stdout",
        &d,
        26,
        Some(orig),
        b"epoch\tloss\n1\t0.5\n2\t0.2500001\n",
        &tol(Some("1e-5"), &[]),
    )
    .unwrap();
    assert_eq!(f.numeric.as_ref().unwrap().format, NumericFormat::Tsv);
    assert_eq!(f.verdict, Verdict::WithinTolerance);
    let mut s = String::new();
    f.render(&mut s);
    assert!(s.starts_with("  stdout  within-tolerance  26 B -> 29 B, first difference at byte 23\n"), "{s}");
}

#[test]
fn files_past_the_digest_limit_are_never_equal_but_could_not_compare() {
    use crate::record::files::{digest_at, Budget, Keep};
    let files = [("a", "1234"), ("big", "0123456789")];
    let p = Pair::new(&files, &files);
    let bounded = |d: &Path| {
        let fd = nix::fcntl::open(d, nix::fcntl::OFlag::O_PATH, nix::sys::stat::Mode::empty()).unwrap();
        digest_at(std::os::fd::AsFd::as_fd(&fd), &mut Budget::of(5), Keep::default()).unwrap()
    };
    let (e, a) = (bounded(p.orig.path()), bounded(p.replay.path()));
    assert_eq!(e.digest, a.digest, "cut short the same way");
    let r =
        compare_tree(&e, Some(p.orig.path()), &a, p.replay.path(), Path::new("/out"), &Tolerances::default());
    assert!(!r.reproduced());
    assert_eq!(r.files.len(), 1, "{r:?}");
    assert_eq!((r.files[0].path.as_str(), r.files[0].verdict), ("big", Verdict::CouldNotCompare));
    assert!(r.files[0].notes[0].starts_with("original: not digested: its 10 B"), "{:?}", r.files[0].notes);
    assert_eq!((r.identical, r.differing), (1, 0));
    let text = rendered(&r);
    assert!(text.starts_with("output /out: could not compare (2 entries: 1 bit-identical)"), "{text}");
}

#[test]
fn a_file_behind_a_symlink_in_the_tree_is_never_read() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("secret"), "host content\n").unwrap();
    let digest = Digest::of_bytes(b"host content\n");
    let tree = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(host.path(), tree.path().join("x")).unwrap();
    std::os::unix::fs::symlink(host.path().join("secret"), tree.path().join("y")).unwrap();
    for rel in ["x/secret", "y", "x/../x/secret", "../secret"] {
        assert!(
            matches!(load(tree.path(), rel, &digest, false), Err(Unreadable::Changed)),
            "{rel} was read through a symlink"
        );
    }
    fs::create_dir(tree.path().join("d")).unwrap();
    fs::write(tree.path().join("d/own"), "host content\n").unwrap();
    assert!(matches!(load(tree.path(), "d/own", &digest, false), Ok(Content::Bytes(_))));
    assert!(matches!(load(tree.path(), "d/own", &digest, true), Ok(Content::Large(_))));
}
