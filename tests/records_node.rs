#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Records of pod containers kept where the node configuration says, outside
//! the state root containerd's shim passes (a tmpfs that goes with the
//! container), with their pod's names, filtered by `runs ls`, and bounded by
//! the retention policy.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::bundle::{bundle, parent_cgroup, shim, Shim};
use common::TestRoot;
use serde_json::Value;

/// The node configuration file and the records root it names, in `work`.
fn node_config(work: &Path, retention: &str) -> (PathBuf, PathBuf) {
    let node = work.join("node");
    let config = work.join("exprun.toml");
    let text = format!("[records]\nroot = \"{}\"\n\n[records.retention]\n{retention}\n", node.display());
    std::fs::write(&config, text).unwrap();
    (config, node)
}

/// `exprun --root ROOT ARGS` with `EXPRUN_CONFIG=config`: (status, stdout,
/// stderr). Output goes through files: a container's init keeps create's stdio.
fn exprun(root: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    use std::io::{Read, Seek};
    let (mut out, mut err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let status = std::process::Command::new(common::exprun_bin())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("EXPRUN_CONFIG", config)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    let read = |f: &mut std::fs::File| {
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    (status.code().unwrap_or(-1), read(&mut out), read(&mut err))
}

/// The CRI annotations containerd puts on a container of pod `pod` (the
/// sandbox when `container` is `None`).
fn set_pod(b: &Path, id: &str, pod: &str, ns: &str, container: Option<&str>) {
    let path = b.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut a = serde_json::json!({
        "io.kubernetes.cri.sandbox-id": format!("sandbox-of-{pod}"),
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": ns,
        "io.kubernetes.cri.container-type": if container.is_some() { "container" } else { "sandbox" },
    });
    if let Some(c) = container {
        a["io.kubernetes.cri.container-name"] = c.into();
    }
    config["annotations"] = a;
    config["linux"]["cgroupsPath"] = format!("/{}/{id}", parent_cgroup()).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// create, start, reap and delete container `id`, as containerd's shim does.
fn pod_container(t: &Shim, config: &Path, id: &str, pod: &str, ns: &str, container: Option<&str>) {
    let b = t.work.path().join("bundle");
    set_pod(&b, id, pod, ns, container);
    let root = t.r.path();
    let pid_file = t.work.path().join(format!("{id}.pid"));
    let (code, _, err) = exprun(
        root,
        config,
        &["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id],
    );
    assert_eq!(code, 0, "create {id}: {err}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let (code, _, err) = exprun(root, config, &["start", id]);
    assert_eq!(code, 0, "start {id}: {err}");
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let (code, _, err) = exprun(root, config, &["delete", id]);
    assert_eq!(code, 0, "delete {id}: {err}");
}

/// The run ids `runs ls --json ARGS` lists in the records root.
fn ls(node: &Path, config: &Path, args: &[&str]) -> Vec<String> {
    let (code, out, err) = exprun(node, config, &[&["runs", "ls", "--json"], args].concat());
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<String> = rows.iter().map(|r| r["run_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn record(node: &Path, id: &str) -> Option<Value> {
    let bytes = std::fs::read(node.join("runs").join(id).join("record.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn pod_records_outlive_the_state_root_with_their_names_and_runs_ls_filters_by_them() {
    let Some(t) = shim("pod_records_outlive_the_state_root_with_their_names_and_runs_ls_filters_by_them")
    else {
        return;
    };
    bundle(t.work.path(), &["true"]);
    let (config, node) = node_config(t.work.path(), "");
    pod_container(&t, &config, "web-sandbox", "web", "prod", None);
    pod_container(&t, &config, "web-app", "web", "prod", Some("app"));
    pod_container(&t, &config, "store-db", "store", "prod", Some("db"));
    pod_container(&t, &config, "dev-app", "lab", "dev", Some("app"));
    // A bundle that is not a pod's keeps its record in the state root.
    let b = t.work.path().join("bundle");
    let path = b.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["annotations"] = serde_json::json!({"io.kubernetes.cri.container-name": "worker"});
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    let (code, _, err) = exprun(t.r.path(), &config, &["create", "-b", b.to_str().unwrap(), "plain"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = exprun(t.r.path(), &config, &["delete", "--force", "plain"]);
    assert_eq!(code, 0, "{err}");
    assert!(t.r.path().join("runs/plain/record.json").is_file());
    assert!(!node.join("runs/plain").exists());

    // The shim's state root goes with the pod; the records stay.
    assert!(!t.r.path().join("runs/web-app").exists(), "a pod record in the state root");
    std::fs::remove_dir_all(t.r.path().join("containers")).unwrap();
    std::fs::remove_dir_all(t.r.path().join("runs")).unwrap();
    let r = record(&node, "web-app").expect("the record of web-app in the records root");
    assert_eq!(
        r["kubernetes"],
        serde_json::json!({"pod": "web", "namespace": "prod", "container": "app",
            "container_type": "container", "sandbox_id": "sandbox-of-web"})
    );
    assert_eq!(record(&node, "web-sandbox").unwrap()["kubernetes"]["container_type"], "sandbox");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(node.join("runs")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    assert_eq!(ls(&node, &config, &["--pod", "web"]), ["web-app", "web-sandbox"]);
    assert_eq!(ls(&node, &config, &["--namespace", "prod"]), ["store-db", "web-app", "web-sandbox"]);
    assert_eq!(ls(&node, &config, &["--container", "app"]), ["dev-app", "web-app"]);
    assert_eq!(ls(&node, &config, &["--container", "app", "--namespace", "dev"]), ["dev-app"]);
    assert!(ls(&node, &config, &["--pod", "nope"]).is_empty());
    assert_eq!(ls(&node, &config, &[]).len(), 4);
    let (code, out, _) = exprun(&node, &config, &["runs", "ls", "--pod", "store"]);
    assert_eq!(code, 0);
    assert!(out.contains("store-db") && !out.contains("web-app"), "{out}");
    let (code, out, err) = exprun(&node, &config, &["runs", "show", "web-app"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pod:        prod/web container app (container), sandbox sandbox-of-web"), "{out}");
}

#[test]
fn retention_by_count_removes_the_oldest_and_never_a_live_containers_record() {
    let Some(t) = shim("retention_by_count_removes_the_oldest_and_never_a_live_containers_record") else {
        return;
    };
    bundle(t.work.path(), &["true"]);
    let (config, node) = node_config(t.work.path(), "max_count = 2");
    pod_container(&t, &config, "p1", "web", "prod", Some("a"));
    // A live container of the same id as the oldest record.
    let b = t.work.path().join("bundle");
    set_pod(&b, "p1", "web", "prod", Some("a"));
    let (code, _, err) = exprun(t.r.path(), &config, &["create", "-b", b.to_str().unwrap(), "p1"]);
    assert_eq!(code, 0, "{err}");
    pod_container(&t, &config, "p2", "web", "prod", Some("b"));
    pod_container(&t, &config, "p3", "web", "prod", Some("c"));
    assert!(record(&node, "p1").is_some(), "the record of a live container was removed");
    assert!(record(&node, "p2").is_none(), "the oldest record that is not live stays");
    assert_eq!(ls(&node, &config, &[]), ["p1", "p3"]);
    let (code, _, err) = exprun(t.r.path(), &config, &["delete", "--force", "p1"]);
    assert_eq!(code, 0, "{err}");
    pod_container(&t, &config, "p4", "web", "prod", Some("d"));
    assert_eq!(ls(&node, &config, &[]), ["p1", "p4"], "p3 is now the oldest");
    t.r.assert_no_leftovers();
}

#[test]
fn retention_by_age_and_size_and_on_gc() {
    let Some(t) = shim("retention_by_age_and_size_and_on_gc") else { return };
    bundle(t.work.path(), &["true"]);
    let (config, node) = node_config(t.work.path(), "max_age = \"2s\"");
    pod_container(&t, &config, "old", "web", "prod", Some("a"));
    std::thread::sleep(std::time::Duration::from_millis(3100));
    pod_container(&t, &config, "new", "web", "prod", Some("a"));
    assert_eq!(ls(&node, &config, &[]), ["new"], "a record older than max_age stays");

    // By size: room for two records and a half.
    let size = std::fs::metadata(node.join("runs/new/record.json")).unwrap().len();
    let (config, _) = node_config(t.work.path(), &format!("max_size = {}", size * 5 / 2));
    pod_container(&t, &config, "s1", "web", "prod", Some("a"));
    pod_container(&t, &config, "s2", "web", "prod", Some("a"));
    assert_eq!(ls(&node, &config, &[]), ["s1", "s2"], "over max_size");

    // exprun gc applies the policy of the configuration it finds.
    let (config, _) = node_config(t.work.path(), "max_count = 1");
    let (code, out, err) = exprun(&node, &config, &["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed the record of pod container s1 (retention)"), "{out}");
    assert_eq!(ls(&node, &config, &[]), ["s2"]);
    t.r.assert_no_leftovers();
}

#[test]
fn a_bad_node_configuration_is_refused_naming_file_key_and_value() {
    let r = TestRoot::new();
    let work = tempfile::tempdir().unwrap();
    let (config, _) = node_config(work.path(), "max_age = \"soon\"");
    let b = work.path().join("no-bundle");
    for args in [&["create", "-b", b.to_str().unwrap(), "c"][..], &["delete", "c"], &["gc"]] {
        let (code, _, err) = exprun(r.path(), &config, args);
        assert_eq!(code, 125, "{args:?}: {err}");
        let want = format!("node configuration {}: records.retention.max_age = \"soon\"", config.display());
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    let missing = work.path().join("missing.toml");
    let (code, _, err) = exprun(r.path(), &missing, &["gc"]);
    assert_eq!(code, 125);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!r.path().join("containers").exists());
}
