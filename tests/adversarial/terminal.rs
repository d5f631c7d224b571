//! Records that attack the terminal of whoever reads them: a record is
//! anyone's once it is shared, fetched from a registry or planted, and what a
//! container named (files, values) ends up in exprun's output. Every byte
//! exprun prints for people must be inert: no C0 control but the newline, no
//! DEL, no C1 control, no bidirectional control.

use std::process::Output;

use serde_json::Value;

use crate::common::{privileged, TestRoot};
use crate::evil_registry::EvilRegistry;
use crate::host::{Marker, Snapshot};

/// Clear the screen, set the window title, write the clipboard (OSC 52),
/// return to the line's start, a C1 CSI, and a right-to-left override that
/// makes `exe.txt` read `txt.exe`.
const ESCAPES: &str = "\x1b[2J\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4K\x07\rX\u{9b}31m\u{202e}exe.txt";

fn bidi(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Panic naming the command and the first byte or character that could drive
/// a terminal, in its stdout or stderr.
fn assert_inert(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let shown = String::from_utf8_lossy(bytes);
        if let Some(i) = bytes.iter().position(|&b| (b < 0x20 && b != b'\n') || b == 0x7f) {
            panic!("{what}: {stream} has the raw byte {:#04x} at {i}:\n{shown:?}", bytes[i]);
        }
        let text =
            std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: {stream} is not UTF-8: {e}"));
        if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\n' || bidi(c)) {
            panic!("{what}: {stream} has the raw character {c:?}:\n{shown:?}");
        }
    }
}

fn exprun(r: &TestRoot, args: &[&str]) -> Output {
    r.exprun(args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The record `r` holds for `name`.
fn record_named(r: &TestRoot, name: &str) -> Value {
    r.records().into_iter().find(|x| x["name"] == name).unwrap_or_else(|| panic!("no run {name}"))
}

/// `rec` with every string a reader prints made hostile, as run `id`.
fn hostile(mut rec: Value, id: &str) -> Value {
    rec["run_id"] = id.into();
    rec["name"] = ESCAPES.into();
    rec["spec"]["process"]["args"].as_array_mut().unwrap().push(ESCAPES.into());
    rec["spec"]["process"]["env"].as_array_mut().unwrap().push(format!("V={ESCAPES}").into());
    rec["spec"]["hostname"] = ESCAPES.into();
    rec["executable"] = format!("/bin/{ESCAPES}").into();
    rec["exit"]["message"] = ESCAPES.into();
    rec["host"]["cpu_model"] = ESCAPES.into();
    rec
}

#[test]
fn hostile_strings_in_records_and_outputs_are_printed_escaped() {
    if !privileged("hostile_strings_in_records_and_outputs_are_printed_escaped") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let work = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (work.path().join("a"), work.path().join("b"));
    let file = format!("f{ESCAPES}");

    // The container names a set-id file after escapes: exprun reports it as it
    // cleans the output, and lists it in the record.
    let spec_a = format!("{}:/out", out_a.display());
    let env_a = format!("V={ESCAPES}");
    let script = r#"touch "/out/$1" && chmod 4755 "/out/$1""#;
    let ran = exprun(
        &r,
        &[
            "run",
            "--name",
            "term-a",
            "-e",
            &env_a,
            "--output",
            &spec_a,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            &file,
        ],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_inert("run (reporting a cleaned output file)", &ran);
    assert!(stderr(&ran).contains("output /out: f\\x1b[2J"), "the file is named, escaped: {}", stderr(&ran));
    let spec_b = format!("{}:/out", out_b.display());
    let ran = exprun(
        &r,
        &[
            "run",
            "--name",
            "term-b",
            "-e",
            "V=calm",
            "--output",
            &spec_b,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            "echo calm > /out/calm",
        ],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));

    // A record planted as a fetched one would be: any string in it.
    let id = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0";
    let mut planted = hostile(record_named(&r, "term-a"), id);
    // An image this store lacks, so that replay's error names it.
    planted["image"]["name"] = ESCAPES.into();
    planted["image"]["manifest_digest"] = format!("sha256:{}", "1".repeat(64)).into();
    planted["request"]["image"] = ESCAPES.into();
    let dir = r.path().join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), serde_json::to_vec_pretty(&planted).unwrap()).unwrap();

    let missing = format!("x{ESCAPES}");
    for args in [
        &["runs", "ls"][..],
        &["runs", "ls", "--json"],
        &["runs", "show", "term-a"],
        &["runs", "show", id],
        &["runs", "diff", "term-a", "term-b"],
        &["runs", "diff", "term-b", id],
        &["runs", "diff", "term-b", id, "--json"],
        &["runs", "export", id, "--format", "in-toto"],
        &["runs", "export", id, "--format", "ro-crate"],
        &["runs", "show", &missing],
        &["runs", "diff", id, &missing],
        &["replay", id, "--dry-run"],
    ] {
        assert_inert(&format!("{args:?}"), &exprun(&r, args));
    }

    // What was escaped is still there to read.
    let shown = stdout(&exprun(&r, &["runs", "show", id]));
    assert!(shown.contains(&format!("run:        {id} (\\x1b[2J\\x1b]0;owned\\x07")), "{shown}");
    assert!(shown.contains("\\rX\\u{009b}31m\\u{202e}exe.txt"), "{shown}");
    let diff = stdout(&exprun(&r, &["runs", "diff", "term-a", "term-b"]));
    assert!(diff.contains("  env V: \\x1b[2J"), "{diff}");
    assert!(diff.contains("  output /out: f\\x1b[2J"), "{diff}");
    let refused = exprun(&r, &["runs", "show", &missing]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(stderr(&refused).contains("no run matches \"x\\u{1b}[2J"), "{}", stderr(&refused));
    let replay = exprun(&r, &["replay", id, "--dry-run"]);
    assert_eq!(replay.status.code(), Some(125));
    assert!(stderr(&replay).contains(") is not in the store"), "{}", stderr(&replay));
    assert!(
        stderr(&replay).contains("(\\x1b[2J\\x1b]0;owned\\x07"),
        "the error names it, escaped: {}",
        stderr(&replay)
    );

    // JSON stays exact: the same strings once parsed.
    let json: Value =
        serde_json::from_slice(&exprun(&r, &["runs", "diff", "term-b", id, "--json"]).stdout).unwrap();
    let args = json["context"].as_array().unwrap().iter().find(|c| c["path"] == "spec.process.args").unwrap();
    assert_eq!(args["b"].as_array().unwrap().last().unwrap(), ESCAPES);
    let ls: Value = serde_json::from_slice(&exprun(&r, &["runs", "ls", "--json"]).stdout).unwrap();
    assert!(ls.as_array().unwrap().iter().any(|x| x["name"] == ESCAPES), "{ls}");

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "terminal escapes in records and outputs");
    r.assert_no_leftovers();
}

#[test]
fn a_fetched_run_is_printed_escaped() {
    if !privileged("a_fetched_run_is_printed_escaped") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let ran = exprun(&r, &["run", "--name", "base", "busybox:latest", "--", "true"]);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let id = "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1";
    let reg = EvilRegistry::start();
    reg.put_run("evil/run", "1", &hostile(record_named(&r, "base"), id), &[]);
    let reference = format!("oci://{}/evil/run:1", reg.host());

    let fetched = exprun(&r, &["replay", &reference, "--dry-run"]);
    assert_inert("replay oci://... --dry-run", &fetched);
    assert!(r.path().join("runs").join(id).join("record.json").is_file(), "{}", stderr(&fetched));
    for args in [&["runs", "ls"][..], &["runs", "show", id], &["runs", "diff", "base", id]] {
        let out = exprun(&r, args);
        assert_inert(&format!("{args:?} of a fetched run"), &out);
        assert!(stdout(&out).contains("\\x1b]52;c;cm0gLXJmIH4K\\x07"), "{args:?}: {}", stdout(&out));
    }

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "terminal escapes in a fetched run");
    r.assert_no_leftovers();
}

#[test]
fn a_containers_command_line_is_printed_escaped_by_ps() {
    let Some(shim) = crate::common::bundle::shim("a_containers_command_line_is_printed_escaped_by_ps") else {
        return;
    };
    let (r, work) = (&shim.r, shim.work.path());
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // The container's init names itself with escapes ($0 of sh -c).
    let b = crate::common::bundle::bundle(work, &["sh", "-c", "echo up; read x; true", ESCAPES]);
    let mut fg = r
        .command(&["run", "-b", b.to_str().unwrap(), "esc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(fg.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "up");
    let ps = exprun(r, &["ps", "esc"]);
    drop(fg.stdin.take());
    assert_eq!(fg.wait().unwrap().code(), Some(0));
    assert_eq!(ps.status.code(), Some(0), "{}", stderr(&ps));
    assert_inert("ps", &ps);
    assert!(stdout(&ps).contains("sh -c echo up; read x; true \\x1b[2J\\x1b]0;owned"), "{}", stdout(&ps));

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "terminal escapes in a container's argv");
    r.assert_no_leftovers();
}

#[test]
fn verify_prints_differing_files_and_content_escaped() {
    if !privileged("verify_prints_differing_files_and_content_escaped") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[]);
    let work = tempfile::tempdir().unwrap();
    let output = format!("{}:/out", work.path().join("out").display());
    let file = format!("f{ESCAPES}");
    // Content that differs on every run and quotes the escapes, so that the
    // verdict names the file and shows its first differing line.
    let script = r#"printf '%s %s\n' "$2" "$(head -c 8 /dev/urandom | od -An -tx1)" > "/out/$1""#;
    let ran = exprun(
        &r,
        &[
            "run",
            "--name",
            "term-v",
            "--output",
            &output,
            "busybox:latest",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            &file,
            ESCAPES,
        ],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    for args in [&["verify", "term-v"][..], &["verify", "term-v", "--json"]] {
        let out = exprun(&r, args);
        assert_eq!(out.status.code(), Some(1), "{args:?} should find the output differs: {}", stderr(&out));
        assert_inert(&format!("{args:?}"), &out);
        assert!(stdout(&out).contains("exe.txt"), "{args:?}: the file is still named: {}", stdout(&out));
    }
    Snapshot::take(&marker, &[]).assert_same_as(&before, "verify of a run with hostile file names");
    r.assert_no_leftovers();
}
