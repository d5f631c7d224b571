//! A hostile bundle that joins a namespace by a path that is not one: a
//! regular file, a directory, `/proc/self/ns/../..` (that is, /proc), or a
//! symlink swapped from a namespace file of the right type to one of another
//! type. Each is refused by name before anything is made; setns would only
//! fail after the clone, with a bare EINVAL.

use crate::common::bundle::{bundle, oci, shim};
use crate::host::{Marker, Snapshot};
use std::os::unix::fs::MetadataExt as _;

#[test]
fn joining_a_namespace_by_a_path_that_is_not_one_is_refused_by_name() {
    let Some(t) = shim("joining_a_namespace_by_a_path_that_is_not_one_is_refused_by_name") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let regular = work.join("regular");
    std::fs::write(&regular, "not a namespace\n").unwrap();
    let dir = work.join("dir");
    std::fs::create_dir(&dir).unwrap();
    let link = work.join("ns-link");
    let cfg_path = b.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let log = work.join("log.json");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // (config type, /proc/self/ns name, a namespace of another type)
    for (kind, own, other) in [("mount", "mnt", "net"), ("pid", "pid", "mnt"), ("network", "net", "uts")] {
        let cases = [
            (regular.display().to_string(), "is not a namespace"),
            (dir.display().to_string(), "is not a namespace"),
            ("/proc/self/ns/../..".to_string(), "is not a namespace (/proc)"),
            (link.display().to_string(), "is a namespace of another type"),
        ];
        for (path, says) in cases {
            // The link first names a namespace of the right type (of a live
            // process), then is swapped to another type's before create.
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("/proc/self/ns/{own}"), &link).unwrap();
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(format!("/proc/self/ns/{other}"), &link).unwrap();
            let mut cfg = base.clone();
            let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
            nss.retain(|n| n["type"] != kind);
            nss.push(serde_json::json!({"type": kind, "path": path}));
            std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
            let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "join"]);
            assert_eq!(code, 125, "{kind} {path} was not refused: {out}\n{err}");
            let named = format!("({kind}) path source {path}: {says}");
            assert!(
                err.contains(&named) && err.contains(&format!("/proc/<pid>/ns/{own}")),
                "{kind} {path}: {err}"
            );
        }
    }
    Snapshot::take(&marker, &[r.path()])
        .assert_same_as(&before, "joining a namespace by a path that is not one");
    r.assert_no_leftovers();
}

/// A symlink flipped, while exprun plans and starts, between the network
/// namespace of a live process and a mount namespace file: the planner
/// checks one target, spawn may open the other. spawn joins only the
/// namespace the plan checked (same device and inode), so every run either
/// runs in the checked network namespace or is refused by name; none reaches
/// setns with another file (a bare EINVAL here; the same swap of a mount
/// namespace path to the host's would have built the root in the host's).
#[test]
fn a_namespace_path_swapped_after_planning_is_not_joined() {
    let Some(t) = shim("a_namespace_path_swapped_after_planning_is_not_joined") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    // A network namespace of its own to join: `unshare --net sleep`.
    let mut holder = std::process::Command::new("unshare").args(["--net", "sleep", "300"]).spawn().unwrap();
    let net = format!("/proc/{}/ns/net", holder.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&net).map(|m| m.ino()).ok()
        == std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok()
    {
        assert!(std::time::Instant::now() < deadline, "unshare did not make a network namespace");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let link = work.join("ns-link");
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "network");
    nss.push(serde_json::json!({"type": "network", "path": link}));
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    std::os::unix::fs::symlink(&net, &link).unwrap();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, link, net) = (stop.clone(), link.clone(), net.clone());
        std::thread::spawn(move || {
            let tmp = link.with_extension("new");
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let target = if flip { "/proc/self/ns/mnt".to_string() } else { net.clone() };
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&target, &tmp).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
                flip = !flip;
            }
        })
    };
    let log = work.join("log.json");
    let (mut ran, mut refused_by_plan, mut refused_by_spawn) = (0, 0, 0);
    for i in 0..80 {
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), &format!("swap{i}")]);
        if code == 0 {
            ran += 1;
        } else if code == 125 && err.contains("is a namespace of another type") {
            refused_by_plan += 1;
        } else if code == 125
            && err.contains("not the network namespace checked when the container was planned")
        {
            refused_by_spawn += 1;
        } else {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("run {i}: neither ran nor was refused by name (exit {code}): {out}\n{err}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    eprintln!("ran {ran}, refused by the plan {refused_by_plan}, refused at the join {refused_by_spawn}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a namespace path swapped after planning");
    r.assert_no_leftovers();
}
