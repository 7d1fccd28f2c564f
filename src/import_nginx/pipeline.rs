//! The whole import, step after step: read (`parse`), convert (`convert`, `server`), order
//! and reconcile the server blocks, write the TOML (`plan`).

use std::collections::HashMap;
use std::path::Path;

use super::convert::Converter;
use super::note::Note;
use super::parse::{Directive, Reader};
use super::plan;

/// What an import produced.
#[derive(Debug)]
pub struct Imported {
    /// The configuration file.
    pub toml: String,
    /// Every directive not carried over, in the order met.
    pub notes: Vec<Note>,
    /// How many `[[server]]` blocks the configuration has (0: nothing to run).
    pub servers: usize,
}

/// Reads the nginx configuration at `path` (and its includes). `Err` when it cannot be
/// read or parsed (`file:line: what`).
pub fn import(path: &Path) -> Result<Imported, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    convert(&text, path, true)
}

/// Converts nginx configuration `text` alone: its `include`s are noted, not read.
pub fn import_text(text: &str) -> Result<Imported, String> {
    convert(text, Path::new("nginx.conf"), false)
}

fn convert(text: &str, path: &Path, follow_includes: bool) -> Result<Imported, String> {
    let mut notes = Vec::new();
    let conf_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let tree = Reader {
        conf_dir: conf_dir.clone(),
        follow_includes,
        notes: &mut notes,
    }
    .text(text, path, 0)?;
    // A file of `server { ... }` blocks alone (a sites-available file) reads as the inside
    // of `http { ... }`.
    let bare_blocks = !tree.iter().any(|d| d.name == "http")
        && tree
            .iter()
            .any(|d| d.name == "server" || d.name == "upstream");
    let wrapped;
    let tree = match tree.first() {
        Some(first) if bare_blocks => {
            wrapped = vec![Directive {
                name: "http".into(),
                args: Vec::new(),
                block: Some(tree.clone()),
                file: first.file.clone(),
                line: first.line,
            }];
            &wrapped
        }
        _ => &tree,
    };
    let mut c = Converter {
        plan: plan::Plan::default(),
        notes: &mut notes,
        conf_dir,
        log_formats: HashMap::new(),
        uses: Vec::new(),
        implicit: HashMap::new(),
    };
    c.main(tree);
    let mut plan = c.plan;
    finish_servers(&mut plan, &mut notes);
    let mut seen = Vec::new();
    notes.retain(|n| {
        let new = !seen.contains(n);
        if new {
            seen.push(n.clone());
        }
        new
    });
    Ok(Imported {
        toml: plan.toml(&path.display().to_string()),
        servers: plan.servers.len(),
        notes,
    })
}

/// Orders server blocks so that each address's `default_server` comes first on it (ringlb's
/// default is the first block on an address); makes the blocks on one address agree on TLS
/// and the PROXY protocol (in nginx they are properties of the listening socket, set by the
/// first block); drops a name a block repeats on an address another block already serves it
/// on (nginx ignores the second, with a warning).
fn finish_servers(plan: &mut plan::Plan, notes: &mut Vec<Note>) {
    plan.servers
        .sort_by_key(|s| std::cmp::Reverse(!s.default_on.is_empty()));
    let mut socket: Vec<(String, bool, bool)> = Vec::new();
    let mut taken: Vec<(String, String)> = Vec::new();
    for s in &mut plan.servers {
        let kind = (s.tls.is_some(), s.proxy_protocol);
        s.listen.retain(|a| match socket.iter().find(|(x, _, _)| x == a) {
            Some((_, tls, pp)) if (*tls, *pp) != kind => {
                notes.push(Note {
                    at: s.from.clone(),
                    directive: format!("listen {a}"),
                    why: "not carried: an earlier server block on this address sets TLS or proxy_protocol differently, and every block on one address must agree".into(),
                });
                false
            }
            Some(_) => true,
            None => {
                socket.push((a.clone(), kind.0, kind.1));
                true
            }
        });
        let mut kept = Vec::new();
        for n in &s.names {
            if s.listen
                .iter()
                .any(|a| taken.contains(&(a.clone(), n.clone())))
            {
                notes.push(Note {
                    at: s.from.clone(),
                    directive: format!("server_name {n}"),
                    why: "not carried: another server block already serves this name on the same address (nginx ignores this one too)".into(),
                });
            } else {
                kept.push(n.clone());
            }
        }
        for a in &s.listen {
            for n in &kept {
                taken.push((a.clone(), n.clone()));
            }
        }
        s.names = kept;
    }
    plan.servers.retain(|s| !s.listen.is_empty());
}
