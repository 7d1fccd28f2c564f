//! The `$variable` syntax every template shares (`proxy_set_header` values, the `hash` key,
//! the access log's `log_format`): nginx's. `$name` takes the longest run of
//! `[A-Za-z0-9_]`, `${name}` ends a name explicitly (`${host}:8080`). A leaf: each kind of
//! template gives the names its own meaning.

/// A piece of a template as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text between variables (never empty).
    Text(&'a str),
    /// A variable's name, without `$` or braces.
    Name(&'a str),
}

pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits `text` into text and variable names.
pub fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        if dollar > 0 {
            out.push(Piece::Text(&rest[..dollar]));
        }
        rest = &rest[dollar + 1..];
        let name;
        if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
            name = &braced[..end];
            rest = &braced[end + 1..];
        } else {
            let len = rest.bytes().take_while(|b| is_name_byte(*b)).count();
            name = &rest[..len];
            rest = &rest[len..];
        }
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(format!(
                "`$` must be followed by a variable name ($host, ${{host}}) in {text:?}"
            ));
        }
        out.push(Piece::Name(name));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Piece::{Name, Text};

    #[test]
    fn names_and_text() {
        assert_eq!(
            pieces("a$host${x}y $http_a_b").unwrap(),
            vec![
                Text("a"),
                Name("host"),
                Name("x"),
                Text("y "),
                Name("http_a_b")
            ]
        );
        assert_eq!(pieces("").unwrap(), vec![]);
        for bad in ["$", "a $ b", "${x", "${a-b}"] {
            assert!(pieces(bad).is_err(), "{bad:?}");
        }
    }
}
