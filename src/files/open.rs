//! Opening a file beneath the site's directory without blocking the worker, and reading what
//! kind of file it is.
//!
//! The open is `openat2(dir, rel, O_RDONLY | O_NONBLOCK, RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` relative to the directory descriptor opened at configuration
//! load: the kernel refuses, atomically with the open, any path that leaves the directory,
//! through `..` or through a symlink (absolute, or relative and climbing out), and
//! `/proc`-style magic links; symlinks that stay inside are followed. `O_NONBLOCK` keeps a
//! FIFO planted under the root from blocking the open (nginx opens with it for the same
//! reason); it changes nothing for regular files. The kind and size come from `statx` on the
//! open descriptor, so what is checked is what is sent.
//!
//! First the open is tried from the kernel's caches alone (`RESOLVE_CACHED`: EAGAIN rather
//! than a wait for the disk) as a plain system call on the worker: about 1 us, less than a
//! ring round trip. Only a path not all in the caches takes the slow road: on io_uring an
//! IORING_OP_OPENAT2 (a ringlb patch to the vendored monoio), which the kernel completes on
//! its own worker thread, so the worker never waits for the disk; on epoll the system call
//! waits, as nginx without `aio threads` does. `statx` is a plain call on the open
//! descriptor with `AT_STATX_DONT_SYNC`: the inode of an open file is in memory, so it never
//! waits (as a ring operation it always went through a kernel worker thread and cost 5-6 us
//! more per file; `benches/file_send.rs` measures the whole open).
//!
//! Where `openat2` is missing (Linux before 5.6, or a seccomp profile that refuses it with
//! ENOSYS), the file is opened by walking the path one component at a time with
//! `O_NOFOLLOW`: stricter (no symlink is followed at all), blocking, and only then.

use std::ffi::CString;
use std::fs::File as StdFile;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use monoio::fs::File;

const OPEN_FLAGS: i32 = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// Set once `openat2` has answered ENOSYS: every later open walks the path instead.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// Set once `RESOLVE_CACHED` has been refused (Linux 5.6 to 5.11): every later open takes
/// the uncached path at once.
static NO_RESOLVE_CACHED: AtomicBool = AtomicBool::new(false);

/// What kind of file a path named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    Directory,
    /// A FIFO, socket or device: never served (404, as nginx).
    Other,
}

/// An open file and what `statx` said about it.
pub(super) struct Opened {
    pub file: File,
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// Opens the site's directory (at configuration load): a path-only descriptor that every
/// open of the site is relative to.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path; the descriptor returned is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `rel` beneath `dir` and reads its kind, size and modification time.
pub(super) async fn open(dir: &Arc<OwnedFd>, rel: &[u8]) -> io::Result<Opened> {
    let file = open_file(dir, rel).await?;
    let st = fstatx(file.as_raw_fd())?;
    let kind = match st.stx_mode as u32 & libc::S_IFMT {
        libc::S_IFREG => Kind::Regular,
        libc::S_IFDIR => Kind::Directory,
        _ => Kind::Other,
    };
    Ok(Opened {
        file,
        kind,
        size: st.stx_size,
        mtime: st.stx_mtime.tv_sec,
    })
}

async fn open_file(dir: &Arc<OwnedFd>, rel: &[u8]) -> io::Result<File> {
    let c = CString::new(rel)?;
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return walk(dir.as_raw_fd(), Path::new(std::ffi::OsStr::from_bytes(rel)));
    }
    // First from the caches alone: never waits for the disk, so it may run on the worker.
    if !NO_RESOLVE_CACHED.load(Ordering::Relaxed) {
        match openat2(dir.as_raw_fd(), &c, RESOLVE | libc::RESOLVE_CACHED) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                NO_RESOLVE_CACHED.store(true, Ordering::Relaxed);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return no_openat2(dir, rel, e),
            r => return r,
        }
    }
    match open_uncached(dir, &c).await {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => no_openat2(dir, rel, e),
        r => r,
    }
}

/// The open of a path not all in the caches: io_uring opens it without holding the worker;
/// on epoll the worker waits for the disk, as nginx does without `aio threads`.
pub(super) async fn open_uncached(dir: &Arc<OwnedFd>, rel: &CString) -> io::Result<File> {
    if monoio::utils::is_legacy() {
        openat2(dir.as_raw_fd(), rel, RESOLVE)
    } else {
        let rel = Path::new(std::ffi::OsStr::from_bytes(rel.as_bytes()));
        File::open_at2(dir.clone(), rel, OPEN_FLAGS, RESOLVE).await
    }
}

fn no_openat2(dir: &Arc<OwnedFd>, rel: &[u8], e: io::Error) -> io::Result<File> {
    tracing::warn!("openat2 is not available ({e}); static files are opened component by component, without following symlinks");
    NO_OPENAT2.store(true, Ordering::Relaxed);
    walk(dir.as_raw_fd(), Path::new(std::ffi::OsStr::from_bytes(rel)))
}

/// The openat2 system call on the calling thread.
fn openat2(dir: RawFd, rel: &CString, resolve: u64) -> io::Result<File> {
    // SAFETY: open_how is plain data; all-zero is its "nothing set" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (OPEN_FLAGS | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: a NUL-terminated path and an open_how that outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    File::from_std(StdFile::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// statx of an open descriptor from what the kernel holds (`AT_STATX_DONT_SYNC`): the inode
/// of an open file is in memory, so this never waits, not even on a network filesystem.
fn fstatx(fd: RawFd) -> io::Result<libc::statx> {
    // SAFETY: statx is plain data; the kernel fills what the mask asks for.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `fd` itself.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME,
            &mut st,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The fallback open: one `openat` per component, each refusing a symlink.
pub(super) fn walk(dir: RawFd, rel: &Path) -> io::Result<File> {
    let parts: Vec<&[u8]> = rel
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.iter().any(|p| *p == b"..") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let mut at: Option<OwnedFd> = None;
    let base = |at: &Option<OwnedFd>| at.as_ref().map_or(dir, |f| f.as_raw_fd());
    let Some((last, dirs)) = parts.split_last() else {
        // The directory itself.
        return openat(dir, b".", OPEN_FLAGS);
    };
    for part in dirs {
        let next = openat_owned(
            base(&at),
            part,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        at = Some(next);
    }
    openat(base(&at), last, OPEN_FLAGS | libc::O_NOFOLLOW)
}

fn openat(dir: RawFd, name: &[u8], flags: i32) -> io::Result<File> {
    let fd = openat_owned(dir, name, flags)?;
    File::from_std(StdFile::from(fd))
}

fn openat_owned(dir: RawFd, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(name)?;
    // SAFETY: a NUL-terminated name relative to an open directory descriptor.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
