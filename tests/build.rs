#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun build` as root with the s2i builder fixture: the built image runs the
//! assembled app, builds are reproducible, the layer holds only what assemble
//! wrote, the build is a recorded run, and failures leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{pinned, privileged, TestRoot};

/// A source directory for the fixture builder: `app.sh` is what its run script
/// starts, `build.sh` what its assemble script runs after copying the source.
fn source(app: &str, build: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("exprun-build-src-").tempdir().unwrap();
    std::fs::write(d.path().join("app.sh"), app).unwrap();
    std::fs::write(d.path().join("message.txt"), "assembled from source\n").unwrap();
    if !build.is_empty() {
        std::fs::write(d.path().join("build.sh"), build).unwrap();
    }
    d
}

const APP: &str = "echo \"app says: $(cat message.txt), built by $(cat built-by)\"\n";
const BUILD: &str = "id -u > built-by\nmkdir -p /opt/app-root/lib && echo lib > /opt/app-root/lib/x\n";

/// `exprun build ARGS`: (exit code, stdout, stderr).
fn build(r: &TestRoot, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let out = r.exprun(&full, None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Build `src` with the fixture builder as `tag`; returns the manifest digest.
fn build_ok(r: &TestRoot, src: &Path, tag: &str, extra: &[&str]) -> String {
    let src = src.to_str().unwrap();
    let mut args = vec!["--builder", "builder:latest", "--source", src, "-t", tag];
    args.extend_from_slice(extra);
    let (code, out, err) = build(r, &args);
    assert_eq!(code, 0, "build failed: {err}");
    let line = out.lines().last().unwrap_or_default();
    let digest = line.strip_prefix(&format!("built {tag} ")).unwrap_or_else(|| panic!("{out}"));
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{out}");
    digest.to_string()
}

fn inspect(r: &TestRoot, reference: &str) -> serde_json::Value {
    let out = r.exprun(&["image", "inspect", reference], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The names the image store knows.
fn image_names(r: &TestRoot) -> Vec<String> {
    let out = r.exprun(&["image", "ls", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().filter_map(|i| i["name"].as_str().map(str::to_string)).collect()
}

/// The entries of the image's top layer: (path, mtime, uid, kind).
fn top_layer(r: &TestRoot, reference: &str) -> Vec<(String, u64, u64, char)> {
    let info = inspect(r, reference);
    let top = info["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(top["media_type"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(top["digest"], top["diff_id"], "stored uncompressed");
    let hex = top["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let blob = r.path().join("store/blobs/sha256").join(hex);
    let mut a = tar::Archive::new(std::fs::File::open(blob).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            assert!(h.username_bytes().is_none_or(<[u8]>::is_empty));
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.entry_type().as_byte() as char,
            )
        })
        .collect()
}

#[test]
fn a_built_image_runs_the_assembled_app_and_the_build_is_recorded() {
    if !privileged("a_built_image_runs_the_assembled_app_and_the_build_is_recorded") {
        return;
    }
    let r = TestRoot::with_builder();
    let src = source(APP, BUILD);
    let digest = build_ok(&r, src.path(), "app:1", &[]);

    let (code, out, err) = r.run(&["app:1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "app says: assembled from source, built by 1001\n");

    let info = inspect(&r, "app:1");
    assert_eq!(info["manifest_digest"], digest.as_str());
    assert_eq!(info["created"], "1970-01-01T00:00:00Z");
    let cfg = &info["config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["User"], "1001");
    assert_eq!(cfg["WorkingDir"], "/opt/app-root/src");
    let labels = &cfg["Labels"];
    assert_eq!(labels["io.openshift.s2i.build.image"], pinned("BUILDER_MANIFEST_DIGEST").as_str());
    assert!(labels["dev.exprun.build.source-digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(labels["io.openshift.s2i.scripts-url"], "image:///usr/libexec/s2i");
    // The builder's layers, then one more.
    let layers = info["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert_eq!(layers[2]["diff_id"], pinned("LAYER3_DIFF_ID").as_str());

    // The assemble step is an ordinary recorded run of the builder, and the
    // store names the build's directory (after the run id) as the source.
    let rec =
        r.records().into_iter().find(|x| x["image"]["manifest_digest"] == pinned("BUILDER_MANIFEST_DIGEST"));
    let rec = rec.expect("a record of the assemble run");
    assert_eq!(rec["status"], "exited");
    assert_eq!(rec["exit"]["code"], 0);
    assert_eq!(rec["spec"]["process"]["args"], serde_json::json!(["/usr/libexec/s2i/assemble"]));
    assert_eq!(rec["spec"]["process"]["user"]["uid"], 1001);
    assert!(rec["command_line"].as_array().unwrap().iter().any(|a| a == "build"), "{}", rec["command_line"]);
    let run_id = rec["run_id"].as_str().unwrap();
    assert!(info["source"].as_str().unwrap().contains(run_id), "{}", info["source"]);
    let env = rec["spec"]["process"]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "SOURCE_DATE_EPOCH=0"), "{env:?}");
    assert!(!std::fs::read_to_string(r.path().join("runs").join(run_id).join("stdout")).unwrap().is_empty());
    r.assert_no_leftovers();
}

#[test]
fn builds_are_reproducible_and_one_source_byte_changes_the_digest() {
    if !privileged("builds_are_reproducible_and_one_source_byte_changes_the_digest") {
        return;
    }
    let r = TestRoot::with_builder();
    let src = source(APP, BUILD);
    let first = build_ok(&r, src.path(), "app:1", &[]);
    let again = build_ok(&r, src.path(), "app:2", &[]);
    assert_eq!(first, again, "the same source and builder, built twice");

    // Another store, another copy of the source with other timestamps, and
    // SOURCE_DATE_EPOCH from the environment instead of the option.
    let fresh = TestRoot::with_builder();
    let copy = source(APP, BUILD);
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(copy.path().join("message.txt"), "assembled from source\n").unwrap();
    assert_eq!(build_ok(&fresh, copy.path(), "elsewhere/app:9", &[]), first, "a fresh store");
    let epoch = build_ok(&fresh, copy.path(), "app:epoch", &["--source-date-epoch", "1700000000"]);
    assert_ne!(epoch, first, "another SOURCE_DATE_EPOCH");
    let mut cmd = fresh.command(&["build", "--builder", "builder", "--source"]);
    cmd.arg(copy.path()).args(["-t", "app:env"]).env("SOURCE_DATE_EPOCH", "1700000000");
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&epoch), "SOURCE_DATE_EPOCH from the environment");
    assert_eq!(inspect(&fresh, "app:epoch")["created"], "2023-11-14T22:13:20Z");
    assert!(top_layer(&fresh, "app:epoch").iter().all(|e| e.1 == 1_700_000_000));

    // A gzip'd layer: the same tar inside, another blob, and the same digest
    // each time and in a fresh store.
    let gz = build_ok(&r, src.path(), "app:gz", &["--compress", "gzip"]);
    assert_ne!(gz, first);
    assert_eq!(build_ok(&fresh, copy.path(), "app:gz", &["--compress", "gzip"]), gz);
    let (plain, zipped) = (inspect(&r, "app:1"), inspect(&r, "app:gz"));
    let top = |i: &serde_json::Value| i["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(top(&zipped)["media_type"], "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(top(&zipped)["diff_id"], top(&plain)["diff_id"]);
    assert!(top(&zipped)["size"].as_u64() < top(&plain)["size"].as_u64(), "{zipped}");
    let (code, stdout, stderr) = r.run(&["app:gz"]);
    assert_eq!((code, stdout.as_str()), (0, "app says: assembled from source, built by 1001\n"), "{stderr}");
    let (code, _, err) = build(&r, &["--builder", "builder", "--source", "/", "-t", "x", "--compress", "xz"]);
    assert!(code == 125 && err.contains("--compress"), "{err}");

    std::fs::write(copy.path().join("message.txt"), "assembled from sourcE\n").unwrap();
    let changed = build_ok(&fresh, copy.path(), "app:changed", &[]);
    assert_ne!(changed, first, "one source byte changed");
    r.assert_no_leftovers();
    fresh.assert_no_leftovers();
}

#[test]
fn the_layer_holds_only_what_assemble_wrote() {
    if !privileged("the_layer_holds_only_what_assemble_wrote") {
        return;
    }
    let r = TestRoot::with_builder();
    let src = source(APP, BUILD);
    // --network host adds /etc/resolv.conf, which the builder lacks: another
    // mount point exprun makes and must leave out.
    build_ok(&r, src.path(), "app:1", &["--network", "host", "-e", "GREETING=hi", "-e", "API_TOKEN=s3cret"]);
    let entries = top_layer(&r, "app:1");
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "opt",
            "opt/app-root",
            "opt/app-root/lib",
            "opt/app-root/lib/x",
            "opt/app-root/src",
            "opt/app-root/src/app.sh",
            "opt/app-root/src/build.sh",
            "opt/app-root/src/built-by",
            "opt/app-root/src/message.txt",
        ]
    );
    assert!(entries.iter().all(|e| e.1 == 0), "every mtime is SOURCE_DATE_EPOCH: {entries:?}");
    assert!(entries.iter().filter(|e| e.0.starts_with("opt/app-root/")).all(|e| e.2 == 1001), "{entries:?}");
    // -e reaches assemble and the image, except secret-looking names.
    let env = inspect(&r, "app:1")["config"]["Env"].clone();
    assert!(env.as_array().unwrap().iter().any(|e| e == "GREETING=hi"), "{env}");
    assert!(!env.to_string().contains("API_TOKEN"), "{env}");
    let rec = r.last_record();
    assert!(rec["determinism"]["unpinned"].to_string().contains("network"), "{}", rec["determinism"]);
    // /tmp/src is the source's place during the build only.
    let (code, out, _) = r.run(&["app:1", "--", "sh", "-c", "ls -A /tmp; ls /opt/app-root/src"]);
    assert_eq!(code, 0);
    assert_eq!(out, "app.sh\nbuild.sh\nbuilt-by\nmessage.txt\n");
    r.assert_no_leftovers();
}

#[test]
fn failures_exit_125_name_the_problem_and_leave_nothing() {
    if !privileged("failures_exit_125_name_the_problem_and_leave_nothing") {
        return;
    }
    let r = TestRoot::with_builder();
    let out = r.exprun(
        &["image", "import", "--name", "busybox:latest"],
        Some(&common::fixture_dir().join("busybox-oci")),
    );
    assert!(out.status.success());
    let src = source(APP, BUILD);
    let s = src.path().to_str().unwrap();
    let before = image_names(&r);

    // A builder without an assemble script.
    let (code, _, err) = build(&r, &["--builder", "busybox", "--source", s, "-t", "x"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("/usr/libexec/s2i/assemble") && err.contains("io.openshift.s2i.scripts-url"),
        "{err}"
    );
    // No such builder.
    let (code, _, err) = build(&r, &["--builder", "nosuch:1", "--source", s, "-t", "x"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("nosuch:1") && err.contains("exprun image import"), "{err}");
    // A missing or unusable source.
    let missing = src.path().join("not-here");
    let (code, _, err) =
        build(&r, &["--builder", "builder", "--source", missing.to_str().unwrap(), "-t", "x"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--source") && err.contains("not-here") && err.contains("does not exist"), "{err}");
    let file = src.path().join("app.sh");
    let (code, _, err) = build(&r, &["--builder", "builder", "--source", file.to_str().unwrap(), "-t", "x"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("not a directory"), "{err}");
    // A bad name.
    let (code, _, err) = build(&r, &["--builder", "builder", "--source", s, "-t", "Not/Valid"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("-t") && err.contains("Not/Valid"), "{err}");
    assert!(r.records().is_empty(), "nothing ran for a refused build");

    // assemble fails: 125, its status and its run in the message, the run recorded.
    let failing = source(APP, "echo about to fail >&2\nexit 3\n");
    let (code, _, err) =
        build(&r, &["--builder", "builder", "--source", failing.path().to_str().unwrap(), "-t", "x"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("about to fail"), "assemble's output is shown: {err}");
    assert!(err.contains("exited with status 3"), "{err}");
    let rec = r.last_record();
    let run_id = rec["run_id"].as_str().unwrap();
    assert!(err.contains(run_id) && err.contains("exprun runs show"), "{err}");
    assert_eq!(rec["exit"]["code"], 3);
    let stderr = std::fs::read_to_string(r.path().join("runs").join(run_id).join("stderr")).unwrap();
    assert!(stderr.contains("about to fail"), "{stderr}");

    assert_eq!(image_names(&r), before, "no image was made");
    r.assert_no_leftovers();
}

/// Wait until the assemble step of a build in this root is running.
fn wait_running(r: &TestRoot) {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(20), "the assemble step never started");
        std::thread::sleep(Duration::from_millis(20));
        let Some(dir) = std::fs::read_dir(r.path().join("containers"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
        else {
            continue;
        };
        let Ok(bytes) = std::fs::read(dir.path().join("plan.json")) else { continue };
        let plan: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let procs = PathBuf::from(plan["cgroup"]["dirs"]["pids"].as_str().unwrap()).join("cgroup.procs");
        if std::fs::read_to_string(procs).is_ok_and(|p| p.lines().count() >= 2) {
            return;
        }
    }
}

#[test]
fn sigint_stops_the_build_and_leaves_nothing() {
    if !privileged("sigint_stops_the_build_and_leaves_nothing") {
        return;
    }
    let r = TestRoot::with_builder();
    let src = source(APP, "sleep 30\n");
    let child = r
        .command(&["build", "--builder", "builder", "-t", "slow:1", "--source"])
        .arg(src.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&r);
    let t0 = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(t0.elapsed() < Duration::from_secs(10), "the build did not stop at once");
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert!(!image_names(&r).iter().any(|n| n.starts_with("slow")));
    let rec = r.last_record();
    assert_eq!(rec["signals"][0]["signal"], "SIGINT");
    assert_eq!(rec["signals"][0]["delivered_as"], "SIGKILL", "the assemble step is stopped, not asked");
    r.assert_no_leftovers();
}

#[test]
fn the_source_can_set_the_environment_and_replace_assemble() {
    if !privileged("the_source_can_set_the_environment_and_replace_assemble") {
        return;
    }
    let r = TestRoot::with_builder();
    let src = source("echo \"mode=$MODE greeting=$GREETING by=$(cat built-by)\"\n", "");
    std::fs::create_dir_all(src.path().join(".s2i/bin")).unwrap();
    std::fs::write(
        src.path().join(".s2i/environment"),
        "# for the build and the image\nMODE=prod\nGREETING=hi\n",
    )
    .unwrap();
    // The source's own assemble: copies the app, and says it was the one.
    let assemble = src.path().join(".s2i/bin/assemble");
    std::fs::write(&assemble, "#!/bin/sh\ncp -R /tmp/src/. ./ && echo \"custom-$MODE\" > built-by\n")
        .unwrap();
    std::fs::set_permissions(&assemble, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    build_ok(&r, src.path(), "custom:1", &["-e", "GREETING=hello"]);
    let (code, out, err) = r.run(&["custom:1"]);
    assert_eq!(code, 0, "{err}");
    // `-e` wins over .s2i/environment; both reach assemble and the image.
    assert_eq!(out, "mode=prod greeting=hello by=custom-prod\n");

    // A broken environment file names its line; a run override is refused.
    std::fs::write(src.path().join(".s2i/environment"), "MODE=prod\nnot a pair\n").unwrap();
    let (code, _, err) =
        build(&r, &["--builder", "builder:latest", "--source", src.path().to_str().unwrap(), "-t", "x:1"]);
    assert_eq!(code, 125);
    assert!(err.contains(".s2i/environment") && err.contains("line 2"), "{err}");
    std::fs::write(src.path().join(".s2i/environment"), "MODE=prod\n").unwrap();
    std::fs::write(src.path().join(".s2i/bin/run"), "#!/bin/sh\n").unwrap();
    let (code, _, err) =
        build(&r, &["--builder", "builder:latest", "--source", src.path().to_str().unwrap(), "-t", "x:1"]);
    assert_eq!(code, 125);
    assert!(err.contains(".s2i/bin/run") && err.contains("does not support"), "{err}");
    assert!(!image_names(&r).contains(&"x:1".to_string()));
    r.assert_no_leftovers();
}

#[test]
fn s2iignore_leaves_paths_out_of_what_assemble_gets() {
    if !privileged("s2iignore_leaves_paths_out_of_what_assemble_gets") {
        return;
    }
    let r = TestRoot::with_builder();
    // The app lists what assemble was given.
    let src = source("cat /opt/app-root/src-listing\n", "find /tmp/src | sort > /opt/app-root/src-listing\n");
    let p = src.path();
    std::fs::create_dir_all(p.join(".git/objects")).unwrap();
    std::fs::write(p.join(".git/HEAD"), "ref: main\n").unwrap();
    std::fs::create_dir_all(p.join("data")).unwrap();
    for f in ["data/big.csv", "data/keep.csv", "debug.log", "notes.md", "README.md"] {
        std::fs::write(p.join(f), f).unwrap();
    }
    // A socket would be refused, unless it is left out.
    let _sock = std::os::unix::net::UnixListener::bind(p.join("app.sock")).unwrap();
    std::fs::write(
        p.join(".s2iignore"),
        "# not for the image\n.git\n*.log\ndata/*.csv\n!data/keep.csv\n*.md\n!README.md\napp.sock\n",
    )
    .unwrap();
    let first = build_ok(&r, p, "ignoring:1", &[]);
    let (code, out, err) = r.run(&["ignoring:1"]);
    assert_eq!(code, 0, "{err}");
    let listing: Vec<&str> = out.lines().collect();
    assert_eq!(
        listing,
        [
            "/tmp/src",
            "/tmp/src/.s2iignore",
            "/tmp/src/README.md",
            "/tmp/src/app.sh",
            "/tmp/src/build.sh",
            "/tmp/src/data",
            "/tmp/src/data/keep.csv",
            "/tmp/src/message.txt"
        ],
        "{out}"
    );
    // What is left out does not count: changing it changes nothing.
    std::fs::write(p.join("debug.log"), "other").unwrap();
    std::fs::write(p.join(".git/HEAD"), "ref: other\n").unwrap();
    assert_eq!(build_ok(&r, p, "ignoring:2", &[]), first);

    std::fs::write(p.join(".s2iignore"), "*.log\n../outside\n").unwrap();
    let (code, _, err) =
        build(&r, &["--builder", "builder:latest", "--source", p.to_str().unwrap(), "-t", "x:1"]);
    assert_eq!(code, 125);
    assert!(err.contains(".s2iignore") && err.contains("line 2") && err.contains("outside"), "{err}");
    r.assert_no_leftovers();
}
