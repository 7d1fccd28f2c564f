//! Bodies held for the slower side of an exchange: in memory up to the location's
//! `proxy_buffers`, beyond that in an unlinked temporary file under `runtime.temp_path`.
//!
//! The file is created with `O_TMPFILE` (never visible in the directory, gone when closed;
//! a named file unlinked at once where the file system lacks it) and read and written with
//! monoio's file operations: io_uring reads and writes on that driver, `pread`/`pwrite` on
//! the epoll one (page-cache writes; a slow disk would stall that worker, which is why the
//! epoll driver is the fallback, not the default).
//!
//! - [`BufferedBody`]: a request body read whole before a server is chosen, replayed from
//!   its start on every attempt.
//! - [`Spool`]: a response body on its way from a fast server to a slow client, a FIFO
//!   whose oldest bytes are in memory and whose newest spill to the file.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use monoio::buf::IoBuf;

use super::buffers::Buffers;

/// Size of the pieces a spilled body is read back in: one of the worker's read buffers.
pub(super) const READ_BACK: usize = crate::pool::UPSTREAM_BUF;

/// An unlinked temporary file.
pub(super) struct TempFile {
    file: monoio::fs::File,
}

impl TempFile {
    /// Creates one under `dir` (created if missing).
    pub(super) fn create(dir: &Path) -> io::Result<TempFile> {
        let fd = match open_tmpfile(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                open_tmpfile(dir)?
            }
            r => r?,
        };
        // SAFETY: `fd` is a fresh descriptor this function owns.
        let std = unsafe { std::fs::File::from_raw_fd(fd) };
        Ok(TempFile {
            file: monoio::fs::File::from_std(std)?,
        })
    }

    /// Writes all of `buf[range]` at `pos`.
    pub(super) async fn write_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        pos: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        let (r, slice) = self.file.write_all_at(buf.slice(range), pos).await;
        (r, slice.into_inner())
    }

    /// Reads up to `len` bytes at `pos`, appending to `buf`.
    pub(super) async fn read_at(
        &self,
        mut buf: Vec<u8>,
        len: usize,
        pos: u64,
    ) -> (io::Result<usize>, Vec<u8>) {
        let at = buf.len();
        buf.reserve(len);
        let (r, slice) = self
            .file
            .read_at(monoio::buf::IoBufMut::slice_mut(buf, at..at + len), pos)
            .await;
        (r, slice.into_inner())
    }
}

/// `O_TMPFILE` where the file system has it, else a named file unlinked at once.
fn open_tmpfile(dir: &Path) -> io::Result<libc::c_int> {
    let cdir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in temp_path"))?;
    // SAFETY: a NUL-terminated path; the flags create a new file this process owns.
    let fd = unsafe {
        libc::open(
            cdir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd >= 0 {
        return Ok(fd);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) => {}
        _ => return Err(e),
    }
    let mut template = dir.as_os_str().as_bytes().to_vec();
    template.extend_from_slice(b"/ringlb.XXXXXX\0");
    // SAFETY: `template` is NUL-terminated and writable, as mkostemp requires.
    let fd = unsafe { libc::mkostemp(template.as_mut_ptr().cast(), libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the name mkostemp wrote, NUL-terminated.
    unsafe { libc::unlink(template.as_ptr().cast()) };
    Ok(fd)
}

/// A request body read whole: the first bytes in memory, the rest in a file.
#[derive(Default)]
pub(super) struct BufferedBody {
    pub(super) mem: Vec<u8>,
    file: Option<TempFile>,
    file_len: u64,
    /// What a file write takes and gives back (reused: spilling allocates nothing per
    /// write).
    stage: Vec<u8>,
}

impl BufferedBody {
    pub(super) fn clear(&mut self) {
        self.mem.clear();
        self.file = None;
        self.file_len = 0;
    }

    pub(super) fn len(&self) -> u64 {
        self.mem.len() as u64 + self.file_len
    }

    /// Bytes that went to the file (read back with [`BufferedBody::read_file`]).
    pub(super) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Appends `data`: to memory while the body fits in `mem_limit` bytes, to the file
    /// beyond that.
    pub(super) async fn push(
        &mut self,
        data: &[u8],
        mem_limit: usize,
        dir: &Path,
    ) -> io::Result<()> {
        if self.file.is_none() && self.mem.len() + data.len() <= mem_limit {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(TempFile::create(dir)?);
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut stage = std::mem::take(&mut self.stage);
        stage.clear();
        stage.extend_from_slice(data);
        let (r, stage) = file.write_at(stage, 0..data.len(), self.file_len).await;
        self.stage = stage;
        r?;
        self.file_len += data.len() as u64;
        Ok(())
    }

    /// Reads up to `len` bytes of the spilled part at `pos`, appending to `buf`.
    pub(super) async fn read_file(
        &self,
        buf: Vec<u8>,
        len: usize,
        pos: u64,
    ) -> (io::Result<usize>, Vec<u8>) {
        match &self.file {
            Some(f) => f.read_at(buf, len, pos).await,
            None => (Ok(0), buf),
        }
    }

    /// Lets go of memory a large body left behind.
    pub(super) fn shrink(&mut self, above: usize) {
        if self.mem.capacity() > above {
            self.mem = Vec::new();
        }
    }
}

/// A FIFO of response bytes (already framed for the client) between the server and the
/// client: the oldest in memory chunks, the newest, once memory is full, in the file. All
/// bytes in memory are older than all bytes in the file (new bytes go to memory only while
/// the file holds nothing unread), so reading memory first keeps the order.
pub(super) struct Spool<'b> {
    mem: VecDeque<Vec<u8>>,
    mem_bytes: usize,
    mem_limit: usize,
    file: Option<TempFile>,
    /// Unread bytes of the file are `[read_at, write_at)`.
    read_at: u64,
    write_at: u64,
    file_limit: u64,
    /// Where chunk buffers come from and go back to.
    buffers: &'b Buffers,
}

impl<'b> Spool<'b> {
    pub(super) fn new(mem_limit: usize, file_limit: u64, buffers: &'b Buffers) -> Spool<'b> {
        Spool {
            mem: VecDeque::new(),
            mem_bytes: 0,
            mem_limit,
            file: None,
            read_at: 0,
            write_at: 0,
            file_limit,
            buffers,
        }
    }

    /// Whether a buffer of `n` bytes can be taken now (memory, or the file up to its limit).
    pub(super) fn has_room(&self, n: usize) -> bool {
        (self.read_at == self.write_at && self.mem_bytes + n <= self.mem_limit)
            || self.write_at - self.read_at + n as u64 <= self.file_limit
    }

    /// An empty buffer to fill.
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.buffers.take()
    }

    /// Gives a buffer back for reuse.
    pub(super) fn recycle(&mut self, b: Vec<u8>) {
        self.buffers.give(b);
    }

    /// Queues `chunk` (the caller checked [`Spool::has_room`]).
    pub(super) async fn push(&mut self, chunk: Vec<u8>, dir: &Path) -> io::Result<()> {
        if chunk.is_empty() {
            self.recycle(chunk);
            return Ok(());
        }
        // Memory is counted by what the chunks hold, not what they carry: a short read in a
        // large buffer costs the whole buffer.
        if self.read_at == self.write_at && self.mem_bytes + chunk.capacity() <= self.mem_limit {
            self.mem_bytes += chunk.capacity();
            self.mem.push_back(chunk);
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(TempFile::create(dir)?);
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let len = chunk.len();
        let (r, chunk) = file.write_at(chunk, 0..len, self.write_at).await;
        self.recycle(chunk);
        r?;
        self.write_at += len as u64;
        Ok(())
    }

    /// The oldest queued bytes, as one buffer (a memory chunk, or up to [`READ_BACK`]
    /// bytes read back from the file); `None` when empty.
    pub(super) async fn pop(&mut self) -> Option<io::Result<Vec<u8>>> {
        if let Some(c) = self.mem.pop_front() {
            self.mem_bytes -= c.capacity();
            return Some(Ok(c));
        }
        if self.read_at == self.write_at {
            return None;
        }
        let file = self.file.as_ref()?;
        let want = ((self.write_at - self.read_at) as usize).min(READ_BACK);
        let buf = self.buffers.take();
        let (r, buf) = file.read_at(buf, want, self.read_at).await;
        match r {
            Ok(0) => Some(Err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                self.read_at += n as u64;
                if self.read_at == self.write_at {
                    // Drained: start the file over (its blocks are reused).
                    self.read_at = 0;
                    self.write_at = 0;
                }
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
