#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `exprun verify`'s verdicts, run for real on the busybox fixture: content
//! first (permission bits apart), `--ignore` and `exprun-verify.toml`, every
//! variation's outcome, and the regressions of issue 18 (debug lines in the
//! recorded stderr, dirent-order and mtimes).

mod common;

use std::path::{Path, PathBuf};

use common::{privileged, TestRoot};
use serde_json::Value;

fn verify_json(r: &TestRoot, args: &[&str], cwd: Option<&Path>) -> (i32, Value) {
    let mut full = vec!["verify", "--json"];
    full.extend_from_slice(args);
    let mut cmd = r.command(&full);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let (code, stdout) = (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(code == 0 || code == 1, "verify failed ({code}): {err}");
    (code, serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// Run `script` in busybox as run `name`, with /in (files `files`) and /out.
fn experiment(
    r: &TestRoot,
    data: &Path,
    name: &str,
    files: &[&str],
    extra: &[&str],
    script: &str,
) -> PathBuf {
    let input = data.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in files {
        std::fs::write(input.join(n), n).unwrap();
    }
    let out = data.join("out");
    let (i, o) = (format!("{}:/in", input.display()), format!("{}:/out", out.display()));
    let mut args = vec!["--name", name, "--input", &i, "--output", &o];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox:latest", "--", "sh", "-c", script]);
    let (code, _, err) = r.run(&args);
    assert_eq!(code, 0, "{err}");
    input
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn outcome<'a>(v: &'a Value, variation: &str) -> &'a Value {
    v["variations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["variation"] == variation)
        .unwrap_or_else(|| panic!("no outcome for {variation}: {v:#}"))
}

#[test]
fn content_first_modes_apart_and_umask_finds_only_a_real_leak() {
    if !privileged("content_first_modes_apart_and_umask_finds_only_a_real_leak") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    experiment(&r, data.path(), "files", &[], &[], "echo fixed > /out/fixed");
    experiment(&r, &data.path().join("2"), "leak", &[], &[], "echo fixed > /out/fixed; umask > /out/umask");

    // The umask changes the files' permission bits only: reported apart, not a difference.
    let (code, v) = verify_json(&r, &["files", "--vary", "umask"], None);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(outcome(&v, "umask")["outcome"], "no-change", "{v:#}");
    let vr = &v["variation_replays"][0];
    assert_eq!(strings(&vr["mode_changes"]), ["/out/fixed"], "{v:#}");
    assert!(strings(&vr["differs"]).is_empty(), "{v:#}");
    // Unless asked to compare them.
    let (code, v) = verify_json(&r, &["files", "--vary", "umask", "--compare", "modes"], None);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(strings(&outcome(&v, "umask")["changes"]), ["/out/fixed"], "{v:#}");

    // A program that writes its umask is a real leak, and only that file is named.
    let (code, v) = verify_json(&r, &["leak", "--vary", "umask"], None);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(strings(&outcome(&v, "umask")["changes"]), ["/out/umask"], "{v:#}");
    let (_, text, _) = {
        let out = r.exprun(&["verify", "leak", "--vary", "umask"], None);
        (0, String::from_utf8_lossy(&out.stdout).into_owned(), ())
    };
    assert!(text.contains("umask: CHANGES the result: /out/umask"), "{text}");
    assert!(text.contains("permission bits only"), "{text}");
    r.assert_no_leftovers();
}

#[test]
fn ignore_and_the_settings_file_kept_with_the_experiment() {
    if !privileged("ignore_and_the_settings_file_kept_with_the_experiment") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let script = "head -c8 /dev/urandom | od -An -tx1 >&2; mkdir -p /out/logs; \
                  head -c8 /dev/urandom | od -An -tx1 > /out/logs/train.log; echo 0.5 > /out/m";
    experiment(&r, data.path(), "noisy", &["a"], &[], script);
    let (code, v) = verify_json(&r, &["noisy"], None);
    assert_eq!(code, 1);
    assert_eq!(strings(&v["unstable"]), ["stderr", "/out/logs/train.log"], "{v:#}");

    let (code, v) = verify_json(&r, &["noisy", "--ignore", "stderr", "--ignore", "logs/*.log"], None);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(strings(&v["replays"][0]["ignored"]), ["stderr", "/out/logs/train.log"], "{v:#}");
    assert_eq!(strings(&v["settings"]["ignore"]), ["stderr", "logs/*.log"]);

    // The same from exprun-verify.toml in the current directory, recorded in the verdict.
    let cwd = tempfile::tempdir().unwrap();
    let toml = "ignore = [\"stderr\", \"/out/logs/**\"]\nvary = [\"hostname\"]\n";
    std::fs::write(cwd.path().join("exprun-verify.toml"), toml).unwrap();
    let (code, v) = verify_json(&r, &["noisy"], Some(cwd.path()));
    assert_eq!(code, 0, "{v:#}");
    let c = &v["settings"]["config"];
    assert_eq!(c["found"], "current directory", "{v:#}");
    assert_eq!(c["path"], cwd.path().join("exprun-verify.toml").display().to_string());
    assert_eq!(strings(&v["varied"]), ["hostname"]);
    assert_eq!(outcome(&v, "hostname")["outcome"], "no-change");

    // A bad file is refused, naming the file and the key (exit 125).
    std::fs::write(cwd.path().join("exprun-verify.toml"), "ignored = [\"stderr\"]\n").unwrap();
    let out = r.command(&["verify", "noisy"]).current_dir(cwd.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("exprun-verify.toml") && err.contains("ignored"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn every_variation_reports_an_outcome_and_unstable_outputs_do_not_hide_them() {
    if !privileged("every_variation_reports_an_outcome_and_unstable_outputs_do_not_hide_them") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    // An unseeded metric next to the hostname, and what a program sees of the CPUs.
    let script = "head -c8 /dev/urandom | od -An -tx1 > /out/metric; hostname > /out/host; \
                  nproc > /out/nproc; grep -c ^processor /proc/cpuinfo > /out/cpuinfo; \
                  cat /sys/devices/system/cpu/online > /out/online; echo ok > /out/fixed";
    experiment(&r, data.path(), "cpus", &["a"], &[], script);
    let (code, v) = verify_json(&r, &["cpus", "--vary", "all"], None);
    assert_eq!(code, 1);
    assert_eq!(strings(&v["unstable"]), ["/out/metric"], "{v:#}");
    assert_eq!(strings(&outcome(&v, "hostname")["changes"]), ["/out/host"], "{v:#}");
    let mut cpus = strings(&outcome(&v, "cpus")["changes"]);
    cpus.sort();
    assert_eq!(cpus, ["/out/cpuinfo", "/out/nproc", "/out/online"], "{v:#}");
    // busybox has no locale and one input file has only one order: not tested, and why.
    let locale = outcome(&v, "locale");
    assert_eq!(locale["outcome"], "not-tested", "{v:#}");
    assert!(locale["why"].as_str().unwrap().contains("no locale"), "{v:#}");
    let dirent = outcome(&v, "dirent-order");
    assert_eq!(dirent["outcome"], "not-tested", "{v:#}");
    for quiet in ["tz", "aslr", "env-order", "user", "umask"] {
        assert_eq!(outcome(&v, quiet)["outcome"], "no-change", "{quiet}: {v:#}");
    }
    // The user variation runs as a user the image's /etc/passwd has.
    assert!(outcome(&v, "user")["applied"].as_str().unwrap().contains("(researcher)"), "{v:#}");

    let out = r.exprun(&["verify", "cpus", "--vary", "hostname,locale"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hostname: CHANGES the result: /out/host"), "{text}");
    assert!(text.contains("not on /out/metric"), "{text}");
    assert!(text.contains("locale: COULD NOT BE TESTED: the image has no locale"), "{text}");
    r.assert_no_leftovers();
}

#[test]
fn debug_lines_stay_out_of_the_recorded_stderr() {
    if !privileged("debug_lines_stay_out_of_the_recorded_stderr") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = r.exprun(
        &["--debug", "run", "--name", "dbg", "busybox:latest", "--", "sh", "-c", "echo err >&2"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // init's lines after it took the container's stdio still reach exprun's stderr.
    assert!(err.contains("init [2]") && err.contains("init [4]"), "{err}");
    let id = r.last_record()["run_id"].as_str().unwrap().to_string();
    let recorded = std::fs::read_to_string(r.path().join("runs").join(&id).join("stderr")).unwrap();
    assert_eq!(recorded, "err\n");
    let (code, v) = verify_json(&r, &["dbg"], None);
    assert_eq!(code, 0, "{v:#}");
    r.assert_no_leftovers();
}

#[test]
fn dirent_order_keeps_the_inputs_mtimes() {
    if !privileged("dirent_order_keeps_the_inputs_mtimes") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(input.join(n), n).unwrap();
    }
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for n in ["a", "b", "c"] {
        std::fs::File::options().write(true).open(input.join(n)).unwrap().set_modified(old).unwrap();
    }
    // Sorted, so the listing order is not in the output: only the times are.
    let script = "for f in $(ls /in | sort); do stat -c '%n %Y' /in/$f; done > /out/times";
    let out = data.path().join("out");
    let (i, o) = (format!("{}:/in", input.display()), format!("{}:/out", out.display()));
    let (code, _, err) =
        r.run(&["--name", "mt", "--input", &i, "--output", &o, "busybox:latest", "--", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(out.join("times")).unwrap().contains("/in/a 1000000000"));
    let (code, v) = verify_json(&r, &["mt", "--vary", "dirent-order"], None);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(outcome(&v, "dirent-order")["outcome"], "no-change", "{v:#}");
    r.assert_no_leftovers();
}
