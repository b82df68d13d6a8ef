//! Secrets taken from the environment or from files instead of the config
//! file: header values for upstream destinations (`forward/`) and the
//! bearer tokens the listeners require (`auth`). It sits beside the stages,
//! not in `forward/`, because both directions use the one syntax.
//!
//! Exporting to LangSmith, Langfuse or a hosted collector needs API keys,
//! and a config file is the wrong place for them: it gets committed, copied
//! into images and pasted into bug reports. So header values (and basic-auth
//! credentials, and `auth.bearer_token`) in the TOML config may reference
//! secrets instead:
//!
//! * `${env:NAME}` — the value of environment variable `NAME`;
//! * `${file:/run/secrets/key}` — the content of a file (Docker and
//!   Kubernetes secret mounts), with trailing line breaks removed because
//!   tools like `echo` add one that would corrupt the header;
//! * references can be embedded and repeated: `"Bearer ${env:TOKEN}"`;
//! * `$${` is a literal `${`. Any other `$` is literal, so `$$` stays `$$`;
//!   the one thing that cannot be written is a literal `$` directly before
//!   a reference.
//!
//! Resolved values are wrapped in [`Secret`], whose `Debug` and `Display`
//! print `<redacted>`, so a stray `{:?}` on a config struct cannot leak a
//! key into the logs. [`SecretError`] names the reference that failed (the
//! variable name, the file path, or the template text, none of which is
//! secret) but never a resolved value. Resolved values are not scanned
//! again, so a secret that happens to contain `${` is used verbatim.

use std::fmt;
use std::io::Read;

/// A resolved secret. Debug and Display print `<redacted>`; the value is only reachable via `expose()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The plain value, for building the outgoing header. The name makes
    /// every use site greppable.
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {name} (referenced as ${{env:{name}}}) is not set")]
    EnvMissing { name: String },
    #[error("cannot read secret file {path} (referenced as ${{file:{path}}}): {reason}")]
    File { path: String, reason: String },
    /// `context` is the template text, which never holds a secret itself.
    #[error("invalid secret reference in {context:?}: {reason}")]
    Syntax { context: String, reason: String },
}

/// Secret files are header values; anything bigger is a wrong path (a log
/// file, `/dev/zero`), and reading it whole could exhaust memory.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Resolves every reference in `template`. `env` looks variables up (pass `|k| std::env::var(k).ok()` in production;
/// tests pass a closure over a map — do not mutate the process environment in tests).
pub fn resolve(
    template: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, SecretError> {
    let mut out = String::with_capacity(template.len());
    for piece in Pieces::new(template) {
        match piece? {
            Piece::Literal(text) => out.push_str(text),
            Piece::Reference(reference) => out.push_str(&lookup(template, reference, &env)?),
        }
    }
    Ok(Secret(out))
}

/// True when `template` contains at least one reference (so a literal key in a config file can be warned about).
///
/// A malformed reference (e.g. unterminated) counts: it was meant as one,
/// and [`resolve`] reports it.
pub fn has_reference(template: &str) -> bool {
    Pieces::new(template).any(|piece| !matches!(piece, Ok(Piece::Literal(_))))
}

/// Standard basic auth header value: "Basic " + base64(user:pass).
pub fn basic_auth(user: &Secret, pass: &Secret) -> Secret {
    let credentials = format!("{}:{}", user.expose(), pass.expose());
    Secret(format!("Basic {}", base64_encode(credentials.as_bytes())))
}

enum Piece<'a> {
    Literal(&'a str),
    /// The text between `${` and `}`.
    Reference(&'a str),
}

/// Splits a template into literal text and references, so that resolving
/// and merely detecting references share one definition of the syntax.
struct Pieces<'a> {
    template: &'a str,
    rest: &'a str,
}

impl<'a> Pieces<'a> {
    fn new(template: &'a str) -> Self {
        Pieces {
            template,
            rest: template,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, SecretError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        if let Some(after) = rest.strip_prefix("$${") {
            self.rest = after;
            // The escape keeps `${` of the `$${`, dropping the first `$`.
            return Some(Ok(Piece::Literal(&rest[1..3])));
        }
        if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                self.rest = "";
                return Some(Err(syntax(
                    self.template,
                    "unterminated \"${\" (write \"$${\" for a literal \"${\")",
                )));
            };
            self.rest = &after[end + 1..];
            return Some(Ok(Piece::Reference(&after[..end])));
        }
        // Up to the next `$` that could start a reference or escape; a `$`
        // that starts neither is ordinary text.
        let end = rest[1..].find('$').map_or(rest.len(), |i| i + 1);
        self.rest = &rest[end..];
        Some(Ok(Piece::Literal(&rest[..end])))
    }
}

fn lookup(
    template: &str,
    reference: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, SecretError> {
    let Some((scheme, target)) = reference.split_once(':') else {
        return Err(syntax(
            template,
            &format!("\"${{{reference}}}\" should be \"${{env:NAME}}\" or \"${{file:PATH}}\""),
        ));
    };
    if target.contains("${") {
        return Err(syntax(template, "nested references are not supported"));
    }
    match scheme {
        "env" => {
            if target.is_empty() {
                return Err(syntax(template, "empty environment variable name"));
            }
            if target.contains(['=', '\0']) {
                return Err(syntax(
                    template,
                    &format!("{target:?} is not a valid environment variable name"),
                ));
            }
            env(target).ok_or_else(|| SecretError::EnvMissing {
                name: target.to_owned(),
            })
        }
        "file" => {
            if target.is_empty() {
                return Err(syntax(template, "empty file path"));
            }
            read_secret_file(target)
        }
        other => Err(syntax(
            template,
            &format!("unknown secret source {other:?} (expected \"env\" or \"file\")"),
        )),
    }
}

fn read_secret_file(path: &str) -> Result<String, SecretError> {
    let fail = |reason: String| SecretError::File {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    // The error for invalid UTF-8 would describe the bytes' position only,
    // but a fixed reason keeps any doubt about leaking content away.
    let text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".to_owned()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn syntax(template: &str, reason: &str) -> SecretError {
    SecretError::Syntax {
        context: template.to_owned(),
        reason: reason.to_owned(),
    }
}

/// RFC 4648 base64 with padding; small enough not to warrant a dependency.
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..4 {
            // n input bytes fill n + 1 output characters; the rest is padding.
            if i <= chunk.len() {
                let index = (group >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TOKEN_VALUE: &str = "tok-5ecret-value-8842";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn env() -> impl Fn(&str) -> Option<String> {
        env_of(&[("TOKEN", TOKEN_VALUE), ("USER", "alice"), ("EMPTY", "")])
    }

    /// A file in the system temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(content: &[u8]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "chainpulse-secret-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn ok(template: &str) -> String {
        resolve(template, env()).unwrap().expose().to_owned()
    }

    fn err(template: &str) -> SecretError {
        resolve(template, env()).unwrap_err()
    }

    fn assert_no_leak(e: &SecretError, secret: &str) {
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }

    #[test]
    fn literal_values_pass_through() {
        for literal in [
            "",
            "plain",
            "cost $5",
            "$$",
            "a$b$",
            "{env:TOKEN}",
            "$ {env:TOKEN}",
            "}",
        ] {
            assert_eq!(ok(literal), literal);
            assert!(!has_reference(literal), "{literal:?}");
        }
    }

    #[test]
    fn env_reference() {
        assert_eq!(ok("${env:TOKEN}"), TOKEN_VALUE);
        assert_eq!(ok("${env:EMPTY}"), "");
        assert!(resolve("${env:EMPTY}", env()).unwrap().is_empty());
        assert!(has_reference("${env:TOKEN}"));
    }

    #[test]
    fn embedded_and_multiple_references() {
        assert_eq!(ok("Bearer ${env:TOKEN}"), format!("Bearer {TOKEN_VALUE}"));
        assert_eq!(
            ok("${env:USER}:${env:TOKEN}/${env:USER}"),
            format!("alice:{TOKEN_VALUE}/alice")
        );
        assert_eq!(ok("$${env:TOKEN}=${env:USER}$"), "${env:TOKEN}=alice$");
        assert!(has_reference("x $${y} ${env:USER}"));
    }

    #[test]
    fn escape_yields_a_literal_reference_opener() {
        assert_eq!(ok("$${env:TOKEN}"), "${env:TOKEN}");
        assert_eq!(ok("a$${b"), "a${b");
        assert_eq!(ok("$$${env:USER}"), "$${env:USER}");
        assert!(!has_reference("$${env:TOKEN}"));
    }

    #[test]
    fn resolved_values_are_not_expanded_again() {
        let env = env_of(&[("A", "${env:B}"), ("B", "nope")]);
        assert_eq!(resolve("${env:A}", env).unwrap().expose(), "${env:B}");
    }

    #[test]
    fn file_reference_trims_trailing_line_breaks() {
        let file = TempFile::new(b"lf-sk-1234\r\n");
        let template = format!("Basic ${{file:{}}}", file.path());
        assert_eq!(ok(&template), "Basic lf-sk-1234");
        let file = TempFile::new(b"  spaced key \n\n");
        assert_eq!(ok(&format!("${{file:{}}}", file.path())), "  spaced key ");
    }

    #[test]
    fn missing_env_var_names_the_variable() {
        let e = err("Bearer ${env:TOKEN} ${env:LANGSMITH_API_KEY}");
        assert_eq!(
            e,
            SecretError::EnvMissing {
                name: "LANGSMITH_API_KEY".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "environment variable LANGSMITH_API_KEY (referenced as ${env:LANGSMITH_API_KEY}) is not set"
        );
        assert_no_leak(&e, TOKEN_VALUE);
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let file = TempFile::new(b"x");
        let missing = format!("{}-missing", file.path());
        let e = err(&format!("${{env:TOKEN}}${{file:{missing}}}"));
        let SecretError::File { path, reason } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(path, &missing);
        assert!(!reason.is_empty());
        assert!(e.to_string().contains(&format!("${{file:{missing}}}")));
        assert_no_leak(&e, TOKEN_VALUE);

        let dir = std::env::temp_dir();
        let e = err(&format!("${{file:{}}}", dir.display()));
        assert!(matches!(e, SecretError::File { .. }), "{e:?}");
    }

    #[test]
    fn oversized_or_binary_file_is_rejected_without_echoing_it() {
        let big = TempFile::new(&vec![b'k'; MAX_FILE_BYTES as usize + 1]);
        let e = err(&format!("${{file:{}}}", big.path()));
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(!e.to_string().contains("kkkk"));

        let fits = TempFile::new(&vec![b'k'; MAX_FILE_BYTES as usize]);
        assert_eq!(
            ok(&format!("${{file:{}}}", fits.path())).len(),
            MAX_FILE_BYTES as usize
        );

        let binary = TempFile::new(b"s3cr\xffet");
        let e = err(&format!("${{file:{}}}", binary.path()));
        assert!(e.to_string().ends_with("not valid UTF-8"), "{e}");
        assert_no_leak(&e, "s3cr");
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("${foo:x}", "unknown secret source \"foo\""),
            ("${ENV:TOKEN}", "unknown secret source \"ENV\""),
            ("Bearer ${env:TOKEN", "unterminated"),
            ("${env:TOKEN} ${", "unterminated"),
            ("${env:}", "empty environment variable name"),
            ("${file:}", "empty file path"),
            ("${TOKEN}", "should be \"${env:NAME}\""),
            ("${}", "should be"),
            ("${env:A=B}", "not a valid environment variable name"),
            ("${env:${env:TOKEN}}", "nested"),
        ];
        for (template, needle) in cases {
            let e = err(template);
            let SecretError::Syntax { context, reason } = &e else {
                panic!("{template}: {e:?}");
            };
            assert_eq!(context, template);
            assert!(reason.contains(needle), "{template}: {reason}");
            assert_no_leak(&e, TOKEN_VALUE);
            assert!(has_reference(template), "{template}");
        }
    }

    #[test]
    fn secret_is_redacted_in_formatting() {
        let secret = resolve("Bearer ${env:TOKEN}", env()).unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert!(!format!("{:?}", Some(&secret)).contains(TOKEN_VALUE));
        assert_eq!(secret, Secret::new(format!("Bearer {TOKEN_VALUE}")));
    }

    #[test]
    fn basic_auth_known_vector() {
        let header = basic_auth(&Secret::new("Aladdin"), &Secret::new("open sesame"));
        assert_eq!(header.expose(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(format!("{header:?}"), "<redacted>");
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64_encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }
}
