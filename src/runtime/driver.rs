//! Which I/O driver the workers run on: io_uring, or epoll where io_uring is unavailable.

use crate::config::IoMode;

/// The I/O driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    IoUring,
    Epoll,
}

impl IoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IoKind::IoUring => "io_uring",
            IoKind::Epoll => "epoll",
        }
    }
}

/// The driver to try first for an `io` setting.
pub(super) fn wants_uring(mode: IoMode) -> bool {
    !matches!(mode, IoMode::Epoll)
}
