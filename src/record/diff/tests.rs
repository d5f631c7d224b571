//! The diff on sample records: what each kind of difference looks like, what
//! is ignored, and how much a large difference lists.

use serde_json::{json, Value};

use super::*;
use crate::record::files::TreeDigest;

/// A complete record as JSON, for tests here and in `export`.
pub(crate) fn sample_record(id: &str) -> Value {
    let d = |s: &str| crate::digest::Digest::of_bytes(s.as_bytes()).to_string();
    let file = |path: &str, content: &str| json!({"path": path, "kind": "file", "size": content.len(), "digest": d(content), "mode": 0o644});
    json!({
        "schema": crate::record::RECORD_SCHEMA,
        "run_id": id,
        "name": null,
        "status": "exited",
        "exprun": {"version": "0.1.0", "binary_digest": d("exprun")},
        "command_line": ["exprun", "run", "-e", "A=1", "busybox:latest", "--", "sh", "-c", "echo 1 > /out/a"],
        "image": {
            "reference": "busybox:latest",
            "name": "busybox:latest",
            "manifest_digest": d("manifest"),
            "config_digest": d("config"),
            "platform": "linux/amd64",
            "layers": [{"digest": d("layer"), "diff_id": d("diff"), "media_type": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 10}]
        },
        "executable": "/bin/sh",
        "spec": {
            "ociVersion": "1.2.0",
            "root": {"path": format!("/r/containers/{id}/rootfs"), "readonly": false},
            "hostname": "exprun",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": ["sh", "-c", "echo 1 > /out/a"],
                "env": ["PATH=/bin", "A=1", "HF_TOKEN=<redacted sha256:1>"],
                "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"]}
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/in", "options": ["rbind", "ro"]},
                {"destination": "/out", "type": "bind", "source": "/tmp/o1", "options": ["rbind", "rw"]}
            ]
        },
        "inputs": [{"source": "/in", "destination": "/data", "tree": {
            "digest": d("in-tree"), "files": 1, "bytes": 4, "entries": [file("x.csv", "1,2\n")]}}],
        "outputs": [{"source": "/tmp/o1", "destination": "/out", "tree": {
            "digest": d("out-tree"), "files": 2, "bytes": 4,
            "entries": [file("a", "1\n"), file("b", "x\n"), {"path": "sub", "kind": "dir", "mode": 0o755}]}}],
        "cgroup": {
            "version": "v2",
            "dirs": {"unified": format!("/sys/fs/cgroup/exprun-{id}")},
            "limits": {"memory_bytes": null, "cpu_quota_us": null, "pids_max": 100}
        },
        "host": {
            "kernel_release": "6.1.0", "kernel_version": "#1 SMP", "arch": "x86_64", "cpu_model": "Example CPU",
            "cpu_flags_digest": d("flags"), "cpus_online": 2, "memory_bytes": 1024, "os": "Debian",
            "cgroup_mode": "v2", "cgroup_controllers": ["cpu", "memory"]
        },
        "time": {"created": "2026-01-01T00:00:00Z", "started": "2026-01-01T00:00:01Z",
                 "ended": "2026-01-01T00:00:02Z", "wall_seconds": 0.1},
        "usage": {"peak_memory_bytes": 1, "oom_kills": 0, "cpu_user_us": 5, "cpu_system_us": 6,
                  "pids_limit_hits": 0, "init_max_rss_kib": 7},
        "exit": {"code": 0, "signal": null, "oom_killed": false},
        "stdout": {"digest": d(""), "bytes": 0},
        "stderr": {"digest": d("warning\n"), "bytes": 8},
        "signals": []
    })
}

fn file(path: &str, content: &str, mode: u32) -> Value {
    json!({
        "path": path, "kind": "file", "size": content.len(),
        "digest": crate::digest::Digest::of_bytes(content.as_bytes()).to_string(), "mode": mode
    })
}

fn tree(entries: Vec<Value>) -> Value {
    // The tree digest only needs to differ when the entries do.
    let d = crate::digest::Digest::of_bytes(Value::Array(entries.clone()).to_string().as_bytes());
    json!({"digest": d.to_string(), "files": entries.len(), "bytes": 0, "entries": entries})
}

fn record(id: &str) -> Value {
    sample_record(id)
}

fn texts(list: &[Change]) -> Vec<&str> {
    list.iter().map(|c| c.text.as_str()).collect()
}

#[test]
fn a_record_equals_itself_and_run_specific_fields_are_ignored() {
    let a = record("1111");
    let mut b = record("2222");
    b["time"]["wall_seconds"] = json!(7.5);
    b["usage"]["peak_memory_bytes"] = json!(99);
    b["signals"] = json!([{"signal": "SIGTERM"}]);
    b["name"] = json!("other");
    b["command_line"] = json!(["exprun", "--root", "/elsewhere", "run", "img"]);
    b["host"]["boot_id"] = json!("abc");
    b["replay_of"] = json!("1111");
    // Sets serialised in any order.
    b["spec"]["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_KILL"]);
    b["host"]["cgroup_controllers"] = json!(["memory", "cpu"]);
    let d = diff_values(&a, &b, None);
    assert!(d.same(), "{}", d.render());
    assert_eq!((d.a.as_str(), d.b.as_str()), ("1111", "2222"));
    assert!(d.render().contains("no differences in context"));
    assert!(d.render().contains("no differences in outcome"));
}

#[test]
fn context_differences_are_named_one_line_each() {
    let a = record("1111");
    let mut b = record("2222");
    b["spec"]["process"]["args"] = json!(["sh", "-c", "echo 2 > /out/a"]);
    b["spec"]["process"]["env"] = json!(["PATH=/bin", "A=2", "NEW=x", "HF_TOKEN=<redacted sha256:2>"]);
    b["spec"]["process"]["cwd"] = json!("/work");
    b["spec"]["mounts"][2]["source"] = json!("/tmp/o2");
    b["spec"]["mounts"][2]["options"] = json!(["rbind", "ro"]);
    let other = crate::digest::Digest::of_bytes(b"other");
    b["image"]["manifest_digest"] = json!(other.to_string());
    b["host"]["kernel_release"] = json!("6.18.0");
    b["cgroup"]["limits"]["memory_bytes"] = json!(1048576);
    b["inputs"][0]["tree"] = tree(vec![file("x.csv", "1,3\n", 0o644)]);
    b["determinism"] = json!({"pins": {"SOURCE_DATE_EPOCH": "0"}});
    let d = diff_values(&a, &b, None);
    let t = texts(&d.context);
    for want in [
        "image.manifest_digest: sha256:",
        "argv: sh -c 'echo 1 > /out/a' -> sh -c 'echo 2 > /out/a'",
        "env A: 1 -> 2",
        "env NEW: added (NEW=x)",
        "env HF_TOKEN: <redacted sha256:1> -> <redacted sha256:2>",
        "spec.process.cwd: / -> /work",
        "cgroup.limits.memory_bytes: none -> 1048576",
        "spec.mounts[/out].source: /tmp/o1 -> /tmp/o2",
        "spec.mounts[/out].options: removed rw",
        "spec.mounts[/out].options: added ro",
        "input /data: x.csv changed (4 B, sha256:",
        "host.kernel_release: 6.1.0 -> 6.18.0",
        "determinism.pins.SOURCE_DATE_EPOCH: none -> 0",
    ] {
        assert!(t.iter().any(|l| l.starts_with(want)), "missing {want:?} in {t:#?}");
    }
    // Grouped: the image first, the host after the spec.
    assert!(t[0].starts_with("image."), "{t:#?}");
    let pos = |p: &str| t.iter().position(|l| l.starts_with(p)).unwrap_or(usize::MAX);
    assert!(pos("argv") < pos("env A") && pos("env A") < pos("host."), "{t:#?}");
    assert!(d.outcome.is_empty() && !d.same_context && d.same_outcome);
    let env = d.context.iter().find(|c| c.path == "spec.process.env.A").unwrap();
    assert_eq!((env.change, &env.a, &env.b), (ChangeKind::Changed, &json!("1"), &json!("2")));
    // The JSON form parses back with the documented keys.
    let j = serde_json::to_value(&d).unwrap();
    for k in ["a", "b", "context", "outcome", "same_context", "same_outcome"] {
        assert!(j.get(k).is_some(), "{k}");
    }
    assert_eq!(j["context"][0]["change"], "changed");
}

#[test]
fn outcome_differences_per_output_file() {
    let a = record("1111");
    let mut b = record("2222");
    b["outputs"][0]["tree"] = tree(vec![file("a", "10\n", 0o600), file("c", "new\n", 0o644)]);
    b["status"] = json!("killed");
    b["exit"] = json!({"code": 137, "signal": "SIGKILL", "oom_killed": true});
    b["stdout"] = json!({"digest": "sha256:53c234e5e8472b6ac51c1ae1cab3fe06fad053beb8ebfd8977b010655bfdd3c3", "bytes": 2});
    let d = diff_values(&a, &b, None);
    let t = texts(&d.outcome);
    for want in [
        "status: exited -> killed",
        "exit.code: 0 -> 137",
        "exit.signal: none -> SIGKILL",
        "exit.oom_killed: false -> true",
        "stdout: 0 B sha256:e3b0c44298fc -> 2 B sha256:53c234e5e847",
        "output /out: a changed (2 B -> 3 B), mode 0644 -> 0600",
        "output /out: b removed (was 2 B)",
        "output /out: c added (4 B)",
    ] {
        assert!(t.contains(&want), "missing {want:?} in {t:#?}");
    }
    assert!(d.same_context && !d.same_outcome && !d.same());
    let c = d.outcome.iter().find(|c| c.path == "outputs[/out].files[c]").unwrap();
    assert_eq!(c.change, ChangeKind::Added);
    assert_eq!(c.b["size"], 4);
    assert!(c.a.is_null());
}

#[test]
fn missing_trees_and_mounts_on_one_side() {
    let a = record("1111");
    let mut b = record("2222");
    b["outputs"][0]["tree"] = Value::Null;
    b["outputs"][0]["error"] = json!("permission denied");
    b["spec"]["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/v", "type": "bind", "source": "/h"}));
    b["inputs"] = json!([]);
    let d = diff_values(&a, &b, None);
    let all: Vec<&str> = texts(&d.context).into_iter().chain(texts(&d.outcome)).collect();
    assert!(
        all.iter().any(|l| l.starts_with("output /out: ") && l.ends_with("no digest (permission denied)")),
        "{all:#?}"
    );
    assert!(all.contains(&"mount /v: added (bind /h)"), "{all:#?}");
    assert!(all.contains(&"input /data: only in a"), "{all:#?}");
}

#[test]
fn typed_records_diff_through_serde() {
    let ra: RunRecord = serde_json::from_value(record("1111")).unwrap();
    let mut vb = record("2222");
    vb["host"]["cpus_online"] = json!(64);
    let rb: RunRecord = serde_json::from_value(vb).unwrap();
    assert!(diff(ra.clone(), ra.clone(), None).unwrap().same());
    let d = diff(ra.clone(), rb, None).unwrap();
    assert_eq!(texts(&d.context), ["host.cpus_online: 2 -> 64"], "{}", d.render());
    assert!(d.same_outcome);
    let ta: TreeDigest = serde_json::from_value(tree(vec![file("a", "1", 0o644)])).unwrap();
    assert!(tree_changes(&ta, &ta.clone()).is_empty());
}

#[test]
fn lists_of_named_objects_are_matched_by_name() {
    let mut a = record("1111");
    a["determinism"] =
        json!({"pins": [{"name": "tz", "value": "TZ=UTC"}, {"name": "umask", "value": "022"}]});
    a["spec"]["process"]["rlimits"] =
        json!([{"type": "RLIMIT_CORE", "soft": 0}, {"type": "RLIMIT_NOFILE", "soft": 1024}]);
    let mut b = record("2222");
    b["determinism"] = a["determinism"].clone();
    b["determinism"]["pins"] = json!([{"name": "umask", "value": "077"}, {"name": "tz", "value": "TZ=UTC"}]);
    b["spec"]["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 4096}]);
    b["request"] = json!({"name": "other"});
    b["drift"] = json!([{"item": "host.kernel_release"}]);
    let d = diff_values(&a, &b, None);
    assert_eq!(
        texts(&d.context),
        [
            r#"spec.process.rlimits[RLIMIT_CORE]: removed {"soft":0,"type":"RLIMIT_CORE"}"#,
            "spec.process.rlimits[RLIMIT_NOFILE].soft: 1024 -> 4096",
            "determinism.pins[umask].value: 022 -> 077",
        ]
    );
}
