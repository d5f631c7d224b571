//! A registry that wants the password, or wants to hold exprun forever: it
//! redirects a request that carries the credentials to another port of its
//! host, names a token service on another port over plain HTTP (also to
//! `exprun login`), redirects out of HTTP or without end, and sends a byte a
//! second. Each attack runs the real binary against [`EvilRegistry`]s on
//! loopback; each test asserts the refusal (or the request made without the
//! credentials), that no request to another port carried them, that nothing
//! on the host or in the store changed, and that nothing was left behind.
//!
//! Not testable here: what happens over TLS (a token service on another host
//! over HTTPS gets the credentials with a notice; a redirect from HTTPS to
//! HTTP is refused), since there is no certificate for loopback that exprun
//! would trust; `auth::tests` and `http::tests` (unit) check those rules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::registry::auth_file;
use crate::common::{fixture_dir, TestRoot};
use crate::evil_registry::{EvilRegistry, Reply, Request};
use crate::host::{Marker, Snapshot};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Registry-pw";

/// The `Authorization` value of the test user's credentials.
fn basic() -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

/// The busybox fixture served by `reg` as `repo:tag`; the manifest's digest.
fn serve_busybox(reg: &EvilRegistry, repo: &str, tag: &str) -> String {
    let layout = fixture_dir().join("busybox-oci");
    let blob = |digest: &str| {
        std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    reg.put_blob(repo, blob(m["config"]["digest"].as_str().unwrap()));
    for l in m["layers"].as_array().unwrap() {
        reg.put_blob(repo, blob(l["digest"].as_str().unwrap()));
    }
    reg.put_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", manifest)
}

/// The bytes of the fixture's manifest `digest`.
fn manifest_bytes(digest: &str) -> Vec<u8> {
    let layout = fixture_dir().join("busybox-oci");
    std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

/// The requests that carried an Authorization header, as "METHOD PATH".
fn with_credentials(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.header("authorization").is_some())
        .map(|r| format!("{} {} ({:?})", r.method, r.path, r.header("authorization")))
        .collect()
}

/// `cmd` run to its end or for `limit` at most (then killed): its exit code
/// (`None` when killed), stderr, and how long it ran.
fn run_for(mut cmd: Command, limit: Duration, stdin: &str) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn exprun");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let code = if killed { None } else { out.status.code() };
    (code, String::from_utf8_lossy(&out.stderr).into_owned(), t0.elapsed())
}

/// `exprun pull REFERENCE` in `root` with the test user's credentials in
/// `auth` and `env` besides.
fn pull(root: &TestRoot, reference: &str, auth: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = root.command(&["pull", "-q", reference]);
    cmd.env("REGISTRY_AUTH_FILE", auth);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, err, _) = run_for(cmd, Duration::from_secs(60), "");
    (code, err)
}

/// A root with an empty store, made as any command makes it, so that a
/// snapshot of it holds the store's directories.
fn empty_root() -> TestRoot {
    let root = TestRoot::new();
    let out = root.exprun(&["image", "ls"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    root
}

/// The store's partial downloads: nothing unverified stays. A blob that
/// another layer's download completed (and verified) is kept on purpose, for
/// the next pull, beside the empty lock files.
fn assert_no_partial_blobs(root: &TestRoot) {
    use sha2::Digest as _;
    let partial = root.path().join("store/partial");
    let kept: Vec<PathBuf> = std::fs::read_dir(&partial)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            let lock = p.extension().is_some_and(|x| x == "lock") && bytes.is_empty();
            let verified = p.file_name().is_some_and(|n| *n == *hex::encode(sha2::Sha256::digest(&bytes)));
            !lock && !verified
        })
        .collect();
    assert!(kept.is_empty(), "partial blobs left in the store: {kept:?}");
}

#[test]
fn credentials_never_follow_a_redirect_to_another_port_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    // The other port serves the image honestly, or asks for credentials itself.
    let honest = EvilRegistry::start();
    let digest = serve_busybox(&honest, "lab/busybox", "1");
    let asking = EvilRegistry::with(|_| Some(Reply::Challenge("Basic realm=\"other port\"".into())));
    let (honest_port, asking_port) = (honest.port(), asking.port());
    let want = basic();
    let reg = EvilRegistry::with(move |req| {
        if req.header("authorization") != Some(want.as_str()) {
            return Some(Reply::Challenge("Basic realm=\"evil\"".into()));
        }
        let port = if req.path.contains("/asking/") { asking_port } else { honest_port };
        (req.path.contains("/manifests/") || req.path.contains("/blobs/")).then(|| {
            Reply::Redirect(307, format!("http://127.0.0.1:{port}{}", req.path.replace("/asking", "")))
        })
    });
    let auth = auth_file(dir.path(), &reg.host(), USER, PASSWORD);
    let marker = Marker::new();

    // Redirected to a port that serves: the pull works, without credentials there.
    let root = TestRoot::new();
    let before = Snapshot::take(&marker, &[]);
    let (code, err) = pull(&root, &format!("{}/lab/busybox:1", reg.host()), &auth, &[]);
    assert_eq!(code, Some(0), "the pull through the redirect failed: {err}");
    assert!(!with_credentials(&reg.requests()).is_empty(), "the registry itself never got the credentials");
    let there = honest.requests();
    assert!(
        there.iter().filter(|r| r.path.contains("/manifests/") || r.path.contains("/blobs/")).count() >= 3,
        "the redirects were not followed to the other port: {there:?}"
    );
    assert_eq!(with_credentials(&there), Vec::<String>::new(), "credentials reached another port");
    let image = root.exprun(&["image", "inspect", &format!("{}/lab/busybox:1", reg.host())], None);
    assert!(
        String::from_utf8_lossy(&image.stdout).contains(&digest),
        "the image pulled is not the one served"
    );
    Snapshot::take(&marker, &[]).assert_same_as(&before, "redirect to another port");
    root.assert_no_leftovers();

    // Redirected to a port that asks for credentials: refused, and it gets none.
    let root = empty_root();
    let before = Snapshot::take(&marker, &[root.path()]);
    let (code, err) = pull(&root, &format!("{}/lab/asking/busybox:1", reg.host()), &auth, &[]);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("HTTP 401")
            && err.contains(&format!("127.0.0.1:{asking_port}"))
            && err.contains("redirected"),
        "the error does not say that the other port asked for credentials: {err}"
    );
    assert!(!asking.requests().is_empty(), "the redirect to the asking port was not followed");
    assert_eq!(
        with_credentials(&asking.requests()),
        Vec::<String>::new(),
        "credentials reached another port"
    );
    assert!(!err.contains(PASSWORD));
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "redirect to a port that asks");
    assert_no_partial_blobs(&root);
    root.assert_no_leftovers();
}

#[test]
fn a_token_service_on_another_port_over_plain_http_never_gets_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let realm = EvilRegistry::with(|req| {
        req.path.starts_with("/token").then(|| Reply::Status(200, r#"{"token":"t0k"}"#.into()))
    });
    let realm_origin = format!("http://127.0.0.1:{}", realm.port());
    let challenge = format!("Bearer realm=\"{realm_origin}/token\",service=\"evil\"");
    let reg = EvilRegistry::with(move |req| {
        (req.header("authorization") != Some("Bearer t0k")).then(|| Reply::Challenge(challenge.clone()))
    });
    serve_busybox(&reg, "lab/busybox", "1");
    let auth = auth_file(dir.path(), &reg.host(), USER, PASSWORD);
    let reference = format!("{}/lab/busybox:1", reg.host());
    let marker = Marker::new();

    // pull
    let root = empty_root();
    let before = Snapshot::take(&marker, &[root.path()]);
    let (code, err) = pull(&root, &reference, &auth, &[]);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("token service")
            && err.contains("plain HTTP")
            && err.contains(&realm_origin)
            && err.contains("token-realms"),
        "the error does not say where the password would have gone and how to allow it: {err}"
    );
    assert_eq!(
        with_credentials(&realm.requests()),
        Vec::<String>::new(),
        "the token service got the password"
    );
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "token service on another port (pull)");
    assert_no_partial_blobs(&root);
    root.assert_no_leftovers();

    // login: refused, and nothing is written.
    let written = dir.path().join("login/auth.json");
    let mut login = root.command(&["login", &reg.host(), "-u", USER, "--password-stdin"]);
    login.env("REGISTRY_AUTH_FILE", &written);
    let (code, err, _) = run_for(login, Duration::from_secs(60), &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("token service") && err.contains("plain HTTP"), "{err}");
    assert_eq!(
        with_credentials(&realm.requests()),
        Vec::<String>::new(),
        "login sent the token service the password"
    );
    assert!(!written.exists(), "login stored credentials it could not check");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "token service on another port (login)");
    root.assert_no_leftovers();

    // The user vouches for that token service in registries.conf: it gets them.
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"{}\"\ntoken-realms = [\"{realm_origin}\"]\n", reg.host()),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let allowed = TestRoot::new();
    let (code, err) = pull(&allowed, &reference, &auth, &[("CONTAINERS_REGISTRIES_CONF", conf)]);
    assert_eq!(code, Some(0), "a token service listed in token-realms was refused: {err}");
    let sent = realm.requests();
    assert!(sent.iter().any(|r| r.header("authorization") == Some(basic().as_str())), "{sent:?}");
    allowed.assert_no_leftovers();
}

#[test]
fn redirects_out_of_http_or_without_end_are_refused() {
    let reg = EvilRegistry::with(|req| {
        if req.path.starts_with("/v2/file/") {
            return Some(Reply::Redirect(302, "file:///etc/shadow".into()));
        }
        if req.path.starts_with("/v2/loop/") {
            return Some(Reply::Redirect(302, req.path.clone()));
        }
        None
    });
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path(), &reg.host(), USER, PASSWORD);
    let marker = Marker::new();
    let root = empty_root();
    let before = Snapshot::take(&marker, &[root.path()]);
    let (code, err) = pull(&root, &format!("{}/file/x:1", reg.host()), &auth, &[]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("file:///etc/shadow") && err.contains("not an http:// or https:// URL"), "{err}");
    let (code, err) = pull(&root, &format!("{}/loop/x:1", reg.host()), &auth, &[]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("more than 10 redirects"), "{err}");
    let loops = reg.requests().iter().filter(|r| r.path.contains("/loop/")).count();
    assert!(loops <= 11 * 4, "the redirect loop was followed {loops} times");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "redirects out of HTTP or without end");
    root.assert_no_leftovers();
}

#[test]
fn a_registry_that_sends_a_byte_a_second_fails_the_pull_by_the_deadline() {
    let reg = EvilRegistry::with(|req| {
        let stall = (req.path.starts_with("/v2/slow-manifest/") && req.path.contains("/manifests/"))
            || (req.path.starts_with("/v2/slow-layer/") && req.path.ends_with(LAYER_HEX))
            || (req.path.starts_with("/v2/slow-config/") && req.path.contains("/blobs/"));
        stall.then_some(Reply::Stall)
    });
    serve_busybox(&reg, "slow-manifest/busybox", "1");
    serve_busybox(&reg, "slow-layer/busybox", "1");
    // A config it claims is 32 MiB, the most exprun reads into memory, so
    // that a deadline in proportion to the size would give it half an hour.
    let config = {
        let digest = serve_busybox(&reg, "slow-config/busybox", "real");
        let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes(&digest)).unwrap();
        m["config"]["size"] = serde_json::json!(32 << 20);
        let bytes = serde_json::to_vec(&m).unwrap();
        reg.put_manifest("slow-config/busybox", "1", "application/vnd.oci.image.manifest.v1+json", bytes);
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path(), &reg.host(), USER, PASSWORD);
    let marker = Marker::new();
    let root = empty_root();
    let before = Snapshot::take(&marker, &[root.path()]);

    for (repo, what) in
        [("slow-manifest", "manifests/1"), ("slow-config", config.as_str()), ("slow-layer", LAYER_HEX)]
    {
        let reference = format!("{}/{repo}/busybox:1", reg.host());
        let mut cmd = root.command(&["pull", "-q", &reference]);
        cmd.env("REGISTRY_AUTH_FILE", &auth).env("EXPRUN_REGISTRY_TIMEOUT", "2");
        let (code, err, took) = run_for(cmd, Duration::from_secs(60), "");
        assert_eq!(code, Some(125), "{repo}: the pull did not fail (still running after {took:?}?): {err}");
        assert!(took < Duration::from_secs(15), "{repo}: the pull took {took:?} with a 2 s limit: {err}");
        assert!(
            err.contains(what)
                && err.contains("--registry-timeout")
                && err.contains("EXPRUN_REGISTRY_TIMEOUT"),
            "{repo}: the error does not name the request and the limit: {err}"
        );
    }
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "a byte a second");
    assert_no_partial_blobs(&root);
    root.assert_no_leftovers();
}

/// The busybox fixture's layer, which the slow registry trickles.
const LAYER_HEX: &str = "78ae4aa8205c9bd24af1f275d38fb2091f9217427e7bfa5e64ab77e6d3e74e43";
