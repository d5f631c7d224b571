//! Records too large to read whole: a shared or fetched record can list a
//! million files, and one planted in a state root can be any size. Every
//! reader refuses a record over the limit by name, and `runs diff` of two
//! large records stays within a few hundred MiB of address space.

use std::process::{Command, Output};

use serde_json::{json, Value};
use sha2::Digest as _;

use crate::common::{exprun_bin, privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// Files in each large record: about 37 MB of record, as a run that leaves
/// 150,000 files in its output writes it.
const FILES: usize = 150_000;
/// Every this many files differ between the two records.
const EVERY: usize = 100;
/// The address space `runs diff` gets: the records take 75 MB on disk; before
/// the trees were compared in place it needed 25 times that.
const ADDRESS_SPACE: u64 = 320 << 20;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `record` (a real run's) as run `id` whose only output lists [`FILES`]
/// files; `variant` changes every [`EVERY`]th file's content.
fn large(record: &Value, id: &str, variant: &str) -> Vec<u8> {
    let mut rec = record.clone();
    rec["run_id"] = id.into();
    let mut entries = Vec::with_capacity(FILES + FILES / 100);
    for d in 0..FILES / 100 {
        entries.push(json!({"path": format!("d{d:05}"), "kind": "dir", "mode": 0o755}));
        for f in 0..100 {
            let n = d * 100 + f;
            let content = if n % EVERY == 0 { format!("{n} {variant}\n") } else { format!("{n}\n") };
            entries.push(json!({
                "path": format!("d{d:05}/result-{f:03}.csv"), "kind": "file", "size": content.len(),
                "digest": format!("sha256:{}", hex::encode(sha2::Sha256::digest(content.as_bytes()))),
                "mode": 0o644
            }));
        }
    }
    let tree = &mut rec["outputs"][0]["tree"];
    tree["files"] = FILES.into();
    tree["digest"] = format!("sha256:{}", hex::encode(sha2::Sha256::digest(variant.as_bytes()))).into();
    tree["entries"] = Value::Array(entries);
    let mut bytes = serde_json::to_vec_pretty(&rec).unwrap();
    bytes.push(b'\n');
    bytes
}

fn plant(r: &TestRoot, id: &str, bytes: &[u8]) {
    let dir = r.path().join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), bytes).unwrap();
}

/// `exprun --root R ARGS` with at most [`ADDRESS_SPACE`] of address space.
fn limited(r: &TestRoot, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={ADDRESS_SPACE}"))
        .arg(exprun_bin())
        .arg("--root")
        .arg(r.path())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("prlimit (util-linux) runs exprun")
}

fn with_limit(r: &TestRoot, limit: &str, args: &[&str]) -> Output {
    r.command(args).env("EXPRUN_MAX_RECORD_SIZE", limit).output().unwrap()
}

#[test]
fn runs_diff_of_two_large_records_stays_in_bounded_memory() {
    if !privileged("runs_diff_of_two_large_records_stays_in_bounded_memory") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let out = tempfile::tempdir().unwrap();
    let spec = format!("{}:/out", out.path().display());
    let (code, _, err) =
        r.run(&["--name", "seed", "--output", &spec, "busybox:latest", "--", "touch", "/out/x"]);
    assert_eq!(code, 0, "{err}");
    let seed = r.last_record();
    let (a, b) = ("a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2");
    let bytes_a = large(&seed, a, "one");
    plant(&r, a, &bytes_a);
    plant(&r, b, &large(&seed, b, "two"));
    assert!(bytes_a.len() > 30 << 20, "{} bytes", bytes_a.len());

    let changed = FILES / EVERY;
    let d = limited(&r, &["runs", "diff", a, b]);
    assert_eq!(d.status.code(), Some(1), "{}", stderr(&d));
    let text = stdout(&d);
    assert_eq!(text.matches("  output /out: ").count(), 100, "the first 100: {text}");
    assert!(text.contains("  output /out: d00000/result-000.csv changed (6 B, sha256:"), "{text}");
    let more = format!("  ... {} more in outputs[/out] (--limit all lists them)\n", changed - 100);
    assert!(text.ends_with(&more), "{text}");

    let d = limited(&r, &["runs", "diff", a, b, "--json", "--limit", "all"]);
    assert_eq!(d.status.code(), Some(1), "{}", stderr(&d));
    let j: Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(j["outcome"].as_array().unwrap().len(), changed);
    assert_eq!(j["omitted"], json!([]));
    assert_eq!(j["outcome"][0]["section"], "outputs[/out]");

    // A lower limit refuses them, naming the file, its size and the limit.
    let refused = with_limit(&r, "16m", &["runs", "diff", a, b]);
    assert_eq!(refused.status.code(), Some(125));
    let path = r.path().join("runs").join(a).join("record.json");
    let want = format!(
        "exprun: error: record {} is {} bytes ({:.1} MiB), over the 16.0 MiB limit on run records",
        path.display(),
        bytes_a.len(),
        bytes_a.len() as f64 / 1048576.0
    );
    assert!(stderr(&refused).starts_with(&want), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("set EXPRUN_MAX_RECORD_SIZE above its size"), "{}", stderr(&refused));
    let bad = with_limit(&r, "lots", &["runs", "show", "seed"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("EXPRUN_MAX_RECORD_SIZE=lots: expected a number"), "{}", stderr(&bad));

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "runs diff of two large records");
    r.assert_no_leftovers();
}

#[test]
fn a_record_over_the_limit_is_refused_by_every_reader() {
    if !privileged("a_record_over_the_limit_is_refused_by_every_reader") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let (code, _, err) = r.run(&["--name", "small", "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    // 300 MiB that cost no disk: refused before a byte is read.
    let id = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    plant(&r, id, b"");
    let path = r.path().join("runs").join(id).join("record.json");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(300 << 20).unwrap();

    let want = format!(
        "record {} is 314572800 bytes (300.0 MiB), over the 256.0 MiB limit on run records",
        path.display()
    );
    for args in [
        &["runs", "show", id][..],
        &["runs", "diff", "small", id],
        &["runs", "export", id, "--format", "in-toto"],
        &["replay", id, "--dry-run"],
    ] {
        let o = r.exprun(args, None);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&want), "{args:?}: {}", stderr(&o));
    }
    // runs ls names it and lists the others.
    let ls = r.exprun(&["runs", "ls"], None);
    assert_eq!(ls.status.code(), Some(0), "{}", stderr(&ls));
    assert!(stderr(&ls).contains(&want), "{}", stderr(&ls));
    assert!(stdout(&ls).contains("small"), "{}", stdout(&ls));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 300 << 20, "left as it was");
    // The leftover check parses every record: not this one.
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a record over the limit");
    r.assert_no_leftovers();
}

#[test]
fn a_fetched_record_is_bounded_by_the_record_limit_not_a_manifests() {
    if !privileged("a_fetched_record_is_bounded_by_the_record_limit_not_a_manifests") {
        return;
    }
    let here = TestRoot::with_busybox();
    let out = tempfile::tempdir().unwrap();
    let spec = format!("{}:/out", out.path().display());
    let (code, _, err) =
        here.run(&["--name", "seed", "--output", &spec, "busybox:latest", "--", "touch", "/out/x"]);
    assert_eq!(code, 0, "{err}");
    let id = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    let bytes = large(&here.last_record(), id, "one");
    assert!(bytes.len() > 32 << 20, "past a manifest's 32 MiB: {} bytes", bytes.len());
    let registry = crate::evil_registry::EvilRegistry::start();
    registry.put_run("runs/large", "t", &serde_json::from_slice(&bytes).unwrap(), &[]);
    let reference = format!("oci://{}/runs/large:t", registry.host());

    let there = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[]);
    // Under a lower record limit it is refused by name, and nothing is kept.
    let refused = with_limit(&there, "16m", &["replay", &reference, "--dry-run"]);
    assert_eq!(refused.status.code(), Some(125), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("over the 16777216-byte limit of a run record"),
        "{}",
        stderr(&refused)
    );
    assert!(!there.path().join("runs").join(id).exists());
    // Under the default it is fetched whole, as exprun would read it.
    let fetched = there.exprun(&["replay", &reference, "--dry-run"], None);
    assert_eq!(fetched.status.code(), Some(0), "{}", stderr(&fetched));
    assert!(stderr(&fetched).contains(&format!("fetched run {}", &id[..12])), "{}", stderr(&fetched));
    Snapshot::take(&marker, &[]).assert_same_as(&before, "a fetched record past a manifest's size");
    there.assert_no_leftovers();
}
