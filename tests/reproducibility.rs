#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The deterministic profile, `exprun replay` and `exprun verify`, on small
//! experiments in the fixture image, run for real.

mod common;

use std::path::Path;

use common::{privileged, TestRoot};
use serde_json::Value;

fn code_out_err(out: &std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify_json(r: &TestRoot, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["verify", "--json"];
    full.extend_from_slice(args);
    let (code, out, err) = code_out_err(&r.exprun(&full, None));
    assert!(code == 0 || code == 1, "verify failed ({code}): {err}");
    (code, serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

fn mount(dir: &Path, dst: &str) -> String {
    format!("{}:{dst}", dir.display())
}

/// Run `script` as run NAME with an input directory of one file per name at
/// /in and an output directory at /out (plus `extra` options); returns
/// (exit code, stdout, stderr) and the host's output directory.
fn run_experiment(
    r: &TestRoot,
    data: &Path,
    name: &str,
    files: &[&str],
    extra: &[&str],
    script: &str,
) -> ((i32, String, String), std::path::PathBuf) {
    let input = data.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in files {
        std::fs::write(input.join(n), n).unwrap();
    }
    let out = data.join("out");
    let (input, output) = (mount(&input, "/in"), mount(&out, "/out"));
    let mut args = vec!["--name", name, "--input", &input, "--output", &output];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox:latest", "--", "sh", "-c", script]);
    (r.run(&args), out)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// The changes attributed to `variation`, or none.
fn attributed(verdict: &Value, variation: &str) -> Vec<String> {
    verdict["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["variation"] == variation)
        .map(|a| strings(&a["changes"]))
        .unwrap_or_default()
}

#[test]
fn a_deterministic_run_is_pinned_replays_exactly_and_verifies() {
    if !privileged("a_deterministic_run_is_pinned_replays_exactly_and_verifies") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let ((code, stdout, err), out) = run_experiment(
        &r,
        data.path(),
        "det",
        &["a", "b", "c"],
        &["--cpus", "1"],
        "cat /in/* | md5sum > /out/sum; echo $TZ $LANG $SOURCE_DATE_EPOCH $OMP_NUM_THREADS $PYTHONHASHSEED; umask",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, "UTC C.UTF-8 0 1 0\n0022\n");
    let rec = r.last_record();
    let pins: Vec<&str> =
        rec["determinism"]["pins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for want in
        ["env", "hostname", "umask", "network", "tz", "locale", "source-date-epoch", "threads", "aslr"]
    {
        assert!(pins.contains(&want), "pin {want} in {pins:?}");
    }
    let unpinned: Vec<&str> = rec["determinism"]["unpinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["source"].as_str().unwrap())
        .collect();
    assert!(unpinned.contains(&"wall-clock") && unpinned.contains(&"randomness"), "{unpinned:?}");
    assert_eq!(rec["stdout"]["kept"], 23, "stdout kept with the record");

    let (code, verdict) = verify_json(&r, &["det", "--runs", "2"]);
    assert_eq!((code, verdict["verdict"].as_str()), (0, Some("reproduced")), "{verdict:#}");
    assert_eq!(verdict["replays"].as_array().unwrap().len(), 2);

    let (code, stdout, err) = code_out_err(&r.exprun(&["replay", "det"], None));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, "UTC C.UTF-8 0 1 0\n0022\n");
    assert!(err.contains("no drift"), "{err}");
    let replay = r.last_record();
    assert_eq!(replay["replay_of"], rec["run_id"]);
    let replay_id = replay["run_id"].as_str().unwrap();
    let replayed = r.path().join("runs").join(replay_id).join("outputs/out/sum");
    assert_eq!(std::fs::read(replayed).unwrap(), std::fs::read(out.join("sum")).unwrap());
    assert_eq!(replay["determinism"], rec["determinism"], "the pins as recorded");
    r.assert_no_leftovers();
}

#[test]
fn verify_catches_each_nondeterminism_and_names_its_cause() {
    if !privileged("verify_catches_each_nondeterminism_and_names_its_cause") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let ((code, _, err), _) = run_experiment(
        &r,
        data.path(),
        "nd",
        &["a", "b", "c", "d", "e", "f"],
        &[],
        "hostname > /out/host; touch /tmp/t; stat -c %y /tmp/t > /out/time; \
         head -c16 /dev/urandom | od -An -tx1 > /out/random; find /in -type f > /out/list; \
         date +%H > /out/hour; echo fixed > /out/fixed",
    );
    assert_eq!(code, 0, "{err}");

    // A plain replay catches the clock and the kernel's randomness, and says which file.
    let (code, stdout, _) = code_out_err(&r.exprun(&["verify", "nd"], None));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("DIFFERS") && stdout.contains("out/time") && stdout.contains("out/random"),
        "{stdout}"
    );
    assert!(stdout.contains("depends on the wall clock, randomness or scheduling"), "{stdout}");

    // Each variation is found by bisection and named with the file it changes.
    let (code, v) = verify_json(&r, &["nd", "--vary", "all"]);
    assert_eq!(code, 1);
    let unstable = strings(&v["unstable"]);
    assert!(unstable.contains(&"/out/time".into()) && unstable.contains(&"/out/random".into()), "{v:#}");
    assert_eq!(attributed(&v, "hostname"), ["/out/host"], "{v:#}");
    assert_eq!(attributed(&v, "tz"), ["/out/hour"], "{v:#}");
    assert_eq!(attributed(&v, "dirent-order"), ["/out/list"], "{v:#}");
    // The umask changes the files' permission bits, not their content: apart.
    let mut umask = v["variation_replays"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| strings(&r["variation"]).contains(&"umask".to_string()));
    assert!(
        umask.all(|r| strings(&r["mode_changes"]).contains(&"/out/fixed".to_string())),
        "modes change with the umask: {v:#}"
    );
    for quiet in ["env-order", "aslr", "cpus", "user", "umask"] {
        assert!(attributed(&v, quiet).is_empty(), "{quiet} changes nothing here: {v:#}");
    }
    for a in v["attributions"].as_array().unwrap() {
        for c in strings(&a["changes"]) {
            assert!(!unstable.contains(&c), "{c} is unstable, not caused by {}", a["variation"]);
        }
    }
    // Bisection costs fewer replays than trying every variation alone and in pairs.
    assert!(v["variation_replays"].as_array().unwrap().len() < 20, "{}", v["variation_replays"]);
    r.assert_no_leftovers();
}

#[test]
fn numeric_outputs_pass_within_a_declared_tolerance_and_fail_beyond_it() {
    if !privileged("numeric_outputs_pass_within_a_declared_tolerance_and_fail_beyond_it") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    // accuracy jitters from the 9th decimal on; the label is the hostname.
    let (code, _, err) = r.run(&[
        "--name",
        "metric",
        "--output",
        &mount(&out, "/out"),
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
         printf '{\"accuracy\": 0.912345%010d, \"label\": \"%s\"}\\n' $n $(hostname) > /out/metrics.json; \
         printf 'epoch,loss,label\\n1,0.250000%010d,%s\\n' $n $(hostname) > /out/loss.csv",
    ]);
    assert_eq!(code, 0, "{err}");

    let (code, v) = verify_json(&r, &["metric"]);
    assert_eq!(code, 1, "bit-exact by default: {v:#}");
    let (code, v) = verify_json(
        &r,
        &["metric", "--tolerance", "metrics.json:$.accuracy=1e-6", "--tolerance", "loss.csv=1e-6"],
    );
    assert_eq!(code, 0, "jitter below the tolerance passes: {v:#}");
    let verdicts: Vec<&str> = v["replays"][0]["outputs"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["within-tolerance", "within-tolerance"], "{v:#}");
    let (code, _) = verify_json(&r, &["metric", "--rtol", "1e-5"]);
    assert_eq!(code, 0, "a general relative tolerance covers JSON and CSV");

    let (code, stdout, _) = code_out_err(&r.exprun(
        &["verify", "metric", "--tolerance", "metrics.json:$.accuracy=1e-13", "--rtol", "1e-5"],
        None,
    ));
    assert_eq!(code, 1, "jitter above the tolerance fails: {stdout}");
    assert!(stdout.contains("$.accuracy"), "the report names the JSON path: {stdout}");

    // A changed label fails whatever the numeric tolerance.
    let (code, v) = verify_json(&r, &["metric", "--atol", "1", "--vary", "hostname"]);
    assert_eq!(code, 1, "{v:#}");
    let changes = attributed(&v, "hostname");
    assert!(
        changes.contains(&"/out/metrics.json".into()) && changes.contains(&"/out/loss.csv".into()),
        "{v:#}"
    );
    let (code, _, err) = code_out_err(&r.exprun(&["verify", "metric", "--tolerance", "metrics.json"], None));
    assert_eq!(code, 125);
    assert!(err.contains("--tolerance") && err.contains("FILE[:JSONPATH]=TOLERANCE"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn replay_refuses_a_changed_input_or_secret_unless_told() {
    if !privileged("replay_refuses_a_changed_input_or_secret_unless_told") {
        return;
    }
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("x.csv"), "1,2\n").unwrap();
    let (code, _, err) = r.run(&[
        "--name",
        "tampered",
        "-e",
        "API_TOKEN=s3cret",
        "--input",
        &mount(&input, "/in"),
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "cat /in/x.csv; echo ${#API_TOKEN}",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!std::fs::read_to_string(
        r.path().join("runs").join(r.last_record()["run_id"].as_str().unwrap()).join("record.json")
    )
    .unwrap()
    .contains("s3cret"));

    // The secret is asked for again and checked against its digest.
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "tampered"], None));
    assert_eq!(code, 125);
    assert!(err.contains("API_TOKEN") && err.contains("export"), "{err}");
    let with_secret = |value: &str, args: &[&str]| {
        let mut full = vec!["replay", "tampered"];
        full.extend_from_slice(args);
        let out =
            r.command(&full).env("API_TOKEN", value).stdin(std::process::Stdio::null()).output().unwrap();
        code_out_err(&out)
    };
    let (code, stdout, err) = with_secret("s3cret", &[]);
    assert_eq!((code, stdout.as_str()), (0, "1,2\n6\n"), "{err}");
    let (code, _, err) = with_secret("other", &[]);
    assert_eq!(code, 125);
    assert!(err.contains("env API_TOKEN") && err.contains("--allow-drift"), "{err}");

    // A changed input is named with the file that changed; nothing runs.
    std::fs::write(input.join("x.csv"), "1,3\n").unwrap();
    let before = r.records().len();
    let (code, _, err) = with_secret("s3cret", &[]);
    assert_eq!(code, 125);
    assert!(
        err.contains("input /in") && err.contains("changed: x.csv") && err.contains("--allow-drift"),
        "{err}"
    );
    assert_eq!(r.records().len(), before, "a refused replay leaves no record");
    let (code, _, _) = code_out_err(&r.exprun(&["verify", "tampered"], None));
    assert_eq!(code, 125, "verify cannot check either");

    let (code, stdout, err) = with_secret("s3cret", &["--allow-drift"]);
    assert_eq!((code, stdout.as_str()), (0, "1,3\n6\n"), "{err}");
    let drift = &r.last_record()["drift"];
    assert_eq!(drift[0]["item"], "input /in", "{drift:#}");
    assert_eq!(drift[0]["blocking"], true);

    // A bundle run, or an unknown run, cannot be replayed.
    let (code, _, err) = code_out_err(&r.exprun(&["replay", "nosuch"], None));
    assert_eq!(code, 125);
    assert!(err.contains("no run matches"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn pins_can_be_overridden_and_bad_values_are_refused() {
    if !privileged("pins_can_be_overridden_and_bad_values_are_refused") {
        return;
    }
    let r = TestRoot::with_busybox();
    let out = r
        .command(&[
            "run",
            "--pass-env",
            "SEED_*",
            "-e",
            "TZ=Europe/Paris",
            "--unpin",
            "pythonhashseed",
            "--umask",
            "077",
            "--aslr",
            "off",
            "--cpuset-cpus",
            "0",
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "echo $SEED_A $TZ ${PYTHONHASHSEED:-unset} $OMP_NUM_THREADS; umask; cat /proc/self/personality; \
             grep Cpus_allowed_list /proc/self/status",
        ])
        .env("SEED_A", "42")
        .env("OTHER", "x")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, err) = code_out_err(&out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, "42 Europe/Paris unset 1\n0077\n00040000\nCpus_allowed_list:\t0\n");
    let rec = r.last_record();
    let pin = |name: &str| {
        rec["determinism"]["pins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(pin("tz")["source"], "user");
    assert_eq!(pin("env")["value"], "clean, passed from the caller: SEED_A");
    assert_eq!((pin("aslr")["value"].as_str(), pin("cpuset")["value"].as_str()), (Some("off"), Some("0")));
    assert!(pin("pythonhashseed").is_null());

    for (args, want) in [
        (&["--unpin", "hostname"][..], "--unpin"),
        (&["--umask", "9"][..], "--umask"),
        (&["--cpuset-cpus", "0-9999"][..], "--cpuset-cpus"),
        (&["--pass-env", "A=1"][..], "--pass-env"),
    ] {
        let mut full = args.to_vec();
        full.extend_from_slice(&["busybox:latest", "true"]);
        let (code, _, err) = r.run(&full);
        assert_eq!(code, 125, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    r.assert_no_leftovers();
}
