#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Records at the scale of a sweep: the parts every run of one image and
//! options shares are stored once (`runs/.objects`), record.json stays small,
//! and `runs ls` reads an index (`runs/.index`) that mends itself; every
//! reader still sees the whole record.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{hydrated, privileged, TestRoot};
use serde_json::Value;

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn objects(r: &TestRoot) -> PathBuf {
    r.path().join("runs/.objects/sha256")
}

fn object_names(r: &TestRoot) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(objects(r))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn record_path(r: &TestRoot, id: &str) -> PathBuf {
    r.path().join("runs").join(id).join("record.json")
}

fn raw(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Two runs of `true` in a root with busybox: their ids.
fn two_runs(r: &TestRoot) -> (String, String) {
    let mut ids: Vec<String> = Vec::new();
    for name in ["one", "two"] {
        let (code, _, err) = r.run(&["--name", name, "busybox:latest", "--", "true"]);
        assert_eq!(code, 0, "{err}");
        ids.push(
            r.records().into_iter().find(|x| x["name"] == name).unwrap()["run_id"].as_str().unwrap().into(),
        );
    }
    (ids[0].clone(), ids[1].clone())
}

/// `v` with its capability sets in one order (sets: the spec holds them
/// unordered, and prints them in any order).
fn caps_sorted(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Array(a)
                if !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(|s| s.starts_with("CAP_"))) =>
            {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()))
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::Object(m) => m.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn show_json(r: &TestRoot, id: &str) -> Value {
    let (code, out, err) = text(&r.exprun(&["runs", "show", id, "--json"], None));
    assert_eq!(code, 0, "{err}");
    caps_sorted(serde_json::from_str(&out).unwrap())
}

#[test]
fn a_plain_runs_record_is_small_shares_its_spec_and_reads_whole() {
    if !privileged("a_plain_runs_record_is_small_shares_its_spec_and_reads_whole") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (a, b) = two_runs(&r);
    let (ra, rb) = (raw(&record_path(&r, &a)), raw(&record_path(&r, &b)));
    let size = std::fs::metadata(record_path(&r, &a)).unwrap().len();
    assert!(size < 4096, "record.json of a plain run is {size} bytes");
    let spec = ra["spec"]["$object"].as_str().unwrap_or_else(|| panic!("no spec object: {ra}"));
    assert_eq!(rb["spec"]["$object"], spec, "two runs of one image and options share their spec");
    for field in ["host", "image", "determinism"] {
        assert_eq!(ra[field]["$object"], rb[field]["$object"], "{field}");
    }
    assert!(ra["cgroup"]["dirs"].is_object(), "the cgroup plan stays in the record: {ra}");
    let spec_object = objects(&r).join(spec.strip_prefix("sha256:").unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spec_object), 0o600);
    assert_eq!(mode(&objects(&r)), 0o700);
    assert_eq!(mode(objects(&r).parent().unwrap()), 0o700);
    assert_eq!(object_names(&r).len(), 4, "spec, host, image, determinism: {:?}", object_names(&r));

    // Every reader sees the whole record: the run id back in the spec's paths.
    let whole = show_json(&r, &a);
    assert!(
        whole == caps_sorted(hydrated(&record_path(&r, &a))),
        "runs show --json is not the record put back"
    );
    let root = whole["spec"]["root"]["path"].as_str().unwrap();
    assert!(root.ends_with(&format!("containers/{a}/rootfs")), "{root}");
    assert_eq!(whole["spec"]["process"]["args"], serde_json::json!(["true"]));

    // show and export read the same from the stored form as from the record
    // written whole (as exprun wrote records before).
    let human = |r: &TestRoot| text(&r.exprun(&["runs", "show", &a], None)).1;
    let crate_json = |r: &TestRoot| text(&r.exprun(&["runs", "export", &a, "--format", "ro-crate"], None)).1;
    let in_toto = |r: &TestRoot| {
        let mut v: Value =
            serde_json::from_str(&text(&r.exprun(&["runs", "export", &a, "--format", "in-toto"], None)).1)
                .unwrap();
        // The byproduct is record.json as a file, with the file's digest.
        v["predicate"]["runDetails"]["byproducts"] = Value::Null;
        caps_sorted(v)
    };
    let before = (human(&r), crate_json(&r), in_toto(&r));
    std::fs::write(record_path(&r, &a), serde_json::to_vec_pretty(&whole).unwrap()).unwrap();
    assert!(show_json(&r, &a) == whole, "runs show --json of the record written whole differs");
    let after = (human(&r), crate_json(&r), in_toto(&r));
    assert_eq!((&after.0, &after.1), (&before.0, &before.1));
    assert!(after.2 == before.2, "the in-toto statement differs");
    r.assert_no_leftovers();
}

#[test]
fn runs_rm_keeps_an_object_while_a_record_names_it() {
    if !privileged("runs_rm_keeps_an_object_while_a_record_names_it") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (a, b) = two_runs(&r);
    let shared = object_names(&r);
    assert_eq!(shared.len(), 4, "{shared:?}");
    // An object a writer left behind before it died, named by no record.
    std::fs::write(objects(&r).join("ab".repeat(32)), b"{}").unwrap();
    let (code, out, err) = text(&r.exprun(&["runs", "rm", "one"], None));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(object_names(&r), shared, "b still names them; the stray one went");
    assert_eq!(show_json(&r, &b)["run_id"], b.as_str());
    let (code, out, err) = text(&r.exprun(&["runs", "ls", "--json"], None));
    assert_eq!(code, 0, "{err}");
    let ids: Vec<Value> = serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["run_id"].clone())
        .collect();
    assert_eq!(ids, [Value::String(b.clone())]);
    assert!(!std::fs::read_to_string(r.path().join("runs/.index")).unwrap().contains(&a));
    let (code, out, err) = text(&r.exprun(&["runs", "rm", &b[..8]], None));
    assert_eq!(code, 0, "{out}{err}");
    assert!(object_names(&r).is_empty(), "{:?}", object_names(&r));
    r.assert_no_leftovers();
}

#[test]
fn a_changed_or_missing_object_is_refused_naming_the_run_and_the_object() {
    if !privileged("a_changed_or_missing_object_is_refused_naming_the_run_and_the_object") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (a, _) = two_runs(&r);
    let spec = raw(&record_path(&r, &a))["spec"]["$object"].as_str().unwrap().to_string();
    let path = objects(&r).join(spec.strip_prefix("sha256:").unwrap());
    let good = std::fs::read(&path).unwrap();
    // The same JSON with one argument changed: it parses, but is not what was recorded.
    let evil =
        String::from_utf8(good.clone()).unwrap().replace(r#""args":["true"]"#, r#""args":["rm","-rf","/"]"#);
    assert_ne!(evil.as_bytes(), good.as_slice());
    std::fs::write(&path, evil).unwrap();
    for args in [
        &["runs", "show", "one"][..],
        &["runs", "export", "one", "--format", "in-toto"],
        &["replay", "one", "--dry-run"],
    ] {
        let (code, out, err) = text(&r.exprun(args, None));
        assert_eq!(code, 125, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("run {a}: object {} does not match its name", path.display())),
            "{args:?}: {err}"
        );
        assert!(!out.contains("rm"), "{out}");
    }
    std::fs::remove_file(&path).unwrap();
    let (code, _, err) = text(&r.exprun(&["runs", "show", "one"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&format!("run {a}: its record names object {spec}, which is missing")), "{err}");
    std::fs::write(&path, good).unwrap();
    assert_eq!(show_json(&r, "one")["run_id"], a.as_str());
    r.assert_no_leftovers();
}

#[test]
fn the_index_is_rebuilt_when_deleted_or_torn_and_ls_says_the_same() {
    if !privileged("the_index_is_rebuilt_when_deleted_or_torn_and_ls_says_the_same") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (a, b) = two_runs(&r);
    let index = r.path().join("runs/.index");
    let ls = |args: &[&str]| {
        let (code, out, err) = text(&r.exprun(&[&["runs", "ls"], args].concat(), None));
        assert_eq!(code, 0, "{err}");
        out
    };
    let table = ls(&[]);
    let json = ls(&["--json"]);
    assert!(table.contains(&a[..12]) && table.contains(&b[..12]), "{table}");
    let lines = std::fs::read_to_string(&index).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");

    std::fs::remove_file(&index).unwrap();
    assert_eq!((ls(&[]), ls(&["--json"])), (table.clone(), json.clone()), "without an index");
    assert_eq!(std::fs::read_to_string(&index).unwrap().lines().count(), 2, "rebuilt");

    let whole = std::fs::read(&index).unwrap();
    std::fs::write(&index, &whole[..whole.len() - 10]).unwrap();
    assert_eq!(ls(&[]), table, "with a torn last line");
    assert_eq!(std::fs::read(&index).unwrap().len(), whole.len(), "rebuilt");

    // One line missing (a writer killed after its record), one for a run gone.
    let text = String::from_utf8(whole.clone()).unwrap();
    let first_line = text.lines().find(|l| l.contains(&a)).unwrap().replace(&a, &"f".repeat(32));
    std::fs::write(&index, format!("{first_line}\n")).unwrap();
    assert_eq!(ls(&["--json"]), json, "mended from the run directories");
    assert!(!std::fs::read_to_string(&index).unwrap().contains(&"f".repeat(32)));

    // A record written while the index was there gets its line appended.
    let (code, _, err) = r.run(&["--name", "three", "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&index).unwrap().lines().count(), 3);
    assert!(ls(&["--name", "three"]).contains("three"));
    r.assert_no_leftovers();
}

#[test]
fn a_long_input_listing_is_stored_once_for_the_runs_that_read_it() {
    if !privileged("a_long_input_listing_is_stored_once_for_the_runs_that_read_it") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..200 {
        std::fs::write(input.join(format!("sample-{i:04}.csv")), format!("{i}\n")).unwrap();
    }
    let spec = format!("{}:/in", input.display());
    let mut ids = Vec::new();
    for lr in ["0.1", "0.01"] {
        let (code, _, err) =
            r.run(&["--input", &spec, "-e", &format!("LR={lr}"), "busybox:latest", "--", "ls", "/in"]);
        assert_eq!(code, 0, "{err}");
        ids.push(r.last_record()["run_id"].as_str().unwrap().to_string());
    }
    let stored: Vec<Value> = ids.iter().map(|id| raw(&record_path(&r, id))).collect();
    let entries = &stored[0]["inputs"][0]["tree"]["entries"];
    assert!(entries["$object"].is_string(), "the listing is an object: {entries}");
    assert_eq!(stored[1]["inputs"][0]["tree"]["entries"], *entries, "one object for both runs");
    for id in &ids {
        let size = std::fs::metadata(record_path(&r, id)).unwrap().len();
        assert!(size < 6144, "record.json of a run reading 200 files is {size} bytes");
        let whole = show_json(&r, id);
        let listed = whole["inputs"][0]["tree"]["entries"].as_array().unwrap();
        assert_eq!(listed.len(), 200);
        assert_eq!(listed[0]["path"], "sample-0000.csv");
    }
    // The runs differ in LR only, and diff says just that.
    let (code, out, err) = text(&r.exprun(&["runs", "diff", &ids[0], &ids[1]], None));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("  env LR: 0.1 -> 0.01\n") && !out.contains("input"), "{out}");
    r.assert_no_leftovers();
}

#[test]
fn ls_lists_the_run_directories_there_whatever_the_index_says() {
    if !privileged("ls_lists_the_run_directories_there_whatever_the_index_says") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (a, b) = two_runs(&r);
    let runs = r.path().join("runs");
    let index = runs.join(".index");
    let ls = || {
        let (code, out, err) = text(&r.exprun(&["runs", "ls", "--all"], None));
        assert_eq!(code, 0, "{err}");
        out
    };
    let table = ls();
    assert_eq!(table.lines().count(), 3, "{table}");
    let whole = std::fs::read_to_string(&index).unwrap();
    let line_a = whole.lines().find(|l| l.contains(&a)).unwrap().to_string();

    // A symlink in runs/ is no run directory, though its line names it and
    // it leads to one: not listed, and its line is dropped.
    let fake = "e".repeat(32);
    std::os::unix::fs::symlink(runs.join(&a), runs.join(&fake)).unwrap();
    std::fs::write(&index, format!("{whole}{}\n", line_a.replace(&a, &fake))).unwrap();
    assert_eq!(ls(), table, "a symlinked run directory");
    assert!(!std::fs::read_to_string(&index).unwrap().contains(&fake));
    std::fs::remove_file(runs.join(&fake)).unwrap();

    // Two lines for one run, and one run without a line: the counts agree,
    // the runs do not.
    let line_b = whole.lines().find(|l| l.contains(&b)).unwrap();
    std::fs::write(&index, format!("{line_b}\n{line_b}\n")).unwrap();
    assert_eq!(ls(), table, "a line twice, a line missing");
    assert_eq!(std::fs::read_to_string(&index).unwrap().lines().count(), 2);

    // An index that is a symlink to another file, one that agrees with the
    // run directories but names a run otherwise, is not read, nor written
    // through: the listing is rebuilt from the records.
    let elsewhere = r.path().join("elsewhere");
    let forged = whole.replace("\"name\":\"one\"", "\"name\":\"forged\"");
    assert_ne!(forged, whole);
    std::fs::write(&elsewhere, &forged).unwrap();
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &index).unwrap();
    assert_eq!(ls(), table, "a symlinked index");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), forged);
    assert!(!std::fs::symlink_metadata(&index).unwrap().file_type().is_symlink());
    std::fs::remove_file(&elsewhere).unwrap();

    // An index owned by someone else that lists a run whose directory is
    // gone: the run is not shown.
    let gone = runs.join(&a);
    let kept = r.path().join("kept-a");
    std::fs::rename(&gone, &kept).unwrap();
    std::os::unix::fs::chown(&index, Some(65534), Some(65534)).unwrap();
    let out = ls();
    assert!(!out.contains(&a[..12]) && out.contains(&b[..12]), "{out}");
    std::fs::rename(&kept, &gone).unwrap();
    assert_eq!(ls(), table, "the run back");
    r.assert_no_leftovers();
}
