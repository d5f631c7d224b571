//! Secret values recognised by their content, whatever the variable or argument
//! that carries them is called. Each rule is narrow on purpose: a record that
//! hides ordinary paths, URLs and names is a worse record, so a rule matches
//! only a shape that is a credential by construction.
//!
//! - a password in a URL: `scheme://user:PASSWORD@host` (any scheme; the
//!   authority ends at `/`, `?`, `#`, whitespace or a quote, and the password
//!   runs to its last `@`; a user without a password is kept);
//! - a password in a DSN or connection string: `password=`, `passwd=`, `pwd=`
//!   (any case, spaces around `=` allowed), at the start or after whitespace,
//!   `;`, `&`, `?`, `(`, `,` or `-`; the value runs to `;`, `&`, `)`,
//!   whitespace or the end, or is quoted (`'...'`, `"..."`, `{...}`);
//! - `Authorization: SCHEME CREDENTIALS` (an HTTP header on a command line);
//! - token shapes: AWS access key ids (`AKIA`/`ASIA` and 16 upper-case
//!   letters or digits), GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`,
//!   `github_pat_`), GitLab (`glpat-`), Slack (`xoxa-`, `xoxb-`, `xoxp-`,
//!   `xoxr-`, `xoxs-`), Hugging Face (`hf_`), OpenAI and Anthropic (`sk-`),
//!   Stripe (`sk_live_`, `rk_live_`), Google API keys (`AIza`), each with the
//!   length of a real token, and JSON Web Tokens (`eyJ….eyJ….…`);
//! - PEM private key blocks (`-----BEGIN … PRIVATE KEY-----` to its `END`).

use std::ops::Range;

/// The byte ranges of `s` that hold secrets, sorted and not overlapping.
pub fn secret_spans(s: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    url_passwords(s, &mut spans);
    dsn_passwords(s, &mut spans);
    authorization(s, &mut spans);
    tokens(s, &mut spans);
    pem_blocks(s, &mut spans);
    // A value redacted before (a record read back) is not redacted again.
    spans.retain(|r| !r.is_empty() && !s[r.start..].starts_with(super::secrets::MARKER_START));
    spans.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn is_quote_or_space(b: u8) -> bool {
    b.is_ascii_whitespace() || b == b'"' || b == b'\''
}

fn url_passwords(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find("://").map(|i| i + from) {
        from = i + 3;
        let scheme_start = b[..i]
            .iter()
            .rposition(|&c| !(c.is_ascii_alphanumeric() || b"+.-".contains(&c)))
            .map_or(0, |p| p + 1);
        if scheme_start == i || !b[scheme_start].is_ascii_alphabetic() {
            continue;
        }
        let start = i + 3;
        let end = b[start..]
            .iter()
            .position(|&c| b"/?#<>".contains(&c) || is_quote_or_space(c))
            .map_or(b.len(), |p| p + start);
        let Some(at) = b[start..end].iter().rposition(|&c| c == b'@').map(|p| p + start) else { continue };
        if let Some(colon) = b[start..at].iter().position(|&c| c == b':') {
            out.push(start + colon + 1..at);
        }
    }
}

const DSN_KEYS: &[&str] = &["password", "passwd", "pwd"];

fn dsn_passwords(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let lower = s.to_ascii_lowercase();
    for key in DSN_KEYS {
        let mut from = 0;
        while let Some(k) = lower[from..].find(key).map(|k| k + from) {
            from = k + key.len();
            if k > 0 && !(b[k - 1].is_ascii_whitespace() || b";&?(,-".contains(&b[k - 1])) {
                continue;
            }
            let mut j = k + key.len();
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j >= b.len() || b[j] != b'=' {
                continue;
            }
            j += 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            out.push(value_at(b, j));
        }
    }
}

/// The value starting at `j`: quoted, braced (ODBC), or up to a separator.
fn value_at(b: &[u8], j: usize) -> Range<usize> {
    let close = match b.get(j) {
        Some(b'\'') => Some(b'\''),
        Some(b'"') => Some(b'"'),
        Some(b'{') => Some(b'}'),
        _ => None,
    };
    if let Some(close) = close {
        let mut k = j + 1;
        while k < b.len() && b[k] != close {
            k += if b[k] == b'\\' { 2 } else { 1 };
        }
        return j + 1..k.min(b.len());
    }
    let end = b[j..]
        .iter()
        .position(|&c| c.is_ascii_whitespace() || b";&)".contains(&c))
        .map_or(b.len(), |p| p + j);
    j..end
}

fn authorization(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(k) = lower[from..].find("authorization:").map(|k| k + from) {
        from = k + "authorization:".len();
        let skip_spaces = |mut j: usize| {
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            j
        };
        let mut j = skip_spaces(from);
        let word_end = b[j..].iter().position(|c| !c.is_ascii_alphabetic()).map_or(b.len(), |p| p + j);
        // A scheme (`Bearer`, `Basic`, `token`) precedes the credentials.
        if word_end < b.len() && b[word_end] == b' ' {
            j = skip_spaces(word_end);
        }
        let end = b[j..].iter().position(|&c| is_quote_or_space(c)).map_or(b.len(), |p| p + j);
        out.push(j..end);
    }
}

/// Prefix, the characters allowed after it, and the least and most number of them.
type Shape = (&'static str, fn(u8) -> bool, usize, usize);

const ANY: usize = usize::MAX;

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
fn upper_alnum(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

const SHAPES: &[Shape] = &[
    ("AKIA", upper_alnum, 16, 16),
    ("ASIA", upper_alnum, 16, 16),
    ("ghp_", alnum, 30, ANY),
    ("gho_", alnum, 30, ANY),
    ("ghu_", alnum, 30, ANY),
    ("ghs_", alnum, 30, ANY),
    ("ghr_", alnum, 30, ANY),
    ("github_pat_", word, 40, ANY),
    ("glpat-", word, 20, ANY),
    ("xoxa-", word, 10, ANY),
    ("xoxb-", word, 10, ANY),
    ("xoxp-", word, 10, ANY),
    ("xoxr-", word, 10, ANY),
    ("xoxs-", word, 10, ANY),
    ("hf_", alnum, 30, ANY),
    ("sk-", word, 32, ANY),
    ("sk_live_", alnum, 20, ANY),
    ("rk_live_", alnum, 20, ANY),
    ("AIza", word, 35, ANY),
];

fn tokens(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !word(b[i]) || (i > 0 && word(b[i - 1])) {
            i += 1;
            continue;
        }
        let end = b[i..].iter().position(|&c| !word(c)).map_or(b.len(), |p| p + i);
        if let Some(jwt) = jwt_at(b, i) {
            out.push(i..jwt);
            i = jwt;
            continue;
        }
        let token = &s[i..end];
        let shaped = SHAPES.iter().any(|(prefix, allowed, min, max)| {
            token
                .strip_prefix(prefix)
                .is_some_and(|rest| (*min..=*max).contains(&rest.len()) && rest.bytes().all(allowed))
        });
        if shaped {
            out.push(i..end);
        }
        i = end;
    }
}

/// The end of a JSON Web Token starting at `i`: two base64url segments that
/// decode to JSON objects (`eyJ`), a dot, and a signature.
fn jwt_at(b: &[u8], i: usize) -> Option<usize> {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let segment = |from: usize| {
        if !b[from..].starts_with(b"eyJ") {
            return None;
        }
        let end = b[from..].iter().position(|&c| !b64(c)).map_or(b.len(), |p| p + from);
        (end - from >= 10 && b.get(end) == Some(&b'.')).then_some(end + 1)
    };
    let second = segment(i)?;
    let third = segment(second)?;
    Some(b[third..].iter().position(|&c| !b64(c)).map_or(b.len(), |p| p + third))
}

fn pem_blocks(s: &str, out: &mut Vec<Range<usize>>) {
    let mut from = 0;
    while let Some(k) = s[from..].find("-----BEGIN ").map(|k| k + from) {
        from = k + "-----BEGIN ".len();
        let Some(label_end) = s[from..].find("-----").map(|e| e + from) else { return };
        let label = &s[from..label_end];
        if !label.ends_with("PRIVATE KEY") || label.contains('\n') {
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let end = s[label_end..].find(&end_marker).map_or(s.len(), |e| e + label_end + end_marker.len());
        out.push(k..end);
        from = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(s: &str) -> Vec<&str> {
        secret_spans(s).into_iter().map(|r| &s[r]).collect()
    }

    #[test]
    fn passwords_in_urls_of_any_scheme() {
        assert_eq!(secrets("postgres://u:pass@h/db"), ["pass"]);
        assert_eq!(secrets("https://user:tok:en@host.example/x?y=1"), ["tok:en"]);
        assert_eq!(secrets("redis://:s3cret@cache:6379/0"), ["s3cret"]);
        assert_eq!(secrets("amqp+ssl://a:p@ss@mq"), ["p@ss"], "the last @ ends the password");
        assert_eq!(secrets("sh -c 'curl https://me:hunter2@example.com/f'"), ["hunter2"]);
        assert_eq!(secrets("a=mysql://x:1@h,b=ftp://y:2@g"), ["1", "2"]);
    }

    #[test]
    fn passwords_in_dsns() {
        assert_eq!(secrets("host=db user=u password=hunter2 dbname=x"), ["hunter2"]);
        assert_eq!(secrets("host=db password = 'a b c' port=5432"), ["a b c"]);
        assert_eq!(secrets("Server=s;Database=d;User Id=u;Pwd=hunter2;"), ["hunter2"]);
        assert_eq!(secrets("Driver={x};PWD={p;w}"), ["p;w"]);
        assert_eq!(secrets("jdbc:sqlserver://h:1433;user=u;password=hunter2;encrypt=true"), ["hunter2"]);
        assert_eq!(secrets("jdbc:mysql://h/db?user=u&password=hunter2&ssl=1"), ["hunter2"]);
        assert_eq!(secrets("mysql --password=hunter2 db"), ["hunter2"]);
        assert_eq!(secrets("(PASSWD=x1)"), ["x1"]);
    }

    #[test]
    fn authorization_headers() {
        assert_eq!(secrets("Authorization: Bearer abc.def"), ["abc.def"]);
        assert_eq!(secrets("authorization:Basic dXNlcjpwYXNz"), ["dXNlcjpwYXNz"]);
        assert_eq!(secrets("Authorization: tok123"), ["tok123"]);
    }

    #[test]
    fn token_shapes() {
        let gh = format!("ghp_{}", "a1B2".repeat(9));
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        for t in [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            gh.as_str(),
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "glpat-abcdefghij0123456789",
            "xoxb-1234567890-abcdefghij",
            "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk_live_abcdefghij0123456789",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            jwt,
        ] {
            assert_eq!(secrets(t), [t], "{t}");
            let embedded = format!("--token {t}, then");
            assert_eq!(secrets(&embedded), [t], "{embedded}");
        }
    }

    #[test]
    fn private_key_blocks() {
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(secrets(&format!("k={pem}\n")), [pem]);
        let cut = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow";
        assert_eq!(secrets(cut), [cut], "a block without its end is hidden to the end");
        assert!(secrets("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
    }

    #[test]
    fn ordinary_values_are_kept() {
        for v in [
            "/usr/local/bin:/usr/bin:/bin",
            "https://example.com/path?q=1&page=2#frag",
            "https://host:8443/@user",
            "http://[::1]:8080/x",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "postgres://u@h/db",
            "postgres://h/db?sslmode=require",
            "http://localhost:5000/v2/x/manifests/y@sha256:0123",
            "docker.io/library/busybox:latest",
            "user@example.com",
            "mailto:user@example.com",
            "host=db port=5432 dbname=x user=u",
            "password_file=/run/secrets/db",
            "--passwords-dir=/x",
            "mypassword=x",
            "en_US.UTF-8",
            "AKIAFOO",
            "AKIAIOSFODNN7EXAMPLEX",
            "ghp_short",
            "sk-learn",
            "scikit-learn==1.5",
            "xoxo",
            "hf_hub_cache",
            "eyJhbGciOiJIUzI1NiJ9",
            "-----BEGIN PUBLIC KEY-----",
            "3.14159",
            "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9",
        ] {
            assert!(secrets(v).is_empty(), "{v:?} redacted as {:?}", secrets(v));
        }
    }

    #[test]
    fn spans_merge_and_redacted_values_stay() {
        let s = "postgres://u:password=x@h";
        assert_eq!(secret_spans(s).len(), 1);
        let marked = "postgres://u:<redacted hmac-sha256:00 key:11>@h password=<redacted sha256:1>";
        assert!(secrets(marked).is_empty(), "{:?}", secrets(marked));
    }
}
