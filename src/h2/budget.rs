//! A per-connection budget for the frames an HTTP/2 client sends, enforced by reading the
//! frame headers as the bytes pass from the socket to the `h2` crate.
//!
//! `h2` already defends the attacks that concern stream state: rapid reset (streams reset
//! before they are accepted, and locally reset ones), CONTINUATION floods, header lists over
//! the limit (HPACK bombs: decoding stops at the limit, the stream gets 431/REFUSED_STREAM),
//! and floods of tiny DATA frames. It answers every PING and SETTINGS and takes every
//! WINDOW_UPDATE or PRIORITY it is sent, though, so a client can make it spend CPU (and
//! write pongs and acks) without ever sending a request. This layer caps, per second and
//! connection, each kind of frame that carries no request, and (as nginx does) the share of
//! a connection's bytes that is framing rather than headers and bodies. Past a cap the
//! connection gets GOAWAY ENHANCE_YOUR_CALM and no more of its input is read.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface, which precedes the first frame.
const PREFACE_LEN: u8 = 24;
const FRAME_HEADER: usize = 9;
/// The window over which frames are counted.
const WINDOW: Duration = Duration::from_secs(1);
/// Frames without a request in them, per connection per second. A browser sends a few of
/// each per page (a SETTINGS and its ack, a PING to measure the round trip, WINDOW_UPDATEs
/// as it reads, RST_STREAM when a user navigates away); a flood sends them as fast as the
/// link carries them. The caps are far above the first and far below the second.
const PER_SECOND: [u32; Abuse::RATED] = [
    100,    // PING
    100,    // SETTINGS
    200,    // RST_STREAM
    1_000,  // PRIORITY
    10_000, // WINDOW_UPDATE (a fast download makes a client send many)
    100,    // empty DATA without END_STREAM, empty HEADERS/CONTINUATION fragments
    1_000,  // unknown (extension) frame types, which h2 ignores
];
/// nginx's flood rule (`ngx_http_v2_state_..`: total / 8 > payload + 1 MiB): framing may be
/// at most 8 times the request bytes (header blocks and bodies), plus this allowance.
const OVERHEAD_ALLOWANCE: u64 = 1 << 20;

/// Why a connection was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    PingFlood,
    SettingsFlood,
    ResetFlood,
    PriorityFlood,
    WindowUpdateFlood,
    EmptyFrameFlood,
    UnknownFrameFlood,
    /// Far more framing than content, of whatever kinds.
    Overhead,
}

impl Abuse {
    const RATED: usize = 7;
    pub const ALL: [Abuse; 8] = [
        Abuse::PingFlood,
        Abuse::SettingsFlood,
        Abuse::ResetFlood,
        Abuse::PriorityFlood,
        Abuse::WindowUpdateFlood,
        Abuse::EmptyFrameFlood,
        Abuse::UnknownFrameFlood,
        Abuse::Overhead,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        crate::metrics::H2_ABUSE[self.index()]
    }

    pub fn index(self) -> usize {
        Abuse::ALL.iter().position(|a| *a == self).unwrap_or(0)
    }
}

/// Counts of one connection, kept per window.
#[derive(Debug)]
pub struct Budget {
    window_start: Instant,
    counts: [u32; Abuse::RATED],
    useful: u64,
    overhead: u64,
}

impl Budget {
    pub fn new(now: Instant) -> Budget {
        Budget {
            window_start: now,
            counts: [0; Abuse::RATED],
            useful: 0,
            overhead: 0,
        }
    }

    /// Charges one frame (from its 9-byte header); `Err` when it is over a cap.
    pub fn charge(&mut self, head: &[u8; FRAME_HEADER], now: Instant) -> Result<(), Abuse> {
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.counts = [0; Abuse::RATED];
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as u64;
        let (kind, flags) = (head[3], head[4]);
        const END_STREAM: u8 = 0x1;
        let rated = match kind {
            0 => {
                self.useful += len;
                (len == 0 && flags & END_STREAM == 0).then_some(5)
            }
            1 | 9 => {
                self.useful += len;
                (len == 0).then_some(5)
            }
            2 => Some(3),
            3 => Some(2),
            4 => Some(1),
            6 => Some(0),
            8 => Some(4),
            5 | 7 => None,
            _ => Some(6),
        };
        if !matches!(kind, 0 | 1 | 9) {
            self.overhead += len;
        }
        self.overhead += FRAME_HEADER as u64;
        if let Some(i) = rated {
            self.counts[i] += 1;
            if self.counts[i] > PER_SECOND[i] {
                return Err(Abuse::ALL[i]);
            }
        }
        if self.overhead / 8 > self.useful + OVERHEAD_ALLOWANCE {
            return Err(Abuse::Overhead);
        }
        Ok(())
    }
}

/// Finds frame boundaries in a byte stream that arrives in arbitrary pieces.
#[derive(Debug)]
struct Framer {
    preface_left: u8,
    head: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    /// No frame has been seen yet (the first must be SETTINGS).
    first: bool,
    /// Inside a SETTINGS payload: the bytes of the current (identifier, value) pair.
    setting: Option<([u8; 6], usize)>,
}

impl Framer {
    fn new() -> Framer {
        Framer {
            preface_left: PREFACE_LEN,
            head: [0; FRAME_HEADER],
            have: 0,
            skip: 0,
            first: true,
            setting: None,
        }
    }

    /// Charges every frame whose header completes in `bytes`; on abuse, how many bytes of
    /// `bytes` come before the offending frame.
    fn scan(
        &mut self,
        bytes: &[u8],
        budget: &mut Budget,
        now: Instant,
    ) -> Result<(), (usize, Cut)> {
        let mut i = 0;
        while i < bytes.len() {
            if self.preface_left > 0 {
                let n = (self.preface_left as usize).min(bytes.len() - i);
                self.preface_left -= n as u8;
                i += n;
            } else if self.skip > 0 {
                let n = self.skip.min((bytes.len() - i) as u64) as usize;
                if let Some((pair, have)) = &mut self.setting {
                    // SETTINGS values h2 refuses with the wrong code (see `Cut::FlowControl`).
                    // The frame is cut before its last byte, so h2 never sees it whole.
                    for (k, &b) in bytes[i..i + n].iter().enumerate() {
                        pair[*have] = b;
                        *have += 1;
                        if *have == 6 {
                            *have = 0;
                            let id = u16::from_be_bytes([pair[0], pair[1]]);
                            let v = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
                            if id == 4 && v > 0x7fff_ffff {
                                return Err((i + k, Cut::FlowControl));
                            }
                        }
                    }
                }
                self.skip -= n as u64;
                i += n;
                if self.skip == 0 {
                    self.setting = None;
                }
            } else {
                let start = i.saturating_sub(self.have);
                let n = (FRAME_HEADER - self.have).min(bytes.len() - i);
                self.head[self.have..self.have + n].copy_from_slice(&bytes[i..i + n]);
                self.have += n;
                i += n;
                if self.have == FRAME_HEADER {
                    self.have = 0;
                    let first = std::mem::replace(&mut self.first, false);
                    check(&self.head, first).map_err(|c| (start, c))?;
                    budget
                        .charge(&self.head, now)
                        .map_err(|a| (start, Cut::Abuse(a)))?;
                    self.skip =
                        u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as u64;
                    if self.head[3] == 4 && self.head[4] & 1 == 0 && self.skip > 0 {
                        self.setting = Some(([0; 6], 0));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why a connection is cut off by this layer rather than by `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Over budget: GOAWAY ENHANCE_YOUR_CALM.
    Abuse(Abuse),
    /// A frame whose length its type does not allow: GOAWAY FRAME_SIZE_ERROR (RFC 9113 4.2;
    /// `h2` answers these with PROTOCOL_ERROR).
    FrameSize,
    /// SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: GOAWAY FLOW_CONTROL_ERROR (RFC 9113
    /// 6.5.2; `h2` says PROTOCOL_ERROR). The SETTINGS frame is let through up to the bad
    /// value, which never reaches `h2`.
    FlowControl,
    /// The first frame is not SETTINGS: GOAWAY PROTOCOL_ERROR (RFC 9113 3.4; `h2` accepts
    /// any frame first).
    Preface,
}

impl Cut {
    pub fn reason(self) -> h2::Reason {
        match self {
            Cut::Abuse(_) => h2::Reason::ENHANCE_YOUR_CALM,
            Cut::FrameSize => h2::Reason::FRAME_SIZE_ERROR,
            Cut::FlowControl => h2::Reason::FLOW_CONTROL_ERROR,
            Cut::Preface => h2::Reason::PROTOCOL_ERROR,
        }
    }
}

/// The length rules of RFC 9113 section 6 for frames of fixed size, and 3.4's first frame.
fn check(head: &[u8; FRAME_HEADER], first: bool) -> Result<(), Cut> {
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let (kind, flags) = (head[3], head[4]);
    const ACK: u8 = 0x1;
    if first && (kind != 4 || flags & ACK != 0) {
        return Err(Cut::Preface);
    }
    let ok = match kind {
        2 => len == 5,                     // PRIORITY (6.3)
        3 | 8 => len == 4,                 // RST_STREAM (6.4), WINDOW_UPDATE (6.9)
        4 if flags & ACK != 0 => len == 0, // SETTINGS ACK (6.5)
        4 => len % 6 == 0,                 // SETTINGS (6.5)
        6 => len == 8,                     // PING (6.7)
        7 => len >= 8,                     // GOAWAY (6.8)
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Cut::FrameSize)
    }
}

/// Where the abuse verdict waits for the connection's driver.
#[derive(Debug, Default)]
pub struct AbuseSignal {
    state: RefCell<(Option<Cut>, Option<Waker>)>,
}

impl AbuseSignal {
    fn raise(&self, abuse: Cut) {
        let mut s = self.state.borrow_mut();
        if s.0.is_none() {
            s.0 = Some(abuse);
        }
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }

    pub fn get(&self) -> Option<Cut> {
        self.state.borrow().0
    }

    /// Completes when the connection is to be cut off.
    pub async fn wait(&self) -> Cut {
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            match s.0 {
                Some(a) => Poll::Ready(a),
                None => {
                    s.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The connection's I/O as `h2` sees it: reads are scanned and cut at the first frame over
/// budget; writes pass through.
pub struct Guarded<IO> {
    /// Shared with the connection's driver, which drains the socket after a cut-off GOAWAY
    /// (once `h2` is gone) so that closing it does not reset the connection before the
    /// client has read the GOAWAY.
    io: Rc<RefCell<IO>>,
    framer: Framer,
    budget: Budget,
    signal: Rc<AbuseSignal>,
}

impl<IO> Guarded<IO> {
    pub fn new(io: Rc<RefCell<IO>>, signal: Rc<AbuseSignal>) -> Guarded<IO> {
        Guarded {
            io,
            framer: Framer::new(),
            budget: Budget::new(Instant::now()),
            signal,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.signal.get().is_some() {
            // Cut off: the driver is sending GOAWAY; nothing more is read.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut *me.io.borrow_mut()).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match me.framer.scan(new, &mut me.budget, Instant::now()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err((keep, cut)) => {
                buf.set_filled(before + keep);
                me.signal.raise(cut);
                if keep == 0 {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.borrow().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io.borrow_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.resize(FRAME_HEADER + len, 0);
        f
    }

    #[test]
    fn frames_are_found_across_arbitrary_pieces() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(4, 0, 0));
        for _ in 0..100 {
            input.extend(frame(6, 0, 8));
        }
        let now = Instant::now();
        let mut f = Framer::new();
        let mut b = Budget::new(now);
        for piece in input.chunks(7) {
            f.scan(piece, &mut b, now).unwrap();
        }
        assert_eq!(b.counts[0], 100);
        assert_eq!(b.counts[1], 1);
        input.clear();
        input.extend(frame(6, 0, 8));
        let r = f.scan(&input, &mut b, now);
        assert_eq!(r, Err((0, Cut::Abuse(Abuse::PingFlood))));
    }

    #[test]
    fn fixed_size_frames_and_the_first_frame_are_checked() {
        let head =
            |kind, flags, len| -> [u8; 9] { frame(kind, flags, len)[..9].try_into().unwrap() };
        assert_eq!(check(&head(6, 0, 8), true), Err(Cut::Preface));
        assert_eq!(check(&head(4, 1, 0), true), Err(Cut::Preface));
        assert_eq!(check(&head(4, 0, 6), true), Ok(()));
        assert_eq!(check(&head(6, 0, 7), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(4, 0, 5), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(4, 1, 6), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(8, 0, 3), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(2, 0, 4), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(7, 0, 7), false), Err(Cut::FrameSize));
        assert_eq!(check(&head(0, 0, 0), false), Ok(()));
    }

    #[test]
    fn the_window_restores_the_budget() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let ping: [u8; 9] = frame(6, 0, 8)[..9].try_into().unwrap();
        for _ in 0..100 {
            b.charge(&ping, t0).unwrap();
        }
        assert!(b.charge(&ping, t0).is_err());
        b.charge(&ping, t0 + WINDOW).unwrap();
    }

    #[test]
    fn framing_far_beyond_content_is_overhead() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        // PRIORITY frames, 14 bytes each, spread so no rate cap trips.
        let prio: [u8; 9] = frame(2, 0, 5)[..9].try_into().unwrap();
        let mut t = t0;
        let mut n = 0u64;
        let abuse = loop {
            n += 1;
            if n % 900 == 0 {
                t += WINDOW;
            }
            if let Err(a) = b.charge(&prio, t) {
                break a;
            }
        };
        assert_eq!(abuse, Abuse::Overhead);
        assert!(n * 14 / 8 > OVERHEAD_ALLOWANCE);
        // Content keeps a busy connection well within the rule.
        let mut b = Budget::new(t0);
        let data: [u8; 9] = frame(0, 0, 16_384)[..9].try_into().unwrap();
        for _ in 0..100_000 {
            b.charge(&data, t0).unwrap();
        }
    }
}
