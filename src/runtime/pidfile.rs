//! `runtime.pid_file`: the running process's id in a file, held with an exclusive `flock`
//! for as long as the process lives, so that a second ringlb on the same file refuses to
//! start and names the first one.
//!
//! The lock, not the file's existence, says whether the owner is alive: the kernel drops it
//! when the process dies however it dies, so a file left by a crash (or by a second
//! SIGTERM, which exits at once) is stale and simply taken over. The file is removed at a
//! clean stop, while the lock is still held.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Attempts at taking the lock when the file is replaced under us (its owner removing it at
/// stop while we open it): one retry always suffices unless something keeps replacing it.
const ATTEMPTS: usize = 5;

/// The held pid file; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Holds the lock; closing it releases the lock.
    file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error(
        "pid file {path}: held by ringlb pid {pid}, which is running; stop it first (kill -TERM {pid}) or give this one another runtime.pid_file"
    )]
    Held { path: PathBuf, pid: String },
    #[error("pid file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl PidFile {
    /// Creates (or takes over a stale) `path`, locks it and writes this process's id.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        for _ in 0..ATTEMPTS {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(io_err)?;
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io_err(e));
                }
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(PidFileError::Held {
                    path: path.to_path_buf(),
                    pid: if pid.is_empty() {
                        "?".into()
                    } else {
                        pid.into()
                    },
                });
            }
            // The previous owner may have removed the file between our open and our lock:
            // then we hold a lock on a file nobody else can see. Open it again.
            let ours = file.metadata().map_err(io_err)?;
            match std::fs::metadata(path) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
                _ => continue,
            }
            file.set_len(0).map_err(io_err)?;
            file.rewind().map_err(io_err)?;
            writeln!(file, "{}", std::process::id()).map_err(io_err)?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(io_err(io::Error::other(
            "replaced repeatedly while being locked",
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed before the lock goes with the descriptor, so that a successor never sees
        // its own fresh file removed.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringlb-pid-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("ringlb.pid")
    }

    #[test]
    fn writes_own_pid_and_removes_it_on_drop() {
        let path = temp("own");
        let p = PidFile::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(p);
        assert!(!path.exists());
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_pid() {
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        let path = temp("second");
        let _p = PidFile::acquire(&path).unwrap();
        let e = PidFile::acquire(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    }

    #[test]
    fn a_stale_file_is_taken_over() {
        let path = temp("stale");
        std::fs::write(&path, "999999999\nleftover text\n").unwrap();
        let _p = PidFile::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_missing_directory_names_the_file() {
        let path = temp("nodir").with_file_name("no/such/dir/ringlb.pid");
        let e = PidFile::acquire(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("pid file {}: ", path.display())),
            "{e}"
        );
    }
}
