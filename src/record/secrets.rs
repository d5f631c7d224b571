//! Secret values in records. A value is secret when its variable's name says so
//! (`*TOKEN*`, `*PASSWORD*`, ...: the whole value) or when its content holds a
//! credential ([`super::recognise`]: only that part). Either is stored as
//! `<redacted hmac-sha256:HEX key:ID>`: an HMAC-SHA256 under a key that only
//! this state root holds, so a record shared elsewhere cannot be reversed by
//! hashing a dictionary of passwords, while on this root an unchanged secret
//! still digests the same and a changed one shows. `ID` names the key (a digest
//! of it, not the key), so a record from another root says it cannot compare
//! rather than calling every secret changed.
//!
//! Records of older exprun versions hold `<redacted sha256:HEX>`, unkeyed; they
//! still read, and their secrets are reported as not comparable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::recognise::secret_spans;
use super::Error;

/// Where a redacted value starts.
pub const MARKER_START: &str = "<redacted ";

/// The key's file in the state root.
pub const KEY_FILE: &str = "record-key";

/// Names whose values are secret as a whole.
const SECRET_MARKERS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
    "SESSION",
];

/// Whether an environment variable's name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m))
}

/// Whether `NAME=value` is secret by its name or by its content: what
/// `exprun build` keeps out of an image's `Env`.
pub fn is_secret_entry(name: &str, value: &str) -> bool {
    looks_secret(name) || !secret_spans(value).is_empty()
}

/// HMAC-SHA256 (RFC 2104): small enough to build on sha2 rather than add a crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// The state root's secret key: 32 random bytes, never written anywhere but
/// its own file, never exported.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Key {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex::encode(&hmac_sha256(&bytes, b"exprun record key id")[..8]);
        Self { bytes, id }
    }

    /// The key of the state root at `root`, made on first use: created with
    /// O_EXCL under a temporary name and linked into place, so concurrent
    /// first runs agree on one key and nobody reads half of one.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let path = root.join(KEY_FILE);
        match Self::read(&path) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        crate::fsutil::create_private_dir_all(root).map_err(io("creating", root))?;
        let mut bytes = [0u8; 32];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io("reading", Path::new("/dev/urandom")))?;
        let tmp = root.join(format!(".{KEY_FILE}.tmp-{}", crate::fsutil::random_hex(6)));
        let made = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
            f.sync_all()?;
            match fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                other => other.map(|()| true),
            }
        })();
        let _ = fs::remove_file(&tmp);
        if !made.map_err(io("creating", &path))? {
            // Another exprun made it first.
            return Self::read(&path);
        }
        let _ = File::open(root).and_then(|d| d.sync_all());
        Ok(Self::from_bytes(bytes))
    }

    fn read(path: &Path) -> Result<Self, Error> {
        let bad = |why: String| Error::Key { path: path.to_path_buf(), why };
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ELOOP) => bad("is a symbolic link".into()),
                _ => Error::Io { op: "opening", path: path.to_path_buf(), source },
            })?;
        let meta = f.metadata().map_err(|source| Error::Io { op: "reading", path: path.into(), source })?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        if meta.uid() != me {
            return Err(bad(format!("is owned by uid {}, not by the caller (uid {me})", meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!("has mode {:04o}; other users must not read it", meta.mode() & 0o7777)));
        }
        let mut text = String::new();
        f.take(100).read_to_string(&mut text).map_err(|source| Error::Io {
            op: "reading",
            path: path.into(),
            source,
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim_end(), &mut bytes)
            .map_err(|_| bad("does not hold 64 hex characters".into()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A short name of the key, safe to publish: a digest of it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What a secret value is recorded as.
    pub fn redacted(&self, value: &str) -> String {
        let mut message = b"exprun secret value\0".to_vec();
        message.extend_from_slice(value.as_bytes());
        format!(
            "{MARKER_START}hmac-sha256:{} key:{}>",
            hex::encode(hmac_sha256(&self.bytes, &message)),
            self.id
        )
    }

    /// `value` with each credential in it replaced by its redacted form.
    pub fn redact_content(&self, value: &str) -> String {
        let spans = secret_spans(value);
        if spans.is_empty() {
            return value.to_string();
        }
        let mut out = String::with_capacity(value.len());
        let mut at = 0;
        for r in spans {
            out.push_str(&value[at..r.start]);
            out.push_str(&self.redacted(&value[r.clone()]));
            at = r.end;
        }
        out.push_str(&value[at..]);
        out
    }

    /// The recorded form of the variable `name`'s `value`.
    pub fn redact_env_value(&self, name: &str, value: &str) -> String {
        if looks_secret(name) {
            self.redacted(value)
        } else {
            self.redact_content(value)
        }
    }

    /// `NAME=value` → `NAME=<redacted …>` (by name) or with the credentials in
    /// the value redacted (by content).
    pub fn redact_env_entry(&self, entry: &str) -> String {
        match entry.split_once('=') {
            Some((k, v)) => format!("{k}={}", self.redact_env_value(k, v)),
            None => entry.to_string(),
        }
    }

    /// A command-line argument: `NAME=value` as an environment entry when NAME
    /// is a variable name (`env API_KEY=…`, `make TOKEN=…`), by content otherwise.
    pub fn redact_arg(&self, arg: &str) -> String {
        match arg.split_once('=') {
            Some((k, _)) if is_variable_name(k) => self.redact_env_entry(arg),
            _ => self.redact_content(arg),
        }
    }

    /// exprun's own argv: `-e`/`--env` values as environment entries, every
    /// other argument as [`Key::redact_arg`].
    pub fn redact_command_line(&self, args: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        let mut next_is_env = false;
        for a in args {
            if next_is_env {
                out.push(self.redact_env_entry(a));
                next_is_env = false;
            } else if a == "-e" || a == "--env" {
                out.push(a.clone());
                next_is_env = true;
            } else if let Some(v) = a.strip_prefix("--env=") {
                out.push(format!("--env={}", self.redact_env_entry(v)));
            } else if let Some(v) = a.strip_prefix("-e").filter(|v| v.contains('=')) {
                out.push(format!("-e{}", self.redact_env_entry(v)));
            } else {
                out.push(self.redact_arg(a));
            }
        }
        out
    }

    /// Compare a recorded value of variable `name` with the value given now.
    pub fn compare_env(&self, name: &str, recorded: &str, given: &str) -> Comparison {
        let markers = markers(recorded);
        if let Some(old) = markers.iter().find(|m| m.key.is_none()) {
            return Comparison::Unknown(format!(
                "recorded as an unkeyed {} by an older exprun",
                short(&old.digest)
            ));
        }
        if let Some(other) = markers.iter().find(|m| m.key.as_deref() != Some(self.id.as_str())) {
            return Comparison::Unknown(format!(
                "recorded under another state root's key (key:{})",
                other.key.as_deref().unwrap_or_default()
            ));
        }
        if self.redact_env_value(name, given) == recorded {
            Comparison::Same
        } else {
            Comparison::Changed
        }
    }
}

/// What comparing a recorded secret with a value given now found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// Digested under this root's key, and the same.
    Same,
    /// Digested under this root's key, and different.
    Changed,
    /// Not digested under this root's key: why it cannot be compared.
    Unknown(String),
}

/// One redacted value in a recorded string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `sha256:HEX` or `hmac-sha256:HEX`.
    pub digest: String,
    /// The key's id; none for an unkeyed digest.
    pub key: Option<String>,
}

/// The redacted values in `s`.
pub fn markers(s: &str) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(MARKER_START) {
        let body = &rest[i + MARKER_START.len()..];
        let Some(end) = body.find('>') else { break };
        let inner = &body[..end];
        let (digest, key) = match inner.split_once(" key:") {
            Some((d, k)) => (d, Some(k.to_string())),
            None => (inner, None),
        };
        if digest.starts_with("sha256:") || (digest.starts_with("hmac-sha256:") && key.is_some()) {
            out.push(Marker { digest: digest.to_string(), key });
        }
        rest = &body[end..];
    }
    out
}

/// Whether `s` holds a redacted value.
pub fn is_redacted(s: &str) -> bool {
    !markers(s).is_empty()
}

/// A digest shortened for a table.
pub fn short(digest: &str) -> String {
    let cut = digest.find(':').map_or(0, |i| i + 1) + 12;
    digest.get(..cut).unwrap_or(digest).to_string()
}

fn is_variable_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let h = |k: &[u8], m: &[u8]| hex::encode(hmac_sha256(k, m));
        assert_eq!(
            h(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            h(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            h(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn keyed_digests_differ_per_key_and_never_equal_the_plain_sha256() {
        let (a, b) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
        let ra = a.redacted("hunter2");
        assert_eq!(ra, a.redacted("hunter2"), "stable, so a change shows");
        assert_ne!(ra, b.redacted("hunter2"));
        assert_ne!(a.id(), b.id());
        assert!(
            ra.starts_with("<redacted hmac-sha256:") && ra.ends_with(&format!(" key:{}>", a.id())),
            "{ra}"
        );
        assert!(!ra.contains(crate::digest::Digest::of_bytes(b"hunter2").hex()));
        assert!(!ra.contains("hunter2"));
    }

    #[test]
    fn by_name_the_whole_value_by_content_only_the_credential() {
        let k = Key::from_bytes([7; 32]);
        assert_eq!(k.redact_env_entry("PATH=/bin"), "PATH=/bin");
        assert_eq!(k.redact_env_entry("HF_TOKEN=hunter2"), format!("HF_TOKEN={}", k.redacted("hunter2")));
        assert_eq!(
            k.redact_env_entry("DATABASE_URL=postgres://u:pass@h/db"),
            format!("DATABASE_URL=postgres://u:{}@h/db", k.redacted("pass"))
        );
        assert_eq!(k.redact_arg("PWD=/root"), "PWD=/root", "a variable assignment is judged by name");
        assert_eq!(k.redact_arg("API_KEY=abc"), format!("API_KEY={}", k.redacted("abc")));
        let once = k.redact_arg("x=https://a:b@h password=c");
        assert_eq!(k.redact_arg(&once), once, "redacting twice changes nothing");
        let cl: Vec<String> = [
            "exprun",
            "run",
            "-e",
            "API_KEY=abc",
            "--env=X=1",
            "--env=MY_PASSWORD=p",
            "-eDSN=host=h password=q",
            "img",
            "curl",
            "https://me:tok@example.com/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let red = k.redact_command_line(&cl);
        let joined = red.join(" ");
        for secret in ["abc", "=p ", "=q", ":tok@"] {
            assert!(!joined.contains(secret), "{secret} in {red:?}");
        }
        assert_eq!(red[4], "--env=X=1");
        assert_eq!(red[7], "img");
    }

    #[test]
    fn comparing_needs_this_roots_key() {
        let k = Key::from_bytes([3; 32]);
        let rec = k.redact_env_value("DB", "postgres://u:pass@h/db");
        assert_eq!(k.compare_env("DB", &rec, "postgres://u:pass@h/db"), Comparison::Same);
        assert_eq!(k.compare_env("DB", &rec, "postgres://u:other@h/db"), Comparison::Changed);
        assert_eq!(k.compare_env("DB", &rec, "postgres://v:pass@h/db"), Comparison::Changed);
        let other = Key::from_bytes([4; 32]);
        let Comparison::Unknown(why) = other.compare_env("DB", &rec, "postgres://u:pass@h/db") else {
            panic!("another key must not compare")
        };
        assert!(why.contains("another state root's key"), "{why}");
        let old = format!("<redacted {}>", crate::digest::Digest::of_bytes(b"hunter2"));
        let Comparison::Unknown(why) = k.compare_env("HF_TOKEN", &old, "hunter2") else {
            panic!("an unkeyed digest must not compare")
        };
        assert!(why.contains("unkeyed sha256:"), "{why}");
        assert!(is_redacted(&old) && is_redacted(&rec) && !is_redacted("<redacted>"));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Key::open(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(Key::open(dir.path()).unwrap().redacted("x"), a.redacted("x"), "the same key again");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Key::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("record-key") && e.contains("mode 0644"), "{e}");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        let e = Key::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_file(&path).unwrap();
        fs::write(&path, "short\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Key::open(dir.path()).unwrap_err().to_string().contains("64 hex"));
    }
}
