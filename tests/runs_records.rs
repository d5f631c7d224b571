#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun runs diff` and `exprun runs export` on the records of real runs.

mod common;

use std::path::Path;
use std::process::Output;

use common::{privileged, TestRoot};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_runs_are_errors_with_status_125() {
    let r = TestRoot::new();
    let (code, _, err) = text(&r.exprun(&["runs", "diff", "nosuch", "0123abcd"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("no run matches \"nosuch\""), "{err}");
    let (code, _, err) = text(&r.exprun(&["runs", "export", "0123abcd", "--format", "in-toto"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("no run matches \"0123abcd\""), "{err}");
    let (code, _, err) = text(&r.exprun(&["runs", "export", "x", "--format", "zip"], None));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("ro-crate") && err.contains("in-toto"), "{err}");
}

#[test]
fn diff_and_export_two_real_runs() {
    if !privileged("diff_and_export_two_real_runs") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let (o1, o2) = (data.path().join("o1"), data.path().join("o2"));
    for (name, out, mode, n) in [("run-a", &o1, "MODE=one", 1), ("run-b", &o2, "MODE=two", 2)] {
        let spec_out = format!("{}:/out", out.display());
        let script = format!("echo {n} > /out/a; echo x > /out/b");
        let (code, _, err) = r.run(&[
            "--name",
            name,
            "-e",
            mode,
            "--output",
            &spec_out,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let records = r.records();
    assert_eq!(records.len(), 2);
    let id_of = |name: &str| {
        records.iter().find(|x| x["name"] == name).unwrap()["run_id"].as_str().unwrap().to_string()
    };
    let (id_a, id_b) = (id_of("run-a"), id_of("run-b"));

    // Human form: one line per difference, exit 1.
    let (code, out, err) = text(&r.exprun(&["runs", "diff", "run-a", "run-b"], None));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("a: {id_a}")) && out.contains(&format!("b: {id_b}")), "{out}");
    assert!(out.contains("  env MODE: one -> two\n"), "{out}");
    assert!(
        out.contains(
            "  argv: sh -c 'echo 1 > /out/a; echo x > /out/b' -> sh -c 'echo 2 > /out/a; echo x > /out/b'\n"
        ),
        "{out}"
    );
    assert!(out.contains("  output /out: a changed (2 B, sha256:"), "{out}");
    assert!(!out.contains("output /out: b"), "b is the same in both runs: {out}");
    // Nothing that differs on every run shows up below the header.
    let body: String = out.lines().skip(2).collect::<Vec<_>>().join("\n");
    for noise in ["time.", "usage.", "cgroup.dirs", "run_id", "request.", "name", &id_a[..12], "capabilities"]
    {
        assert!(!body.contains(noise), "{noise:?} in {out}");
    }
    assert_eq!(body.lines().count(), 6, "context:, 3 lines, outcome:, 1 line: {out}");

    // JSON form.
    let (code, out, err) = text(&r.exprun(&["runs", "diff", &id_a[..8], "run-b", "--json"], None));
    assert_eq!(code, 1, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((d["a"].as_str(), d["b"].as_str()), (Some(id_a.as_str()), Some(id_b.as_str())));
    assert_eq!((d["same_context"].as_bool(), d["same_outcome"].as_bool()), (Some(false), Some(false)));
    let find = |group: &str, path: &str| -> Value {
        d[group]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {group}: {out}"))
            .clone()
    };
    let env = find("context", "spec.process.env.MODE");
    assert_eq!(
        (env["change"].as_str(), env["a"].as_str(), env["b"].as_str()),
        (Some("changed"), Some("one"), Some("two"))
    );
    assert_eq!(find("context", "spec.process.args")["b"][2], "echo 2 > /out/a; echo x > /out/b");
    let a = find("outcome", "outputs[/out].files[a]");
    assert_eq!(a["change"], "changed");
    assert_eq!(a["a"]["digest"], format!("sha256:{}", sha256_hex(&o1.join("a"))));
    assert_eq!(a["b"]["digest"], format!("sha256:{}", sha256_hex(&o2.join("a"))));

    // A run against itself: the same, exit 0.
    let (code, out, err) = text(&r.exprun(&["runs", "diff", "run-a", &id_a], None));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no differences in context") && out.contains("no differences in outcome"), "{out}");
    let (code, out, _) = text(&r.exprun(&["runs", "diff", "run-a", "run-a", "--json"], None));
    assert_eq!(code, 0);
    let same: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(same["context"], serde_json::json!([]));
    assert_eq!(same["same_outcome"], true);

    // in-toto: every output file is a subject with its sha256.
    let (code, out, err) = text(&r.exprun(&["runs", "export", "run-a", "--format", "in-toto"], None));
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let subjects = st["subject"].as_array().unwrap();
    let digest_of = |name: &str| {
        subjects.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no subject {name}: {out}"))
            ["digest"]["sha256"]
            .clone()
    };
    assert_eq!(digest_of("/out/a"), sha256_hex(&o1.join("a")));
    assert_eq!(digest_of("/out/b"), sha256_hex(&o1.join("b")));
    assert_eq!(subjects.len(), 2, "empty stdout and stderr are no subjects: {out}");
    assert_eq!(st["predicate"]["runDetails"]["metadata"]["invocationId"], id_a);
    let record_file = r.path().join("runs").join(&id_a).join("record.json");
    assert_eq!(st["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"], sha256_hex(&record_file));
    let manifest = records.iter().find(|x| x["run_id"] == id_a).unwrap()["image"]["manifest_digest"].clone();
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert_eq!(
        format!("sha256:{}", deps[0]["digest"]["sha256"].as_str().unwrap()),
        manifest.as_str().unwrap()
    );

    // in-toto into a file; no overwrite without --force.
    let statement = data.path().join("a.intoto.json");
    let st_path = statement.to_str().unwrap();
    let (code, _, err) =
        text(&r.exprun(&["runs", "export", "run-a", "--format", "in-toto", "-o", st_path], None));
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_slice::<Value>(&std::fs::read(&statement).unwrap()).unwrap(), st);

    // RO-Crate into a new directory.
    let crate_dir = data.path().join("crate");
    let dir = crate_dir.to_str().unwrap();
    let (code, _, err) =
        text(&r.exprun(&["runs", "export", "run-a", "--format", "ro-crate", "-o", dir], None));
    assert_eq!(code, 0, "{err}");
    let c: Value =
        serde_json::from_slice(&std::fs::read(crate_dir.join("ro-crate-metadata.json")).unwrap()).unwrap();
    let graph = c["@graph"].as_array().unwrap();
    let entity = |id: &str| graph.iter().find(|e| e["@id"] == id).unwrap_or_else(|| panic!("no {id} in {c}"));
    assert_eq!(entity("ro-crate-metadata.json")["about"]["@id"], "./");
    assert_eq!(entity("./")["conformsTo"]["@id"], "https://w3id.org/ro/wfrun/process/0.5");
    let action = entity(&format!("#run-{id_a}"));
    assert_eq!(action["@type"], "CreateAction");
    assert_eq!(action["actionStatus"]["@id"], "http://schema.org/CompletedActionStatus");
    let file_a = format!("file://{}", o1.join("a").display());
    assert!(action["result"].as_array().unwrap().iter().any(|x| x["@id"] == file_a.as_str()), "{action}");
    assert_eq!(entity(&file_a)["sha256"], sha256_hex(&o1.join("a")));
    assert_eq!(entity("#image")["sha256"].as_str(), manifest.as_str().unwrap().strip_prefix("sha256:"));
    let (code, _, err) =
        text(&r.exprun(&["runs", "export", "run-a", "--format", "ro-crate", "-o", dir], None));
    assert_eq!(code, 125);
    assert!(err.contains("--force"), "{err}");
    let (code, _, err) =
        text(&r.exprun(&["runs", "export", "run-a", "--format", "ro-crate", "-o", dir, "--force"], None));
    assert_eq!(code, 0, "{err}");

    // A crate written into the output directory names its files relatively.
    let (code, _, err) = text(
        &r.exprun(&["runs", "export", "run-a", "--format", "ro-crate", "-o", o1.to_str().unwrap()], None),
    );
    assert_eq!(code, 0, "{err}");
    let c: Value =
        serde_json::from_slice(&std::fs::read(o1.join("ro-crate-metadata.json")).unwrap()).unwrap();
    let action = c["@graph"].as_array().unwrap().iter().find(|e| e["@type"] == "CreateAction").unwrap();
    assert_eq!(action["result"], serde_json::json!([{"@id": "a"}, {"@id": "b"}]));

    r.assert_no_leftovers();
}
