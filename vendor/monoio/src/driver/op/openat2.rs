//! ringlb patch: openat2(2) relative to a directory descriptor with `RESOLVE_*` flags
//! (IORING_OP_OPENAT2 on io_uring, the system call on the legacy driver), so that a file can
//! be opened "beneath" a directory without a race between a check and the open.

use std::{ffi::CString, io, os::fd::AsRawFd, path::Path};

#[cfg(all(target_os = "linux", feature = "iouring"))]
use io_uring::{opcode, types};

use super::{Op, OpAble};
#[cfg(any(feature = "legacy", feature = "poll-io"))]
use crate::driver::ready::Direction;

pub(crate) struct OpenAt2<D> {
    /// Owned by the operation so that the directory stays open until the kernel is done
    /// with it, even when the future is dropped first.
    dir: D,
    path: CString,
    /// The kernel reads it at submission; boxed so that it stays put while the operation
    /// (and with it this struct) moves.
    how: Box<libc::open_how>,
}

impl<D: AsRawFd + Unpin + 'static> Op<OpenAt2<D>> {
    pub(crate) fn openat2(
        dir: D,
        path: &Path,
        flags: i32,
        resolve: u64,
    ) -> io::Result<Op<OpenAt2<D>>> {
        let path = crate::driver::util::cstr(path)?;
        // SAFETY: open_how is plain data; all-zero is its "nothing set" value.
        let mut how: Box<libc::open_how> = Box::new(unsafe { std::mem::zeroed() });
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = resolve;
        Op::submit_with(OpenAt2 { dir, path, how })
    }
}

impl<D: AsRawFd> OpAble for OpenAt2<D> {
    #[cfg(all(target_os = "linux", feature = "iouring"))]
    fn uring_op(&mut self) -> io_uring::squeue::Entry {
        let how = &*self.how as *const libc::open_how as *const types::OpenHow;
        opcode::OpenAt2::new(types::Fd(self.dir.as_raw_fd()), self.path.as_ptr(), how).build()
    }

    #[cfg(any(feature = "legacy", feature = "poll-io"))]
    #[inline]
    fn legacy_interest(&self) -> Option<(Direction, usize)> {
        None
    }

    #[cfg(any(feature = "legacy", feature = "poll-io"))]
    fn legacy_call(&mut self) -> io::Result<u32> {
        // SAFETY: the path is NUL-terminated and the open_how lives in self; the kernel
        // reads both before returning.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                self.path.as_ptr(),
                &*self.how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u32)
        }
    }
}
