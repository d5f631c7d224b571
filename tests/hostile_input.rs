#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Broken and hostile input the image store and the runc-compatible verbs must
//! refuse with a clear error (exit 125), leaving nothing behind.

mod common;

use std::process::Command;

use common::bundle::{bundle, oci, shim};
use common::{fixture_dir, privileged, TestRoot};
use serde_json::json;

/// A change to a config.json.
type Change = dyn Fn(&mut serde_json::Value);

#[test]
fn broken_configs_and_ids_are_refused_by_name() {
    let Some(s) = shim("broken_configs_and_ids_are_refused_by_name") else { return };
    let work = s.work.path();
    let b = bundle(work, &["true"]);
    let cfg_path = b.join("config.json");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let log = work.join("log.json");
    let huge = "x".repeat(4 << 20);
    let cases: Vec<(&str, Box<Change>, &str)> = vec![
        ("not json", Box::new(|_| {}), "not a valid OCI runtime config"),
        ("bad type", Box::new(|c| c["process"]["args"] = json!("true")), "not a valid OCI runtime config"),
        (
            "relative cwd",
            Box::new(|c| c["process"]["cwd"] = json!("tmp")),
            "process cwd: tmp is not absolute",
        ),
        (
            "relative mount",
            Box::new(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}))
            }),
            "mount data",
        ),
        ("no args", Box::new(|c| c["process"]["args"] = json!([])), "process args: no command to run"),
        (
            "bad env",
            Box::new(|c| c["process"]["env"] = json!(["NOEQUALS"])),
            "\"NOEQUALS\" is not NAME=VALUE",
        ),
        (
            "gigantic env",
            Box::new(move |c| c["process"]["env"] = json!([format!("BIG={huge}")])),
            "over the kernel's limit",
        ),
        (
            "host sysctl",
            Box::new(|c| c["linux"]["sysctl"] = json!({"kernel.panic": "1"})),
            "kernel.panic is not in a namespace of the container's own",
        ),
    ];
    for (i, (what, change, want)) in cases.iter().enumerate() {
        if *what == "not json" {
            std::fs::write(&cfg_path, "{ nope").unwrap();
        } else {
            let mut c = good.clone();
            change(&mut c);
            std::fs::write(&cfg_path, serde_json::to_vec(&c).unwrap()).unwrap();
        }
        let id = format!("bad-{i}");
        let (code, _, err) = oci(&s.r, &log, &["create", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(code, 125, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        let (code, _, _) = oci(&s.r, &log, &["state", &id]);
        assert_ne!(code, 0, "{what}: nothing is left of a refused create");
    }

    // Unknown fields are ignored, as the runtime spec requires.
    let mut c = good.clone();
    c["process"]["exprunTestUnknown"] = json!({"x": 1});
    c["somethingNew"] = json!(true);
    std::fs::write(&cfg_path, serde_json::to_vec(&c).unwrap()).unwrap();
    let (code, _, err) = oci(&s.r, &log, &["run", "--bundle", b.to_str().unwrap(), "unknown-fields"]);
    assert_eq!(code, 0, "{err}");

    for id in ["a/b", "..", "x/../y", ""] {
        let (code, _, err) = oci(&s.r, &log, &["create", "--bundle", b.to_str().unwrap(), id]);
        assert_eq!(code, 125, "id {id:?}: {err}");
        assert!(err.contains(&format!("container id {id:?}: use letters, digits")), "id {id:?}: {err}");
    }
    s.r.assert_no_leftovers();
}

#[test]
fn an_import_onto_a_full_disk_leaves_nothing_half_made() {
    if !privileged("an_import_onto_a_full_disk_leaves_nothing_half_made") {
        return;
    }
    let r = TestRoot::new();
    // A 1 MiB filesystem: the fixture's blobs fit, its unpacked layers do not.
    let store = r.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let mount = |args: &[&str]| assert!(Command::new(args[0]).args(&args[1..]).status().unwrap().success());
    mount(&["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", store.to_str().unwrap()]);
    let out =
        r.exprun(&["image", "import", "--name", "busybox:latest"], Some(&fixture_dir().join("busybox-oci")));
    let listed = r.exprun(&["image", "ls", "--json"], None);
    let tmp = walk(&store.join("tmp"));
    let layers = walk(&store.join("layers"));
    mount(&["umount", store.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, json!([]), "no image is named after a failed import");
    assert!(tmp.is_empty(), "staging left behind: {tmp:?}");
    assert!(layers.is_empty(), "a layer was left half-unpacked: {layers:?}");
    r.assert_no_leftovers();
}

/// Every path under `dir`, relative, directories with a trailing `/`.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out
}

#[test]
fn a_layer_that_expands_past_the_configured_limit_is_refused() {
    if !privileged("a_layer_that_expands_past_the_configured_limit_is_refused") {
        return;
    }
    let r = TestRoot::new();
    let fixture = fixture_dir().join("busybox-oci");
    for (args, want) in [
        (&["--max-layer-size", "64k"][..], "more than 65536 bytes of content"),
        (&["--max-layer-entries", "3"][..], "more than 3 entries"),
    ] {
        let mut full = vec!["image", "import", "--name", "busybox:latest"];
        full.extend_from_slice(args);
        let out = r.exprun(&full, Some(&fixture));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want) && err.contains(args[0]), "{args:?}: {err}");
        let listed = r.exprun(&["image", "ls", "--json"], None);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(), json!([]));
    }
    let out = r.exprun(&["image", "import", "--max-layer-size", "lots"], Some(&fixture));
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-layer-size"));
    // The defaults take the fixture.
    let out = r.exprun(&["image", "import", "--name", "busybox:latest"], Some(&fixture));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    r.assert_no_leftovers();
}
