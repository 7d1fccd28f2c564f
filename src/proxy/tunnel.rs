//! The byte tunnel after a `101 Switching Protocols` (WebSocket and other upgrades): both
//! directions copied until each side closes or stays silent past the idle timeout.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::BufResult;

use super::ctx::ProxyCtx;
use super::io::{read_append, write_from};

/// Per-direction buffer of a tunnel.
const TUNNEL_BUF: usize = 16 * 1024;

/// Runs the tunnel. `early`: bytes the client sent after its request, which already belong
/// to the upgraded protocol.
pub(super) async fn run<C, U>(
    _ctx: &ProxyCtx,
    client: &mut C,
    upstream: &mut U,
    early: Vec<u8>,
    idle: Duration,
) where
    C: AsyncReadRent + AsyncWriteRent + Split,
    U: AsyncReadRent + AsyncWriteRent + Split,
{
    let (mut cr, mut cw) = halves(client);
    let (mut ur, mut uw) = halves(upstream);
    let up = async {
        let mut buf = early;
        buf.reserve(TUNNEL_BUF);
        loop {
            if !buf.is_empty() {
                let (r, b) = write_from(&mut uw, buf, 0, Instant::now() + idle).await;
                buf = b;
                if r.is_err() {
                    break;
                }
                buf.clear();
            }
            let (r, b) = read_append(&mut cr, buf, Instant::now() + idle).await;
            buf = b;
            match r {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async {
        let mut buf = Vec::with_capacity(TUNNEL_BUF);
        loop {
            let (r, b) = read_append(&mut ur, buf, Instant::now() + idle).await;
            buf = b;
            match r {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            let (r, b) = write_from(&mut cw, buf, 0, Instant::now() + idle).await;
            buf = b;
            if r.is_err() {
                break;
            }
            buf.clear();
        }
        let _ = cw.shutdown().await;
    };
    monoio::join!(up, down);
}

/// The read and write halves of a stream borrowed for the tunnel's lifetime: two futures,
/// one reading and one writing, drive the same stream at once. `Split` is the stream's
/// promise that its reads and writes are independent (monoio's own `into_split` relies on
/// it the same way, through an `Rc<UnsafeCell>`).
fn halves<T: Split>(s: &mut T) -> (Half<'_, T>, Half<'_, T>) {
    let p: *mut T = s;
    (Half(p, PhantomData), Half(p, PhantomData))
}

struct Half<'a, T>(*mut T, PhantomData<&'a mut T>);

impl<T: AsyncReadRent> AsyncReadRent for Half<'_, T> {
    fn read<B: IoBufMut>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = BufResult<usize, B>> {
        // SAFETY: the pointer comes from a `&mut T` that outlives both halves; of the two
        // halves one only reads and the other only writes, which `T: Split` allows at once.
        unsafe { &mut *self.0 }.read(buf)
    }

    fn readv<B: IoVecBufMut>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = BufResult<usize, B>> {
        // SAFETY: as in `read`.
        unsafe { &mut *self.0 }.readv(buf)
    }
}

impl<T: AsyncWriteRent> AsyncWriteRent for Half<'_, T> {
    fn write<B: IoBuf>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = BufResult<usize, B>> {
        // SAFETY: as in `read`.
        unsafe { &mut *self.0 }.write(buf)
    }

    fn writev<B: IoVecBuf>(
        &mut self,
        buf: B,
    ) -> impl std::future::Future<Output = BufResult<usize, B>> {
        // SAFETY: as in `read`.
        unsafe { &mut *self.0 }.writev(buf)
    }

    fn flush(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        // SAFETY: as in `read`.
        unsafe { &mut *self.0 }.flush()
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        // SAFETY: as in `read`.
        unsafe { &mut *self.0 }.shutdown()
    }
}
