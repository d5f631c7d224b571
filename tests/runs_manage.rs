#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Managing many records: `runs ls` filters and the replays verify makes,
//! `runs prune` and what records depend on, `runs diff` on the values of
//! JSON and CSV outputs, and listing into a pipe closed early.

mod common;

use std::process::{Output, Stdio};

use common::{privileged, TestRoot};
use serde_json::Value;

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run ids `runs ls --json ARGS` lists.
fn listed(r: &TestRoot, args: &[&str]) -> Vec<String> {
    let (code, out, err) = text(&r.exprun(&[&["runs", "ls", "--json"], args].concat(), None));
    assert_eq!(code, 0, "{args:?}: {err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    rows.as_array().unwrap().iter().map(|x| x["run_id"].as_str().unwrap().to_string()).collect()
}

/// A copy of `base`'s record under a new id, changed by `edit`: a record as
/// exprun writes it, with the fields a test needs set.
fn clone_record(r: &TestRoot, base: &Value, id: &str, edit: impl FnOnce(&mut Value)) {
    let mut v = base.clone();
    v["run_id"] = Value::String(id.into());
    v["name"] = Value::Null;
    edit(&mut v);
    let dir = r.path().join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn id(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

const OLD: &str = "2020-01-01T00:00:00Z";

/// One real run and one real verify replay of it, in a root with busybox.
fn run_and_verify(r: &TestRoot) -> (Value, Value) {
    let (code, _, err) = r.run(&["--name", "base", "busybox:latest", "--", "echo", "hello"]);
    assert_eq!(code, 0, "{err}");
    let base = r.last_record();
    let (code, out, err) = text(&r.exprun(&["verify", "base"], None));
    assert_eq!(code, 0, "{out}{err}");
    let replay = r.records().into_iter().find(|x| x["run_id"] != base["run_id"]).unwrap();
    (base, replay)
}

#[test]
fn ls_hides_verify_replays_and_filters() {
    if !privileged("ls_hides_verify_replays_and_filters") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (base, replay) = run_and_verify(&r);
    let (base_id, replay_id) = (base["run_id"].as_str().unwrap(), replay["run_id"].as_str().unwrap());
    assert_eq!(replay["replay_of"], base["run_id"], "{replay}");
    assert_eq!(replay["made_by"], "verify", "{replay}");

    // Verify's replays are hidden, and said so; --all lists them.
    let (code, out, err) = text(&r.exprun(&["runs", "ls"], None));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&base_id[..12]) && !out.contains(&replay_id[..12]), "{out}");
    assert!(err.contains("1 replay(s) made by `exprun verify` not listed (--all lists them)"), "{err}");
    assert_eq!(listed(&r, &[]), [base_id]);
    assert_eq!(listed(&r, &["--all"]).len(), 2);
    let (_, out, _) = text(&r.exprun(&["runs", "show", replay_id], None));
    assert!(out.contains(&format!("replay of:  {base_id} by exprun verify")), "{out}");

    // A record written before made_by: verify's command line marks it.
    clone_record(&r, &replay, &id(1), |v| {
        v.as_object_mut().unwrap().remove("made_by");
    });
    assert_eq!(listed(&r, &[]), [base_id]);

    clone_record(&r, &base, &id(2), |v| {
        v["name"] = "train-2".into();
        v["status"] = "killed".into();
        v["time"]["created"] = OLD.into();
        v["spec"]["annotations"] = serde_json::json!({"project": "mnist", "stage": "a=b"});
        v["image"]["reference"] = "other:1".into();
        v["image"]["name"] = "other:1".into();
        v["image"]["manifest_digest"] = format!("sha256:{}", "ab".repeat(32)).into();
    });
    let two = id(2);
    assert_eq!(listed(&r, &["--name", "train-2"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--name", "train*"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--name", "base"]), [base_id]);
    assert_eq!(listed(&r, &["--status", "killed"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--status", "exited"]), [base_id]);
    assert_eq!(listed(&r, &["--label", "project=mnist"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--label", "stage=a=b", "--label", "project=mnist"]), [two.as_str()]);
    assert!(listed(&r, &["--label", "project=cifar"]).is_empty());
    assert_eq!(listed(&r, &["--image", "busybox"]), [base_id]);
    assert_eq!(listed(&r, &["--image", "other:1"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--image", "abab"]), [two.as_str()]);
    assert_eq!(listed(&r, &["--since", "1day"]), [base_id]);
    assert_eq!(listed(&r, &["--since", "2019-12-31"]), [two.as_str(), base_id]);
    assert_eq!(listed(&r, &["--since", "1day", "--all"]).len(), 3);

    // Bad values: status 125, the flag named, the form expected.
    for (args, says) in [
        (&["--status", "done"][..], "--status"),
        (&["--since", "yesterday"], "--since"),
        (&["--since", "2026-13-45"], "--since"),
        (&["--label", "project"], "--label"),
        (&["--name", ""], "--name"),
        (&["--image", ""], "--image"),
    ] {
        let (code, _, err) = text(&r.exprun(&[&["runs", "ls"], args].concat(), None));
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(says) && err.contains("expected"), "{args:?}: {err}");
    }
    r.assert_no_leftovers();
}

#[test]
fn prune_never_removes_what_others_depend_on_unless_forced() {
    if !privileged("prune_never_removes_what_others_depend_on_unless_forced") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (base, replay) = run_and_verify(&r);
    let runs = r.path().join("runs");
    // The original is old, its verify replay new; an old run whose directory
    // holds a newer run's input; an old run nothing needs.
    let (orig, src, lone) = (id(1), id(2), id(3));
    clone_record(&r, &base, &orig, |v| v["time"]["created"] = OLD.into());
    clone_record(&r, &replay, &id(4), |v| {
        v["replay_of"] = orig.clone().into();
        v["time"]["created"] = "2030-01-01T00:00:00Z".into();
    });
    clone_record(&r, &base, &src, |v| v["time"]["created"] = OLD.into());
    let input = runs.join(&src).join("outputs/out");
    std::fs::create_dir_all(&input).unwrap();
    clone_record(&r, &base, &id(5), |v| {
        v["inputs"] = serde_json::json!([{"source": input, "destination": "/data", "tree": null}]);
    });
    clone_record(&r, &base, &lone, |v| v["time"]["created"] = OLD.into());
    let exists = |id: &str| runs.join(id).join("record.json").exists();

    let (code, _, err) = text(&r.exprun(&["runs", "prune"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--older-than, --keep-last or --replays-only"), "{err}");
    for (args, says) in
        [(&["--older-than", "soon"][..], "--older-than"), (&["--keep-last", "many"], "--keep-last")]
    {
        let (code, _, err) = text(&r.exprun(&[&["runs", "prune"], args].concat(), None));
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(says) && err.contains("expected"), "{args:?}: {err}");
    }

    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--older-than", "1day", "--dry-run"], None));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("would remove {lone}\n")), "{out}");
    assert!(
        out.contains(&format!("kept {orig}: needed by {} (verify's replay of it)", &id(4)[..12])),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "kept {src}: needed by {} (its input /data is in that run's directory)",
            &id(5)[..12]
        )),
        "{out}"
    );
    assert!(exists(&lone) && exists(&orig) && exists(&src), "a dry run removes nothing");

    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--older-than", "1day"], None));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed {lone}\n")), "{out}");
    assert!(!exists(&lone) && exists(&orig) && exists(&src) && exists(&id(5)), "{out}");

    // Replays only, keeping the newest: the older real replay goes.
    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--replays-only", "--keep-last", "1"], None));
    assert_eq!(code, 0, "{err}");
    let replay_id = replay["run_id"].as_str().unwrap();
    assert!(!exists(replay_id) && exists(&id(4)) && exists(base["run_id"].as_str().unwrap()), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    // With its replay gone too, the original goes.
    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--replays-only", "--keep-last", "0"], None));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--older-than", "1day"], None));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed {orig}\n")) && exists(&src), "{out}");

    // --force removes what is needed, and says by what.
    let (code, out, err) = text(&r.exprun(&["runs", "prune", "--older-than", "1day", "--force"], None));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "removed {src} (--force: needed by {} (its input /data is in that run's directory))",
            &id(5)[..12]
        )),
        "{out}"
    );
    assert!(!exists(&src));
    r.assert_no_leftovers();
}

#[test]
fn diff_lists_the_values_that_changed() {
    if !privileged("diff_lists_the_values_that_changed") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    for (name, acc, label, cell) in [("m-a", "0.91", "cat", "1.5"), ("m-b", "0.92", "dog", "1.50001")] {
        let out = data.path().join(name);
        let script = format!(
            "printf '{{\"accuracy\": {acc}, \"label\": \"{label}\", \"loss\": [1, 2]}}' > /out/metrics.json; \
             printf 'epoch,loss\\n1,{cell}\\n2,0.5\\n' > /out/loss.csv; echo {name} > /out/notes.txt"
        );
        let spec = format!("{}:/out", out.display());
        let (code, _, err) =
            r.run(&["--name", name, "--output", &spec, "busybox:latest", "--", "sh", "-c", &script]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = text(&r.exprun(&["runs", "diff", "m-a", "m-b"], None));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("  output /out: metrics.json changed"), "{out}");
    assert!(out.contains("    $.accuracy: 0.91 -> 0.92\n"), "{out}");
    assert!(out.contains("    $.label: expected \"cat\", got \"dog\"\n"), "{out}");
    assert!(out.contains("    row 2, column 2 (loss): 1.5 -> 1.50001\n"), "{out}");
    assert!(!out.contains("$.loss"), "unchanged values are not listed: {out}");
    assert!(out.contains("  output /out: notes.txt changed"), "{out}");

    // verify's tolerance rules: within tolerance is said, beyond it not.
    let (code, out, err) =
        text(&r.exprun(
            &["runs", "diff", "m-a", "m-b", "--atol", "0.001", "--tolerance", "metrics.json=0.1"],
            None,
        ));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("    $.accuracy: 0.91 -> 0.92 (within tolerance)\n"), "{out}");
    assert!(out.contains("    row 2, column 2 (loss): 1.5 -> 1.50001 (within tolerance)\n"), "{out}");
    assert!(out.contains("    every value within the declared tolerance\n"), "loss.csv: {out}");
    let (code, _, err) = text(&r.exprun(&["runs", "diff", "m-a", "m-b", "--rtol", "lots"], None));
    assert_eq!(code, 125);
    assert!(err.contains("--rtol"), "{err}");

    // The JSON form carries them on the file's change.
    let (_, out, _) = text(&r.exprun(&["runs", "diff", "m-a", "m-b", "--json"], None));
    let d: Value = serde_json::from_str(&out).unwrap();
    let change = d["outcome"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "outputs[/out].files[metrics.json]")
        .unwrap_or_else(|| panic!("{out}"))
        .clone();
    assert_eq!(change["values"]["changes"][0]["location"], "$.accuracy", "{change}");
    assert_eq!(change["values"]["changes"][0]["what"], "0.91 -> 0.92", "{change}");

    // A file changed since its run is not read.
    std::fs::write(data.path().join("m-a/metrics.json"), "{\"accuracy\": 0.5}").unwrap();
    let (_, out, _) = text(&r.exprun(&["runs", "diff", "m-a", "m-b"], None));
    assert!(
        out.contains("(values not shown: a run's file is gone or changed since it was recorded)"),
        "{out}"
    );
    assert!(!out.contains("0.5 ->"), "{out}");
    r.assert_no_leftovers();
}

/// Run exprun with its stdout a pipe whose reading end is already closed.
fn into_closed_pipe(r: &TestRoot, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = r.command(args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn listing_into_a_closed_pipe_ends_quietly() {
    let r = TestRoot::new();
    std::fs::create_dir_all(r.path().join("runs")).unwrap();
    for args in [&["runs", "ls"][..], &["runs", "ls", "--json"], &["image", "ls"], &["list"]] {
        let (code, err) = into_closed_pipe(&r, args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
    }
}

#[test]
fn a_closed_pipe_during_a_long_listing_ends_quietly() {
    if !privileged("a_closed_pipe_during_a_long_listing_ends_quietly") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, _, err) = r.run(&["--name", "one", "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let base = r.last_record();
    // More lines than a pipe holds (64 KiB): exprun is still writing when
    // the reader goes, as in `runs ls | head -1`.
    for n in 0..1000u32 {
        clone_record(&r, &base, &format!("{n:032x}"), |_| {});
    }
    let mut child = r.command(&["runs", "ls"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 3];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(&first, b"RUN");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
