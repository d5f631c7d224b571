#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The order of `exprun run`'s steps (src/run.rs) where it shows from outside:
//! the record is written before the run directory is removed, and `--pull`
//! comes after every option is checked.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{privileged, skip, TestRoot};

/// The id of the one live run in `r`, once its plan.json exists.
fn live_run(r: &TestRoot) -> String {
    let t0 = Instant::now();
    loop {
        let dirs: Vec<_> = std::fs::read_dir(r.path().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("plan.json").exists())
            .collect();
        if let [one] = dirs.as_slice() {
            return one.file_name().to_string_lossy().into_owned();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL exprun at the rename that publishes its record (strace injects the
/// signal at the syscall, so the point is exact): the run must still end up
/// recorded, by the record or, since the run directory is still there, by the
/// next exprun's cleanup, as lost.
#[test]
fn exprun_killed_while_writing_the_record_leaves_the_run_for_cleanup() {
    if !privileged("exprun_killed_while_writing_the_record_leaves_the_run_for_cleanup") {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        skip("exprun_killed_while_writing_the_record_leaves_the_run_for_cleanup", "needs strace");
        return;
    }
    let r = TestRoot::with_busybox();
    let mut run = r
        .command(&["run", "busybox:latest", "--", "sh", "-c", "echo started; exec sleep 2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let id = live_run(&r);
    // Attached once the command runs (its first line is out), so the first
    // rename from here on is the record's: the run has no outputs and no --keep.
    let mut line = String::new();
    BufReader::new(run.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let mut strace = Command::new("strace")
        .args(["-p", &run.id().to_string(), "-o", "/dev/null"])
        .args(["-e", "trace=rename,renameat,renameat2"])
        .args(["-e", "inject=rename,renameat,renameat2:signal=SIGKILL"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached = String::new();
    BufReader::new(strace.stderr.take().unwrap()).read_line(&mut attached).unwrap();
    assert!(attached.contains("attached"), "strace: {attached}");
    let status = run.wait().unwrap();
    strace.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "exprun was not killed at the record's rename: {status}"
    );
    assert!(!r.path().join("runs").join(&id).join("record.json").exists(), "precondition: no record");

    let gc = r.exprun(&["gc"], None);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let record = r.path().join("runs").join(&id).join("record.json");
    assert!(
        record.exists(),
        "run {id} has no record after cleanup: killed between removing its run directory and writing its record"
    );
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert_eq!(rec["status"], "lost", "{rec}");
    r.assert_no_leftovers();
}

/// A mistyped `--input` is reported before `--pull` reaches the registry:
/// options first, then the pull (step 2).
#[test]
fn a_bad_option_fails_before_anything_is_pulled() {
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let (port, stop) = common::registry::listen(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let r = TestRoot::new();
    let image = format!("127.0.0.1:{port}/fixtures/busybox:1");
    let missing = r.path().join("no-such-input");
    let input = format!("{}:/in", missing.display());
    let (code, _, stderr) =
        r.run(&["--pull", "always", "--plain-http", "--input", &input, &image, "--", "true"]);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("--input") && stderr.contains(&missing.display().to_string()), "{stderr}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "the registry was asked before the options were checked: {stderr}"
    );
    assert!(
        !Path::new(&r.path().join("containers")).exists()
            || r.path().join("containers").read_dir().unwrap().next().is_none()
    );
    r.assert_no_leftovers();
}
