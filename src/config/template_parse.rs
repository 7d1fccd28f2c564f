//! `$variable` templates (`proxy_set_header` values, the `hash` key, a `return` location),
//! parsed once at load into a [`Template`] (`model.rs`); `http::vars` evaluates it per
//! request. The `$name` syntax itself is `syntax.rs`'s, shared with `log_format`.
//!
//! Syntax as in nginx: `$name` takes the longest run of `[A-Za-z0-9_]`, `${name}` ends the
//! name explicitly (`${host}:8080`). Names are those of [`VARIABLES`], the `$http_<name>`
//! and `$cookie_<name>` families among them.

use super::model::{Template, TemplatePart, Var};
use super::syntax::{is_name_byte, pieces, Piece};

/// Every variable name accepted, for error messages.
pub const VARIABLES: &[&str] = &[
    "host",
    "remote_addr",
    "remote_port",
    "request_uri",
    "uri",
    "args",
    "scheme",
    "proxy_add_x_forwarded_for",
    "http_<name>",
    "cookie_<name>",
];

fn variable(name: &str) -> Result<Var, String> {
    let var = match name {
        "host" => Var::Host,
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "request_uri" => Var::RequestUri,
        "uri" => Var::Uri,
        "args" => Var::Args,
        "scheme" => Var::Scheme,
        "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
        _ => {
            if let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                Var::Http(h.to_ascii_lowercase().replace('_', "-"))
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                Var::Cookie(c.to_owned())
            } else {
                let known: Vec<String> = VARIABLES.iter().map(|v| format!("${v}")).collect();
                let known = known.join(", ");
                // `$host_name` meant `$host` then "_name": nginx needs braces there too.
                let prefix = VARIABLES
                    .iter()
                    .filter(|v| !v.ends_with("<name>"))
                    .find(|v| name.len() > v.len() && name.starts_with(*v));
                let hint = if let Some(v) = prefix {
                    format!(
                        "to follow ${v} with text write ${{{v}}}{} (valid: {known})",
                        &name[v.len()..]
                    )
                } else if let Some(v) = super::suggest::did_you_mean(name, VARIABLES) {
                    format!("did you mean `${v}`? (valid: {known})")
                } else {
                    format!("valid: {known}")
                };
                return Err(format!("unknown variable `${name}`; {hint}"));
            }
        }
    };
    Ok(var)
}

/// The template as it could be written back: `https://$host$request_uri`, `${host}_x`.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                TemplatePart::Literal(l) => f.write_str(l)?,
                TemplatePart::Var(v) => {
                    let name = match v {
                        Var::Host => "host".to_owned(),
                        Var::RemoteAddr => "remote_addr".to_owned(),
                        Var::RemotePort => "remote_port".to_owned(),
                        Var::RequestUri => "request_uri".to_owned(),
                        Var::Uri => "uri".to_owned(),
                        Var::Args => "args".to_owned(),
                        Var::Scheme => "scheme".to_owned(),
                        Var::ProxyAddXForwardedFor => "proxy_add_x_forwarded_for".to_owned(),
                        Var::Http(h) => format!("http_{}", h.replace('-', "_")),
                        Var::Cookie(c) => format!("cookie_{c}"),
                    };
                    // Braces only where the next literal would run on into the name.
                    let runs_on = matches!(self.parts.get(i + 1), Some(TemplatePart::Literal(l)) if l.bytes().next().is_some_and(is_name_byte));
                    if runs_on {
                        write!(f, "${{{name}}}")?;
                    } else {
                        write!(f, "${name}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Parses `text` into literal and variable parts.
pub fn parse_template(text: &str) -> Result<Template, String> {
    let parts = pieces(text)?
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => Ok(TemplatePart::Literal(t.to_owned())),
            Piece::Name(n) => variable(n).map(TemplatePart::Var),
        })
        .collect::<Result<_, _>>()?;
    Ok(Template { parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplatePart::{Literal, Var as V};

    #[test]
    fn plain_variables() {
        let t = parse_template("$host").unwrap();
        assert_eq!(t.parts, vec![V(Var::Host)]);
        let t = parse_template("$remote_addr:$remote_port").unwrap();
        assert_eq!(
            t.parts,
            vec![V(Var::RemoteAddr), Literal(":".into()), V(Var::RemotePort)]
        );
        for (s, v) in [
            ("$request_uri", Var::RequestUri),
            ("$uri", Var::Uri),
            ("$args", Var::Args),
            ("$scheme", Var::Scheme),
            ("$proxy_add_x_forwarded_for", Var::ProxyAddXForwardedFor),
        ] {
            assert_eq!(parse_template(s).unwrap().parts, vec![V(v)]);
        }
    }

    #[test]
    fn http_and_cookie_families() {
        let t = parse_template("$http_User_Agent").unwrap();
        assert_eq!(t.parts, vec![V(Var::Http("user-agent".into()))]);
        let t = parse_template("$cookie_SessionId").unwrap();
        assert_eq!(t.parts, vec![V(Var::Cookie("SessionId".into()))]);
        assert!(parse_template("$http_").is_err());
    }

    #[test]
    fn brace_form_ends_the_name() {
        let t = parse_template("${host}_x").unwrap();
        assert_eq!(t.parts, vec![V(Var::Host), Literal("_x".into())]);
        // Without braces the name runs on, and is unknown.
        let e = parse_template("$host_x").unwrap_err();
        assert!(
            e.contains("to follow $host with text write ${host}_x"),
            "{e}"
        );
        assert!(parse_template("${host").is_err());
    }

    #[test]
    fn display_writes_the_template_back() {
        for t in [
            "https://$host$request_uri",
            "${host}_x",
            "$http_user_agent",
            "$cookie_SessionId!",
            "plain",
        ] {
            assert_eq!(parse_template(t).unwrap().to_string(), t);
        }
    }

    #[test]
    fn literals_only() {
        assert_eq!(
            parse_template("https").unwrap().parts,
            vec![Literal("https".into())]
        );
        assert!(parse_template("").unwrap().parts.is_empty());
    }

    #[test]
    fn unknown_variable_lists_valid_ones() {
        let e = parse_template("$hots").unwrap_err();
        assert!(e.contains("unknown variable `$hots`"), "{e}");
        assert!(e.contains("did you mean `$host`"), "{e}");
        assert!(e.contains("$remote_addr"), "{e}");
        let e = parse_template("$zzz").unwrap_err();
        assert!(
            e.starts_with("unknown variable `$zzz`; valid: $host, "),
            "{e}"
        );
        assert!(parse_template("cost: $").is_err());
        assert!(parse_template("$ x").is_err());
    }
}
