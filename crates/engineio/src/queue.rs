//! A session's bounded outbound queue.
//!
//! Many producers (broadcasts, acks, the heartbeat) push without waiting; one
//! consumer at a time (a pending polling GET, or the WebSocket writer) takes
//! frames. A push to a full queue fails at once: the caller decides (the
//! session closes the slow client). The lock is held only to push or pop,
//! never across an `.await`.
//!
//! Why not `tokio::sync::mpsc`: a session is mostly idle, and tokio's bounded
//! channel allocates a block of 32 slots plus its channel state (about 1.7 KiB)
//! for every session up front and keeps it; this queue holds a `VecDeque` that
//! grows only as far as the frames actually waiting, and costs one short lock
//! and one waker call per frame.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::task::Waker;

use parking_lot::Mutex;

use super::packet::Frame;

/// A frame was not queued: the queue holds `capacity` frames (or would, with
/// the frames offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

struct Shared {
    state: Mutex<State>,
    capacity: usize,
}

struct State {
    frames: VecDeque<Frame>,
    /// The consumer's waker. Kept (not taken) when woken, so that a consumer
    /// polling again from the same task neither clones nor replaces it.
    waker: Option<Waker>,
    /// Whether the consumer found the queue empty and waits for a wake-up.
    waiting: bool,
}

impl State {
    /// Wakes the consumer if it waits. Called under the lock: waking only
    /// schedules the consumer's task.
    fn wake(&mut self) {
        if std::mem::take(&mut self.waiting)
            && let Some(w) = &self.waker
        {
            w.wake_by_ref();
        }
    }
}

/// The producing side (shared by reference: the session owns it).
pub struct Sender(Arc<Shared>);

/// The consuming side. Its consumers hold the session, and with it the
/// [`Sender`], so the queue never ends under them: waiting stops when the
/// session closes (its token), not when the queue does.
pub struct Receiver(Arc<Shared>);

/// A queue of at most `capacity` frames (at least one).
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            waker: None,
            waiting: false,
        }),
        capacity: capacity.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `frame`, or fails at once if the queue is full.
    pub fn try_send(&self, frame: Frame) -> Result<(), Full> {
        let mut state = self.0.state.lock();
        if state.frames.len() >= self.0.capacity {
            return Err(Full);
        }
        state.frames.push_back(frame);
        state.wake();
        Ok(())
    }

    /// Queues all of `frames` or none of them (a packet and its attachments).
    pub fn try_send_all(&self, frames: impl ExactSizeIterator<Item = Frame>) -> Result<(), Full> {
        let mut state = self.0.state.lock();
        if state.frames.len() + frames.len() > self.0.capacity {
            return Err(Full);
        }
        state.frames.extend(frames);
        state.wake();
        Ok(())
    }
}

impl Receiver {
    /// The next frame, once there is one.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Frame> {
        let mut state = self.0.state.lock();
        if let Some(frame) = pop(&mut state) {
            return Poll::Ready(frame);
        }
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        state.waiting = true;
        Poll::Pending
    }

    /// Hands queued frames to `f`, in order, under one lock, until their length
    /// reaches `max_bytes` (so at least one, if any). Returns `Ready` if frames
    /// may be left; `Pending` once the queue is empty, and then `cx` is woken by
    /// the next frame. `f` runs under the queue's lock: it must be short (the
    /// WebSocket writer copies the frame into its buffer) and must not touch
    /// this queue.
    pub fn poll_recv_each(
        &mut self,
        cx: &mut Context<'_>,
        max_bytes: usize,
        mut f: impl FnMut(Frame),
    ) -> Poll<()> {
        let mut state = self.0.state.lock();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(frame) = pop(&mut state) else {
                match &mut state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                state.waiting = true;
                return Poll::Pending;
            };
            bytes += frame.len();
            f(frame);
        }
        Poll::Ready(())
    }

    /// Waits for the next frame. Cancel-safe: a frame is taken only when returned.
    pub async fn recv(&mut self) -> Frame {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        pop(&mut self.0.state.lock())
    }
}

fn pop(state: &mut State) -> Option<Frame> {
    let frame = state.frames.pop_front();
    if state.frames.is_empty() && state.frames.capacity() > SHRINK_ABOVE {
        // A burst is over: give its memory back rather than keep it per session.
        state.frames.shrink_to(SHRINK_ABOVE);
    }
    frame
}

/// Capacity (in frames) an empty queue keeps after a burst.
const SHRINK_ABOVE: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_all_or_nothing() {
        let (tx, mut rx) = channel(3);
        tx.try_send(Frame::ping()).unwrap();
        assert_eq!(
            tx.try_send_all([Frame::noop(), Frame::noop(), Frame::noop()].into_iter()),
            Err(Full)
        );
        tx.try_send_all([Frame::noop(), Frame::close()].into_iter())
            .unwrap();
        assert_eq!(tx.try_send(Frame::ping()), Err(Full));
        assert_eq!(rx.try_recv(), Some(Frame::ping()));
        assert_eq!(rx.try_recv(), Some(Frame::noop()));
        assert_eq!(rx.try_recv(), Some(Frame::close()));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn recv_waits_for_a_frame() {
        let (tx, mut rx) = channel(4);
        let consumer = tokio::spawn(async move { [rx.recv().await, rx.recv().await] });
        tokio::task::yield_now().await;
        tx.try_send(Frame::ping()).unwrap();
        tokio::task::yield_now().await;
        tx.try_send(Frame::noop()).unwrap();
        assert_eq!(consumer.await.unwrap(), [Frame::ping(), Frame::noop()]);
    }

    #[test]
    fn batches_keep_order_and_respect_the_byte_bound() {
        let (tx, mut rx) = channel(100);
        for _ in 0..10 {
            tx.try_send(Frame::ping()).unwrap();
        }
        tx.try_send(Frame::noop()).unwrap();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        // A ping is one byte ("2"): a budget of 4 takes four frames.
        assert!(rx.poll_recv_each(&mut cx, 4, |f| got.push(f)).is_ready());
        assert_eq!(got.len(), 4);
        // A budget of one byte still takes one frame.
        assert!(rx.poll_recv_each(&mut cx, 1, |f| got.push(f)).is_ready());
        assert_eq!(got.len(), 5);
        assert!(!rx.0.state.lock().waiting);
        // Emptying the queue registers the consumer.
        assert!(
            rx.poll_recv_each(&mut cx, usize::MAX, |f| got.push(f))
                .is_pending()
        );
        assert_eq!(got.len(), 11);
        assert_eq!(got.pop(), Some(Frame::noop()), "in order");
        assert!(
            rx.0.state.lock().waiting,
            "an empty queue wakes the consumer"
        );
    }

    #[test]
    fn a_burst_does_not_keep_its_memory() {
        let (tx, mut rx) = channel(1000);
        for _ in 0..1000 {
            tx.try_send(Frame::noop()).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(rx.0.state.lock().frames.capacity() <= SHRINK_ABOVE);
    }
}
