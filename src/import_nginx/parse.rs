//! Tokens -> a tree of directives, with `include` expanded in place: a relative pattern is
//! looked up in nginx's configuration directory (the directory of the main file, where
//! nginx resolves it), then beside the including file; wildcards are expanded in sorted
//! order as glob(3) does, and a wildcard that matches nothing is no error (as in nginx).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::lexer::{tokens, Kind, Token};
use super::note::Note;

/// Includes nested deeper than this are a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One directive: `name args... ;` or `name args... { block }`.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    pub file: Rc<Path>,
    pub line: usize,
}

impl Directive {
    /// `file:line`, for notes.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The directive as written (name and arguments), for notes.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains([' ', ';', '{', '}', '#']) {
                s.push_str(&format!("{a:?}"));
            } else {
                s.push_str(a);
            }
        }
        s
    }

    /// A note that this directive was not carried over, and why.
    pub fn note(&self, why: impl Into<String>) -> Note {
        Note {
            at: self.at(),
            directive: self.text(),
            why: why.into(),
        }
    }
}

/// What reading the files needs to know and what it found along the way.
pub struct Reader<'n> {
    /// nginx's configuration directory: the main file's.
    pub conf_dir: PathBuf,
    /// `false`: every `include` is noted, none read (for text without a directory).
    pub follow_includes: bool,
    pub notes: &'n mut Vec<Note>,
}

impl Reader<'_> {
    /// Reads `path` and every file it includes.
    pub fn file(&mut self, path: &Path, depth: usize) -> Result<Vec<Directive>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        self.text(&text, path, depth)
    }

    /// Parses `text`, named `path` in notes and errors.
    pub fn text(
        &mut self,
        text: &str,
        path: &Path,
        depth: usize,
    ) -> Result<Vec<Directive>, String> {
        let toks = tokens(text).map_err(|(line, m)| format!("{}:{line}: {m}", path.display()))?;
        let file: Rc<Path> = Rc::from(path);
        let mut pos = 0;
        let list = self.block(&toks, &mut pos, &file, depth, None)?;
        Ok(list)
    }

    /// Directives up to the matching `}` (`open_line` is where its `{` was), or to the end
    /// of the file at the top level.
    fn block(
        &mut self,
        toks: &[Token],
        pos: &mut usize,
        file: &Rc<Path>,
        depth: usize,
        open_line: Option<usize>,
    ) -> Result<Vec<Directive>, String> {
        let mut out = Vec::new();
        let at = |line: usize| format!("{}:{line}", file.display());
        loop {
            let Some(t) = toks.get(*pos) else {
                return match open_line {
                    Some(l) => Err(format!(
                        "{}: this block is never closed (missing \"}}\")",
                        at(l)
                    )),
                    None => Ok(out),
                };
            };
            *pos += 1;
            let name = match &t.kind {
                Kind::Close => {
                    return match open_line {
                        Some(_) => Ok(out),
                        None => Err(format!("{}: unexpected \"}}\"", at(t.line))),
                    };
                }
                Kind::Semicolon => return Err(format!("{}: unexpected \";\"", at(t.line))),
                Kind::Open => return Err(format!("{}: unexpected \"{{\"", at(t.line))),
                Kind::Word(w) => w.clone(),
            };
            let line = t.line;
            let mut args = Vec::new();
            let block = loop {
                let Some(t) = toks.get(*pos) else {
                    return Err(format!(
                        "{}: unexpected end of file, expecting \";\" or \"}}\"",
                        at(line)
                    ));
                };
                *pos += 1;
                match &t.kind {
                    Kind::Word(w) => args.push(w.clone()),
                    Kind::Semicolon => break None,
                    Kind::Open => break Some(self.block(toks, pos, file, depth, Some(t.line))?),
                    Kind::Close => {
                        return Err(format!(
                            "{}: unexpected \"}}\" (missing \";\"?)",
                            at(t.line)
                        ))
                    }
                }
            };
            let d = Directive {
                name,
                args,
                block,
                file: file.clone(),
                line,
            };
            if d.name == "include" && d.block.is_none() && d.args.len() == 1 {
                out.extend(self.include(&d, depth)?);
            } else {
                out.push(d);
            }
        }
    }

    fn include(&mut self, d: &Directive, depth: usize) -> Result<Vec<Directive>, String> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{}: includes nested more than {MAX_INCLUDE_DEPTH} deep (a file includes itself?)",
                d.at()
            ));
        }
        if !self.follow_includes {
            self.notes
                .push(d.note("not followed: the text was given without its directory"));
            return Ok(Vec::new());
        }
        let pattern = &d.args[0];
        let wildcard = pattern.contains(['*', '?', '[']);
        let candidates: Vec<PathBuf> = if Path::new(pattern).is_absolute() {
            vec![PathBuf::from(pattern)]
        } else {
            let beside = d.file.parent().unwrap_or(Path::new(".")).join(pattern);
            let mut v = vec![self.conf_dir.join(pattern)];
            if !v.contains(&beside) {
                v.push(beside);
            }
            v
        };
        for candidate in &candidates {
            let files: Vec<PathBuf> = if wildcard {
                match glob::glob(&candidate.to_string_lossy()) {
                    Ok(paths) => paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect(),
                    Err(e) => {
                        return Err(format!("{}: bad include pattern {pattern:?}: {e}", d.at()))
                    }
                }
            } else if candidate.is_file() {
                vec![candidate.clone()]
            } else {
                Vec::new()
            };
            if files.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            for f in files {
                out.extend(self.file(&f, depth + 1)?);
            }
            return Ok(out);
        }
        if !wildcard {
            let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            self.notes.push(d.note(format!(
                "file not found (looked for {}); its directives are not carried",
                looked.join(" and ")
            )));
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringlb-nginx-parse-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(main: &Path) -> (Result<Vec<Directive>, String>, Vec<Note>) {
        let mut notes = Vec::new();
        let mut r = Reader {
            conf_dir: main.parent().unwrap().to_path_buf(),
            follow_includes: true,
            notes: &mut notes,
        };
        let tree = r.file(main, 0);
        (tree, notes)
    }

    #[test]
    fn blocks_nest_and_lines_are_kept() {
        let dir = scratch("nest");
        let main = dir.join("nginx.conf");
        std::fs::write(
            &main,
            "events {}\nhttp {\n  server {\n    listen 80;\n  }\n}\n",
        )
        .unwrap();
        let (tree, _) = read(&main);
        let tree = tree.unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].block.as_ref().unwrap().len(), 0);
        let server = &tree[1].block.as_ref().unwrap()[0];
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(
            (listen.name.as_str(), listen.args.clone(), listen.line),
            ("listen", vec!["80".to_string()], 4)
        );
        assert_eq!(listen.at(), format!("{}:4", main.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn includes_expand_in_place_with_globs_in_sorted_order() {
        let dir = scratch("include");
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::create_dir_all(dir.join("snippets")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "server { listen 8082; }\n").unwrap();
        std::fs::write(
            dir.join("conf.d/a.conf"),
            "server { listen 8081; include snippets/common.conf; }\n",
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/skip.txt"), "broken {\n").unwrap();
        std::fs::write(
            dir.join("snippets/common.conf"),
            "client_max_body_size 5m;\n",
        )
        .unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, "http {\n  include conf.d/*.conf;\n  include nothing/*.conf;\n  include mime.types;\n}\n").unwrap();
        let (tree, notes) = read(&main);
        let http = tree.unwrap();
        let servers = http[0].block.as_ref().unwrap();
        assert_eq!(servers.len(), 2);
        let a = servers[0].block.as_ref().unwrap();
        assert_eq!(a[0].args, ["8081"]);
        // `snippets/common.conf` from conf.d/a.conf is found under the main directory.
        assert_eq!(a[1].name, "client_max_body_size");
        assert!(a[1].file.ends_with("snippets/common.conf"));
        assert_eq!(servers[1].block.as_ref().unwrap()[0].args, ["8082"]);
        // A missing plain file is a note, an empty wildcard nothing.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].why.contains("file not found"), "{:?}", notes[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn include_beside_the_including_file_and_loops() {
        let dir = scratch("beside");
        std::fs::create_dir_all(dir.join("sites")).unwrap();
        std::fs::write(
            dir.join("sites/app.conf"),
            "server { include app-extra.conf; }\n",
        )
        .unwrap();
        std::fs::write(dir.join("sites/app-extra.conf"), "listen 9000;\n").unwrap();
        std::fs::write(dir.join("loop.conf"), "include loop.conf;\n").unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, "include sites/app.conf;\n").unwrap();
        let (tree, _) = read(&main);
        assert_eq!(tree.unwrap()[0].block.as_ref().unwrap()[0].args, ["9000"]);
        let (tree, _) = read(&dir.join("loop.conf"));
        assert!(tree.unwrap_err().contains("nested more than 32 deep"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let dir = scratch("errors");
        for (text, line, what) in [
            ("http {\n  listen 80;\n", 1, "never closed"),
            ("listen 80;\n}\n", 2, "unexpected \"}\""),
            ("server {\n  listen 80\n}\n", 3, "missing \";\""),
            ("listen 80", 1, "unexpected end of file"),
            ("; listen 80;", 1, "unexpected \";\""),
        ] {
            let main = dir.join("nginx.conf");
            std::fs::write(&main, text).unwrap();
            let e = read(&main).0.unwrap_err();
            assert!(
                e.starts_with(&format!("{}:{line}: ", main.display())),
                "{text:?}: {e}"
            );
            assert!(e.contains(what), "{text:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
