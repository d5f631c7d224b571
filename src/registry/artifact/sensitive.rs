//! Files that hold secrets, found before `push --run` uploads them: by name (a
//! `.env`, a private key, a cloud or registry credentials file) and by content
//! (whatever `record::recognise` calls a credential: URL passwords, DSN
//! passwords, token shapes, PEM private keys), read as the file is archived.

use crate::record::recognise::secret_spans;

/// File names that hold secrets by convention, whatever their content.
const NAMES: &[&str] = &[
    ".env",
    ".envrc",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".htpasswd",
    ".dockercfg",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "credentials",
    "credentials.json",
    "kubeconfig",
    "secrets.json",
    "secrets.yaml",
    "secrets.yml",
    "terraform.tfstate",
];

/// File name endings of keys and key stores.
const SUFFIXES: &[&str] = &[".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk", ".kdbx"];

/// Paths (their last components) that hold credentials.
const PATHS: &[&str] = &[".git/config", ".aws/credentials", ".docker/config.json", ".kube/config"];

/// Why the file at `path` (relative, `/`-separated) holds secrets by its
/// name, if it does: the rule that matched.
pub fn by_name(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if NAMES.contains(&name) {
        return Some(name.to_string());
    }
    if name.starts_with(".env.") {
        return Some(".env.*".into());
    }
    if let Some(s) = SUFFIXES.iter().find(|s| name.len() > s.len() && name.ends_with(*s)) {
        return Some(format!("*{s}"));
    }
    if path.split('/').any(|c| c == ".ssh") && !name.ends_with(".pub") && name != "known_hosts" {
        return Some(".ssh/*".into());
    }
    PATHS.iter().find(|p| path == **p || path.ends_with(&format!("/{p}"))).map(|p| (*p).to_string())
}

/// Bytes scanned at once; consecutive windows overlap by [`OVERLAP`], so a
/// credential split between two windows is still seen whole (a PEM key of
/// 4096-bit RSA is about 3.3 KiB).
const WINDOW: usize = 1 << 20;
const OVERLAP: usize = 16 << 10;

/// Scans a file's content as it streams past for the first credential, and
/// says on which line it starts.
#[derive(Debug, Default)]
pub struct Scanner {
    buf: Vec<u8>,
    /// The line number of `buf[0]` (0-based).
    base_line: usize,
    found: Option<usize>,
}

impl Scanner {
    /// Feed the next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while self.found.is_none() && !bytes.is_empty() {
            let room = WINDOW - self.buf.len();
            let n = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == WINDOW {
                self.scan();
                let drop = self.buf.len() - OVERLAP;
                self.base_line += newlines(&self.buf[..drop]);
                self.buf.drain(..drop);
            }
        }
    }

    /// The line (1-based) where the first credential starts, if any.
    pub fn finish(mut self) -> Option<usize> {
        if self.found.is_none() {
            self.scan();
        }
        self.found
    }

    fn scan(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        if let Some(span) = secret_spans(&text).first() {
            self.found = Some(self.base_line + newlines(&text.as_bytes()[..span.start]) + 1);
        }
    }
}

fn newlines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hold_secrets() {
        for (path, rule) in [
            (".env", ".env"),
            ("app/.env.production", ".env.*"),
            ("repo/.git/config", ".git/config"),
            (".git/config", ".git/config"),
            ("certs/server.pem", "*.pem"),
            ("home/.ssh/id_ed25519", "id_ed25519"),
            ("home/.ssh/deploy", ".ssh/*"),
            ("x/.aws/credentials", "credentials"),
            ("k/.kube/config", ".kube/config"),
        ] {
            assert_eq!(by_name(path).as_deref(), Some(rule), "{path}");
        }
        for path in ["data.csv", "environment.yml", "home/.ssh/id_rsa.pub", "config", ".pem", "src/keys.rs"] {
            assert_eq!(by_name(path), None, "{path}");
        }
    }

    #[test]
    fn content_scanned_across_windows_names_the_line() {
        let mut s = Scanner::default();
        s.update(b"a,b\n1,2\n");
        assert_eq!(s.finish(), None);

        let key = "AKIA".to_string() + &"Q".repeat(16);
        let mut s = Scanner::default();
        // A window of filler lines, then a key that the window's end cuts in two.
        let filler = "x".repeat(99) + "\n";
        let lines = (WINDOW - 20) / filler.len();
        for _ in 0..lines {
            s.update(filler.as_bytes());
        }
        let pad = WINDOW - 20 - lines * filler.len();
        s.update(" ".repeat(pad).as_bytes());
        for b in format!("aws_key = {key}\n").bytes() {
            s.update(&[b]);
        }
        assert_eq!(s.finish(), Some(lines + 1));
    }
}
