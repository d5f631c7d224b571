//! What `exprun verify` keeps while it replays: copies of the inputs (for
//! `--vary dirent-order`, in /dev/shm) and the replays' outputs, which may
//! hold set-id files until they are cleaned. No other user may reach them.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::common::{privileged, TestRoot};

#[test]
fn verify_scratch_is_private_while_it_lives() {
    if !privileged("verify_scratch_is_private_while_it_lives") {
        return;
    }
    let r = TestRoot::with_busybox();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("secret.csv"), "1,2\n").unwrap();
    // Two entries: dirent-order reorders only a directory it can list otherwise.
    std::fs::write(data.join("secret-2.csv"), "3,4\n").unwrap();
    let (input, output) =
        (format!("{}:/data", data.display()), format!("{}:/out", work.path().join("out").display()));
    let script = "sleep 2; cat /data/secret.csv > /out/copy; chmod 4755 /out/copy";
    let (code, _, err) = r.run(&[
        "--name",
        "slow",
        "--input",
        &input,
        "--output",
        &output,
        "busybox:latest",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "{err}");

    let mut verify = r.command(&["verify", "slow", "--vary", "dirent-order"]);
    let mut child =
        verify.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && child.try_wait().unwrap().is_none() {
        for dir in [r.path().join("verify"), "/dev/shm".into()] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("exprun-verify-{}-", child.id())) {
                    if let Ok(m) = e.metadata() {
                        seen.insert((e.path(), m.mode() & 0o7777));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait().unwrap();
    assert!(seen.iter().any(|(p, _)| p.starts_with("/dev/shm")), "the input copy was never seen: {seen:?}");
    assert!(
        seen.iter().any(|(p, _)| p.starts_with(r.path())),
        "the outputs' scratch was never seen: {seen:?}"
    );
    let open: Vec<_> = seen.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "verify's scratch was open to other users: {open:?}");
    r.assert_no_leftovers();
}
