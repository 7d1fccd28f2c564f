//! ringlb patch: a read (and a write) that owns everything it needs (the buffer and a
//! reference to the descriptor), so that it can stay in flight while its stream is used
//! otherwise, be polled later to see whether it completed, or be dropped (which cancels it).
//!
//! `AsyncReadRent::read` takes `&mut self` and its future borrows the stream, so a read can
//! not be kept pending across other uses of the stream. The operation underneath needs no
//! such borrow (it holds its own `SharedFd`); this exposes it as a named `'static` future.
//! A proxy keeps such a read armed on an idle keep-alive connection: it completes when the
//! peer speaks out of turn or closes, and when the connection is used again, the same read
//! receives the response.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use crate::{
    buf::{IoBuf, IoBufMut},
    driver::op::{recv::Recv, send::Send, Op},
    BufResult,
};

/// A read in flight; see the module documentation. Poll it to completion at most once.
pub struct OwnedRead<T: IoBufMut> {
    op: Op<Recv<T>>,
}

impl<T: IoBufMut> OwnedRead<T> {
    pub(crate) fn new(op: Op<Recv<T>>) -> Self {
        OwnedRead { op }
    }
}

impl<T: IoBufMut + Unpin> Future for OwnedRead<T> {
    type Output = BufResult<usize, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let complete = ready!(Pin::new(&mut self.op).poll(cx));
        let res = complete.meta.result.map(|v| v as usize);
        let mut buf = complete.data.buf;
        if let Ok(n) = res {
            // Safety: the kernel wrote `n` bytes to the buffer.
            unsafe { buf.set_init(n) };
        }
        Poll::Ready((res, buf))
    }
}

impl<T: IoBufMut> std::fmt::Debug for OwnedRead<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnedRead")
    }
}

/// A write in flight that owns its buffer: it can be kept pending while the stream's armed
/// read is watched and re-armed (a server answering before it has read the whole request).
pub struct OwnedWrite<T: IoBuf> {
    op: Op<Send<T>>,
}

impl<T: IoBuf> OwnedWrite<T> {
    pub(crate) fn new(op: Op<Send<T>>) -> Self {
        OwnedWrite { op }
    }
}

impl<T: IoBuf + Unpin> Future for OwnedWrite<T> {
    type Output = BufResult<usize, T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let complete = ready!(Pin::new(&mut self.op).poll(cx));
        Poll::Ready((complete.meta.result.map(|v| v as usize), complete.data.buf))
    }
}

impl<T: IoBuf> std::fmt::Debug for OwnedWrite<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnedWrite")
    }
}
