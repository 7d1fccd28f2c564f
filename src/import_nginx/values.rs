//! nginx values -> ringlb's: sizes and times in nginx's units, listen and server addresses,
//! strings with variables.

use std::time::Duration;

/// nginx's `ngx_parse_size`/`ngx_parse_offset`: bytes, or a number with `k`, `m`, `g`.
pub fn size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// nginx's `ngx_parse_time`: groups of `<number><unit>` (`ms`, `s`, `m`, `h`, `d`, `w`,
/// `M` = 30 days, `y` = 365 days), optionally separated by spaces; a bare number is seconds.
pub fn time(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Duration::from_secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(n)),
            "" | "s" => secs(1),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            "M" => secs(30 * 86_400),
            "y" => secs(365 * 86_400),
            _ => None,
        }?;
        total = total.checked_add(part)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// A `listen` address as ringlb writes it: `80` -> `0.0.0.0:80`, `*:80` -> `0.0.0.0:80`,
/// `127.0.0.1` -> `127.0.0.1:80`, `[::]:443` as is, `localhost:8080` as is. `None` for a
/// unix socket or something unreadable.
pub fn listen_addr(s: &str) -> Option<String> {
    if s.starts_with("unix:") {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return port(s).map(|p| format!("0.0.0.0:{p}"));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => port(p).map(|p| format!("[{host}]:{p}")),
            None if after.is_empty() => Some(format!("[{host}]:80")),
            None => None,
        };
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (s, 80),
    };
    let host = if host == "*" { "0.0.0.0" } else { host };
    (!host.is_empty()).then(|| format!("{host}:{p}"))
}

/// An upstream `server` address: `host` -> `host:80`, `host:port`, `[v6]:port`,
/// `unix:/path` as is.
pub fn server_addr(s: &str) -> Option<String> {
    if let Some(path) = s.strip_prefix("unix:") {
        return (!path.is_empty()).then(|| s.to_owned());
    }
    if s.starts_with('[') {
        return listen_addr(s);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => port(p).map(|p| format!("{h}:{p}")),
        Some(_) => None,
        None if !s.is_empty() => Some(format!("{s}:80")),
        None => None,
    }
}

fn port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// nginx variables ringlb knows under another name.
const RENAMED: &[(&str, &str)] = &[("query_string", "args"), ("document_uri", "uri")];

/// An nginx string with variables -> ringlb's template syntax. `$server_name` becomes
/// `server_name` (the block's first name, as nginx defines it) when there is one. `Err`
/// names the first variable ringlb does not have.
pub fn template(s: &str, server_name: Option<&str>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, braced) = if let Some(b) = rest.strip_prefix('{') {
            let end = b.find('}').ok_or_else(|| format!("${{{b}"))?;
            (&b[..end], true)
        } else {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&rest[..len], false)
        };
        rest = &rest[name.len() + if braced { 2 } else { 0 }..];
        if name == "server_name" {
            if let Some(n) = server_name {
                out.push_str(n);
                continue;
            }
            out.push_str("${host}");
            continue;
        }
        let name = RENAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(name, |(_, ours)| ours);
        // Braces always: the next literal may run on into the name.
        let written = format!("${{{name}}}");
        if crate::config::parse_template(&written).is_err() {
            return Err(format!("${name}"));
        }
        out.push_str(&written);
    }
    out.push_str(rest);
    // Written back in the shortest form ringlb reads the same.
    crate::config::parse_template(&out)
        .map(|t| t.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sizes() {
        assert_eq!(size("10m"), Some(10 << 20));
        assert_eq!(size("10M"), Some(10 << 20));
        assert_eq!(size("512k"), Some(512 << 10));
        assert_eq!(size("1g"), Some(1 << 30));
        assert_eq!(size("1024"), Some(1024));
        assert_eq!(size("0"), Some(0));
        for bad in ["", "m", "1.5m", "10mb", "-1"] {
            assert_eq!(size(bad), None, "{bad}");
        }
    }

    #[test]
    fn nginx_times() {
        assert_eq!(time("60"), Some(Duration::from_secs(60)));
        assert_eq!(time("60s"), Some(Duration::from_secs(60)));
        assert_eq!(time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(time("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(time("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(time("1w"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(time("1M"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(time("1y"), Some(Duration::from_secs(365 * 86_400)));
        for bad in ["", "s", "1x", "-1s", "max"] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }

    #[test]
    fn listen_and_server_addresses() {
        assert_eq!(listen_addr("80").unwrap(), "0.0.0.0:80");
        assert_eq!(listen_addr("*:8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(listen_addr("127.0.0.1").unwrap(), "127.0.0.1:80");
        assert_eq!(listen_addr("127.0.0.1:8443").unwrap(), "127.0.0.1:8443");
        assert_eq!(listen_addr("[::]:443").unwrap(), "[::]:443");
        assert_eq!(listen_addr("[::1]").unwrap(), "[::1]:80");
        assert_eq!(listen_addr("localhost:81").unwrap(), "localhost:81");
        assert_eq!(listen_addr("unix:/run/x.sock"), None);
        assert_eq!(listen_addr("host:80x"), None);
        assert_eq!(server_addr("10.0.0.1").unwrap(), "10.0.0.1:80");
        assert_eq!(
            server_addr("app.internal:8000").unwrap(),
            "app.internal:8000"
        );
        assert_eq!(
            server_addr("unix:/run/gunicorn.sock").unwrap(),
            "unix:/run/gunicorn.sock"
        );
        assert_eq!(server_addr("[::1]:8000").unwrap(), "[::1]:8000");
        assert_eq!(server_addr("unix:"), None);
        assert_eq!(server_addr(":80"), None);
    }

    #[test]
    fn templates_keep_ringlb_variables_and_name_the_others() {
        assert_eq!(
            template("https://$host$request_uri", None).unwrap(),
            "https://$host$request_uri"
        );
        assert_eq!(
            template("https://$server_name$request_uri", Some("example.com")).unwrap(),
            "https://example.com$request_uri"
        );
        assert_eq!(template("$query_string", None).unwrap(), "$args");
        assert_eq!(template("${host}_x", None).unwrap(), "${host}_x");
        assert_eq!(
            template("$http_x_real_ip", None).unwrap(),
            "$http_x_real_ip"
        );
        assert_eq!(template("$proxy_host", None).unwrap_err(), "$proxy_host");
        assert_eq!(
            template("$connection_upgrade", None).unwrap_err(),
            "$connection_upgrade"
        );
        assert_eq!(template("no variables", None).unwrap(), "no variables");
    }
}
