//! nginx configuration text -> tokens, as nginx's own reader (`ngx_conf_read_token`) cuts
//! it: words separated by white space, `;`, `{` and `}`; `#` comments to the end of the
//! line; `"..."` and `'...'` strings; `${name}` kept inside a word; backslash escapes
//! (`\"`, `\'`, `\\`, `\t`, `\r`, `\n`) turned into their characters, others kept.

/// One token and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A word or a quoted string, unescaped.
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// Cuts `text` into tokens; an error names the line and what is wrong.
pub fn tokens(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b';' | b'{' | b'}' => {
                let kind = match c {
                    b';' => Kind::Semicolon,
                    b'{' => Kind::Open,
                    _ => Kind::Close,
                };
                out.push(Token { kind, line });
                i += 1;
            }
            b'"' | b'\'' => {
                let start_line = line;
                let start = i + 1;
                let mut j = start;
                loop {
                    match b.get(j) {
                        None => {
                            return Err((start_line, "a quoted string is never closed".into()));
                        }
                        Some(b'\\') => j += 2,
                        Some(&q) if q == c => break,
                        Some(b'\n') => {
                            line += 1;
                            j += 1;
                        }
                        Some(_) => j += 1,
                    }
                }
                let raw = &text[start..j.min(b.len())];
                i = j + 1;
                if let Some(&next) = b.get(i) {
                    if !matches!(next, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}') {
                        return Err((
                            line,
                            format!("unexpected {:?} right after a quoted string", next as char),
                        ));
                    }
                }
                out.push(Token {
                    kind: Kind::Word(unescape(raw)),
                    line: start_line,
                });
            }
            _ => {
                let start = i;
                let mut j = i;
                let mut after_dollar = false;
                while j < b.len() {
                    let d = b[j];
                    if d == b'\\' && j + 1 < b.len() {
                        j += 2;
                        after_dollar = false;
                        continue;
                    }
                    // `${name}`: the brace belongs to the word.
                    if d == b'{' && after_dollar {
                        j += 1;
                        continue;
                    }
                    if matches!(d, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{') {
                        break;
                    }
                    after_dollar = d == b'$';
                    j += 1;
                }
                out.push(Token {
                    kind: Kind::Word(unescape(&text[start..j])),
                    line,
                });
                i = j;
            }
        }
    }
    Ok(out)
}

/// nginx's escapes: `\"`, `\'`, `\\` -> the character; `\t`, `\r`, `\n` -> control
/// characters; any other backslash is kept.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some(&e @ ('"' | '\'' | '\\')) => {
                out.push(e);
                chars.next();
            }
            Some('t') => {
                out.push('\t');
                chars.next();
            }
            Some('r') => {
                out.push('\r');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokens(text)
            .unwrap()
            .into_iter()
            .map(|t| match t.kind {
                Kind::Word(w) => w,
                Kind::Semicolon => ";".into(),
                Kind::Open => "{".into(),
                Kind::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn words_blocks_and_comments() {
        assert_eq!(
            words("http {\n  # a comment; with { braces }\n  listen 80;  # trailing\n}\n"),
            ["http", "{", "listen", "80", ";", "}"]
        );
        assert_eq!(words("a b;c{d}"), ["a", "b", ";", "c", "{", "d}"]);
        let t = tokens("a;\n\n  b;\n").unwrap();
        assert_eq!((t[0].line, t[2].line), (1, 3));
    }

    #[test]
    fn quoted_strings_and_escapes() {
        assert_eq!(
            words(r#"log_format main '$remote_addr "$request"' "x\"y" 'it\'s' "a\tb";"#),
            [
                "log_format",
                "main",
                "$remote_addr \"$request\"",
                "x\"y",
                "it's",
                "a\tb",
                ";"
            ]
        );
        assert_eq!(words(r#"return 200 "";"#), ["return", "200", "", ";"]);
        // A backslash keeps the next character in the word, as in nginx.
        assert_eq!(words(r"a\ b;"), ["a\\ b", ";"]);
        assert_eq!(
            words(r"rewrite ^/(.*)\.php$ /$1;"),
            ["rewrite", r"^/(.*)\.php$", "/$1", ";"]
        );
        // A quoted string may span lines; the next token's line follows.
        let t = tokens("a \"x\ny\";\nb;").unwrap();
        assert_eq!(t[3].line, 3);
    }

    #[test]
    fn variables_in_braces_stay_in_the_word() {
        assert_eq!(
            words("return 301 https://${host}$request_uri;"),
            ["return", "301", "https://${host}$request_uri", ";"]
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(tokens("a;\nb \"open;\n").unwrap_err().0, 2);
        assert!(tokens("a \"x\"y;")
            .unwrap_err()
            .1
            .contains("after a quoted string"));
    }
}
