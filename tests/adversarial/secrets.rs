//! Secrets in records, and records that attack the terminal they are shown on.
//! A record is meant to be shared (`push --run`, `runs export`), so nothing in
//! the state root may hold a credential in clear or as a plain digest that a
//! dictionary reverses; and what a container put into its record is printed
//! for people, so it must not be able to drive their terminal.

use std::path::Path;

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if t.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

fn out(root: &TestRoot, args: &[&str]) -> (i32, String, String) {
    let o = root.exprun(args, None);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const GH_TOKEN: &str = "ghp_R4nd0mL00k1ngT0k3nV4lu3Xy9Zq8Wv7Ut6Sr";

#[test]
fn secrets_recognised_by_content_never_reach_the_state_root() {
    if !privileged("secrets_recognised_by_content_never_reach_the_state_root") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[root.path()]);

    // Weak passwords, the kind a dictionary holds, in shapes whose variable
    // names say nothing.
    let secrets = ["Pa55word1", "letmein99", "dragon777", "qwerty123", "sunshine1", GH_TOKEN];
    let env = [
        "DATABASE_URL=postgres://app:Pa55word1@db.internal:5432/prod".to_string(),
        "APP_DSN=host=db user=app password=letmein99 dbname=prod".to_string(),
        "REPORTS_DB=jdbc:sqlserver://db:1433;user=app;password=dragon777;encrypt=true".to_string(),
        format!("GIT_REMOTE={GH_TOKEN}"),
        "DB_PASSWORD=sunshine1".to_string(),
        "PLAIN=keep-me".to_string(),
    ];
    let mut args: Vec<&str> = vec!["run", "--name", "with-secrets"];
    for e in &env {
        args.extend(["-e", e]);
    }
    // The container gets the real values; the command line holds a URL
    // credential too, which the record must hide as well.
    let script =
        r#"test "$DATABASE_URL" = "postgres://app:Pa55word1@db.internal:5432/prod" && test -n "$APP_DSN""#;
    args.extend([
        "busybox:latest",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        "https://deploy:qwerty123@git.internal/repo.git",
    ]);
    let (code, stdout, stderr) = out(&root, &args);
    assert_eq!(code, 0, "the container must see the real values: {stdout}{stderr}");

    // Nothing under the root holds a secret, or its unsalted sha256 (what a
    // dictionary attack on the old records computed).
    let mut dictionary: Vec<String> =
        ["password", "123456", "hunter2", "letmein", "admin"].iter().map(|s| s.to_string()).collect();
    dictionary.extend(secrets.iter().map(|s| s.to_string()));
    for s in secrets {
        let hits = files_containing(root.path(), s.as_bytes());
        assert!(hits.is_empty(), "{s} stored in clear in {hits:?}");
    }
    for word in &dictionary {
        let digest = sha256_hex(word.as_bytes());
        let hits = files_containing(root.path(), digest.as_bytes());
        assert!(hits.is_empty(), "the plain sha256 of {word} is in {hits:?}: a dictionary reverses it");
    }
    let record = root.last_record();
    let text = record.to_string();
    assert!(text.contains("postgres://app:<redacted hmac-sha256:"), "the user and host stay: the record");
    assert!(text.contains("PLAIN=keep-me"), "ordinary values stay: the record");
    assert!(text.contains("https://deploy:<redacted hmac-sha256:"), "argv is redacted too");

    for shown in [
        out(&root, &["runs", "show", "with-secrets"]),
        out(&root, &["runs", "show", "with-secrets", "--json"]),
        out(&root, &["runs", "ls"]),
        out(&root, &["runs", "export", "with-secrets", "--format", "in-toto"]),
    ] {
        for s in secrets {
            assert!(!shown.1.contains(s) && !shown.2.contains(s), "{s} printed: {}{}", shown.1, shown.2);
        }
    }

    // The key: the caller's, private, and not in the record that `push --run` sends.
    use std::os::unix::fs::MetadataExt;
    let key = root.path().join("record-key");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file() && meta.mode() & 0o777 == 0o600 && meta.uid() == 0, "{meta:?}");
    let key_hex = std::fs::read_to_string(&key).unwrap();
    let hits = files_containing(&root.path().join("runs"), key_hex.trim().as_bytes());
    assert!(hits.is_empty(), "the key is in {hits:?}");

    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "secrets by content");
    root.assert_no_leftovers();
}

#[test]
fn a_recorded_secret_compares_only_under_its_own_roots_key() {
    if !privileged("a_recorded_secret_compares_only_under_its_own_roots_key") {
        return;
    }
    let (root, other) = (TestRoot::with_busybox(), TestRoot::with_busybox());
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[root.path(), other.path()]);
    let url = "postgres://app:s3cret-1@db/prod";
    let (code, o, e) =
        root.run(&["--name", "keyed", "-e", &format!("DATABASE_URL={url}"), "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{o}{e}");
    let replay = |r: &TestRoot, value: &str| {
        let o = r.command(&["replay", "--dry-run", "keyed"]).env("DATABASE_URL", value).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
    };

    // The same root: unchanged passes, changed is blocking drift.
    let (code, err) = replay(&root, url);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("env DATABASE_URL"), "an unchanged secret is no drift: {err}");
    let (code, err) = replay(&root, "postgres://app:s3cret-2@db/prod");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("env DATABASE_URL") && err.contains("a different value"), "{err}");

    // Another root (another key): it cannot say "unchanged", nor "changed".
    let id = root.last_record()["run_id"].as_str().unwrap().to_string();
    let dest = other.path().join("runs").join(&id);
    std::fs::create_dir_all(&dest).unwrap();
    // The record whole: its shared parts are objects of the root that wrote it.
    let whole = crate::common::hydrated(&root.path().join("runs").join(&id).join("record.json"));
    std::fs::write(dest.join("record.json"), serde_json::to_vec_pretty(&whole).unwrap()).unwrap();
    let replay_other = |value: &str| {
        let o = other.command(&["replay", "--dry-run", &id]).env("DATABASE_URL", value).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = replay_other(url);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not compared: recorded under another state root's key"), "{err}");

    // An old record, with an unkeyed sha256: still read, never "unchanged".
    let path = dest.join("record.json");
    let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let old = format!("<redacted sha256:{}>", sha256_hex(b"s3cret-1"));
    for pair in rec["request"]["env"].as_array_mut().unwrap() {
        if pair[0] == "DATABASE_URL" {
            pair[1] = serde_json::json!(format!("postgres://app:{old}@db/prod"));
        }
    }
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let (code, err) = replay_other(url);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not compared: recorded as an unkeyed sha256:"), "{err}");

    Snapshot::take(&marker, &[root.path(), other.path()]).assert_same_as(&before, "secret comparison");
    root.assert_no_leftovers();
    other.assert_no_leftovers();
}

#[test]
fn records_cannot_drive_the_terminal() {
    if !privileged("records_cannot_drive_the_terminal") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[root.path()]);
    // Write the clipboard (OSC 52), set the title, clear the screen, and break
    // a value across lines to forge the lines after it.
    let clipboard = "\x1b]52;c;cm0gLXJmIH4K\x07";
    let title = "\x1b]0;owned\x07";
    let clear = "\x1b[2J";
    let forged = "x\nstatus:     exited (exit 0)";
    let evil_a = format!("EVIL={forged}{title}");
    let evil_b = format!("EVIL=other{clear}");
    let (code, o, e) =
        root.run(&["--name", "term-a", "-e", &evil_a, "busybox:latest", "--", "true", clipboard, forged]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) =
        root.run(&["--name", "term-b", "-e", &evil_b, "busybox:latest", "--", "true", clear, "\u{9b}0m"]);
    assert_eq!(code, 0, "{o}{e}");

    let raw = ['\x1b', '\x07', '\u{9b}'];
    for args in [
        &["runs", "ls"][..],
        &["runs", "show", "term-a"],
        &["runs", "show", "term-b"],
        &["runs", "diff", "term-a", "term-b"],
    ] {
        let (_, stdout, stderr) = out(&root, args);
        for c in raw {
            assert!(!stdout.contains(c) && !stderr.contains(c), "{args:?} printed {c:?} raw:\n{stdout:?}");
        }
        assert!(!stdout.contains(forged), "{args:?} printed a forged line:\n{stdout}");
        assert!(stdout.contains("\\x1b"), "{args:?} shows the escape escaped:\n{stdout}");
    }
    let (_, show, _) = out(&root, &["runs", "show", "term-a"]);
    assert!(show.contains("x\\nstatus:     exited"), "the newline is shown as \\n:\n{show}");

    // --json stays exact.
    let (_, json, _) = out(&root, &["runs", "show", "term-a", "--json"]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["spec"]["process"]["args"][1], clipboard);
    assert!(!json.contains('\x1b'));

    // A name cannot carry them at all, and a long one is told its limit.
    let (code, _, err) = root.run(&["--name", &format!("n{clear}"), "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(!err.contains('\x1b'), "the refusal escapes the name: {err:?}");
    let long = "n".repeat(129);
    let (code, _, err) = root.run(&["--name", &long, "busybox:latest", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("129 characters long; a name has at most 128"), "{err}");

    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "terminal escapes in records");
    root.assert_no_leftovers();
}
