//! What the client's and the server's tower layers have in common: a request's own work,
//! boxed once and carried through a node's stack (its output kept inside until the caller
//! takes it), the innermost service that runs that work, the stack built from the builder's
//! layers, and one request driven through the stack.
//!
//! A layered request costs two allocations: its work's box and the boxed future of the
//! outermost layer (erased, since the stack's type is only known when the node starts). The
//! stack's clone (tower drives a service through `&mut self`, so each request needs a clone
//! of its own) is kept per thread and reused while it is ready at once; the work's progress
//! flags likewise. The deadline's timer is armed only while the layers hold the request
//! (waiting for readiness, or before or after the work): while the work runs, it ends at the
//! deadline by itself.
//!
//! See `client/layer.rs` ([`Call`](crate::Call)) and `server/layer.rs`
//! ([`ServerCall`](crate::ServerCall)) for what each side's layers see.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::thread::LocalKey;
use std::time::Instant;

use futures::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceExt};

/// A request's own work (the client's send, the server's handler), type-erased once: a
/// future that keeps its output until it is taken.
pub(crate) trait Work: Future<Output = ()> + Send {
    /// The error the work ended with, taken out; `None` if it succeeded (or has not ended).
    fn take_error(self: Pin<&mut Self>) -> Option<BoxError>;

    /// Moves the work's output into `slot`, if `slot` is an `Option` of the output's type
    /// (left alone otherwise, or if there is no output to take).
    fn output_into(self: Pin<&mut Self>, slot: &mut dyn Any);
}

pin_project_lite::pin_project! {
    /// A request's work and, once it has finished, its output, side by side (taking the output
    /// moves only it, not the finished future).
    struct Running<F, T> {
        #[pin]
        work: F,
        output: Option<Result<T, BoxError>>,
        started: bool,
        ends: Ends,
    }
}

impl<F, T> Future for Running<F, T>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.output.is_some() {
            return Poll::Ready(());
        }
        if !*this.started {
            *this.started = true;
            (this.ends.0).0.fetch_or(STARTED, Ordering::Release);
        }
        let output = ready!(this.work.poll(cx));
        *this.output = Some(output);
        (this.ends.0).0.fetch_or(ENDED, Ordering::Release);
        Poll::Ready(())
    }
}

impl<F, T> Work for Running<F, T>
where
    F: Future<Output = Result<T, BoxError>> + Send,
    T: Send + 'static,
{
    fn take_error(self: Pin<&mut Self>) -> Option<BoxError> {
        let output = self.project().output;
        if matches!(output, Some(Err(_))) {
            output.take().and_then(Result::err)
        } else {
            None
        }
    }

    fn output_into(self: Pin<&mut Self>, slot: &mut dyn Any) {
        if let Some(slot) = slot.downcast_mut::<Option<T>>() {
            *slot = self.project().output.take().and_then(Result::ok);
        }
    }
}

/// A request's work, boxed.
pub(crate) type BoxWork = Pin<Box<dyn Work>>;

/// Whether a request's work has started (been polled) and ended (finished, or dropped by a
/// layer): while it runs, the deadline is the work's own business.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

const STARTED: u8 = 1;
const ENDED: u8 = 2;

impl Progress {
    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Marks the work ended when dropped (also when a layer drops it unfinished).
struct Ends(Arc<Progress>);

impl Drop for Ends {
    fn drop(&mut self) {
        (self.0).0.fetch_or(ENDED, Ordering::Release);
    }
}

thread_local! {
    /// A [`Progress`] no request holds any more, reused by the thread's next request.
    static SPARE_PROGRESS: RefCell<Option<Arc<Progress>>> = const { RefCell::new(None) };
}

/// A cleared [`Progress`]: this thread's spare one if no request holds it any more, else a
/// new one.
fn progress() -> Arc<Progress> {
    let spare = SPARE_PROGRESS
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten();
    match spare {
        Some(mut p) => match Arc::get_mut(&mut p) {
            Some(only) => {
                *only.0.get_mut() = 0;
                p
            }
            None => Arc::default(),
        },
        None => Arc::default(),
    }
}

/// Keeps `p` for the thread's next request.
fn spare(p: Arc<Progress>) {
    let _ = SPARE_PROGRESS.try_with(|s| {
        let old = s.replace(Some(p));
        drop(old);
    });
}

/// `work` boxed for a request (built in place by the caller's inlined copy of this, so that
/// the work, as large as its largest state, is copied once, into the box), and the
/// [`Progress`] it reports to.
#[inline(always)]
pub(crate) fn boxed<T, F>(work: F) -> (BoxWork, Arc<Progress>)
where
    F: Future<Output = Result<T, BoxError>> + Send + 'static,
    T: Send + 'static,
{
    let progress = progress();
    let work = Box::pin(Running {
        work,
        output: None,
        started: false,
        ends: Ends(progress.clone()),
    });
    (work, progress)
}

/// A request that carries its work through the layers ([`Call`](crate::Call),
/// [`ServerCall`](crate::ServerCall)).
pub(crate) trait Carries: Send + 'static {
    /// The work, out of the request (by the innermost service).
    fn into_work(self) -> BoxWork;
}

/// A response that carries the finished work back out ([`CallResponse`](crate::CallResponse),
/// [`ServerResponse`](crate::ServerResponse)).
pub(crate) trait Returns: Send + 'static {
    /// The response of finished `work` (by the innermost service).
    fn from_work(work: BoxWork) -> Self;
    /// The finished work, out of the response (by the caller, after the layers).
    fn into_work(self) -> BoxWork;
}

/// What the layers wrap: the innermost service, which runs the work a request carries, or,
/// under an outer layer, the layers inside it (erased).
pub(crate) enum Inner<Req, Resp> {
    /// Runs the request's work.
    Run,
    /// The stack of the inner layers.
    Boxed(BoxCloneSyncService<Req, Resp, BoxError>),
}

impl<Req, Resp> Clone for Inner<Req, Resp> {
    fn clone(&self) -> Self {
        match self {
            Inner::Run => Inner::Run,
            Inner::Boxed(s) => Inner::Boxed(s.clone()),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Inner<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::Run => f.write_str("Run"),
            Inner::Boxed(_) => f.write_str("Layers(..)"),
        }
    }
}

impl<Req: Carries, Resp: Returns> Inner<Req, Resp> {
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Inner::Run => Poll::Ready(Ok(())),
            Inner::Boxed(s) => s.poll_ready(cx),
        }
    }

    pub(crate) fn call(&mut self, req: Req) -> InnerFuture<Resp> {
        match self {
            Inner::Run => InnerFuture::Run(Some(req.into_work())),
            Inner::Boxed(s) => InnerFuture::Boxed(s.call(req)),
        }
    }
}

/// The future of [`Inner`]: the work itself (not boxed again), or the inner layers'.
pub(crate) enum InnerFuture<Resp> {
    Run(Option<BoxWork>),
    Boxed(BoxFuture<'static, Result<Resp, BoxError>>),
}

impl<Resp: Returns> Future for InnerFuture<Resp> {
    type Output = Result<Resp, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            InnerFuture::Boxed(f) => f.as_mut().poll(cx),
            InnerFuture::Run(slot) => {
                let work = slot.as_mut().expect("polled after it finished");
                ready!(work.as_mut().poll(cx));
                let mut work = slot.take().expect("the work just finished");
                Poll::Ready(match work.as_mut().take_error() {
                    Some(e) => Err(e),
                    None => Ok(Resp::from_work(work)),
                })
            }
        }
    }
}

/// A thread's ready clone of a stack: the stack's id and the clone.
pub(crate) type ReadySlot<Req, Resp> =
    RefCell<Option<(u64, BoxCloneSyncService<Req, Resp, BoxError>)>>;

/// The service type the layers of one side wrap ([`CallService`](crate::CallService),
/// [`ServerService`](crate::ServerService)).
pub(crate) trait Side: Clone + Send + Sync + 'static {
    type Req: Carries;
    type Resp: Returns;
    /// The innermost service.
    fn run() -> Self;
    /// The inner layers, as what the next layer wraps.
    fn boxed(inner: BoxCloneSyncService<Self::Req, Self::Resp, BoxError>) -> Self;
    /// The thread's ready clone of this side's stack.
    fn ready() -> &'static LocalKey<ReadySlot<Self::Req, Self::Resp>>;
}

/// One layer given to the builder, applied when the node starts.
type Wrap<S> = Box<
    dyn FnOnce(S) -> BoxCloneSyncService<<S as Side>::Req, <S as Side>::Resp, BoxError>
        + Send
        + Sync,
>;

/// The layers given to a [`NodeBuilder`](crate::NodeBuilder) for one side, outermost first.
pub(crate) struct Layers<S: Side>(Vec<Wrap<S>>);

impl<S: Side> Default for Layers<S> {
    fn default() -> Self {
        Layers(Vec::new())
    }
}

impl<S: Side> std::fmt::Debug for Layers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Layers({})", self.0.len())
    }
}

/// Stacks get an id each, so that a thread's ready clone is used only for its own stack.
static NEXT_STACK: AtomicU64 = AtomicU64::new(1);

impl<S: Side> Layers<S> {
    /// Adds `layer` inside the ones already given.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<S> + Send + Sync + 'static,
        L::Service: Service<S::Req, Response = S::Resp> + Clone + Send + Sync + 'static,
        <L::Service as Service<S::Req>>::Error: Into<BoxError>,
        <L::Service as Service<S::Req>>::Future: Send + 'static,
    {
        self.0.push(Box::new(move |inner| {
            BoxCloneSyncService::new(layer.layer(inner).map_err(Into::into))
        }));
    }

    /// The stack over the innermost service, or `None` without layers (the direct path).
    /// The innermost layer wraps the innermost service itself, not a boxed one.
    pub(crate) fn build(self) -> Option<Stack<S>> {
        let mut wraps = self.0.into_iter().rev();
        let innermost = wraps.next()?;
        let service = wraps.fold(innermost(S::run()), |inner, wrap| wrap(S::boxed(inner)));
        Some(Stack {
            id: NEXT_STACK.fetch_add(1, Ordering::Relaxed),
            service,
        })
    }
}

/// A node's stack of one side, built once when the node starts.
pub(crate) struct Stack<S: Side> {
    id: u64,
    service: BoxCloneSyncService<S::Req, S::Resp, BoxError>,
}

impl<S: Side> std::fmt::Debug for Stack<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("id", &self.id).finish()
    }
}

/// How a request driven through a [`Stack`] ended.
#[derive(Debug)]
pub(crate) enum Driven<T> {
    /// The stack answered, and the work's output is this.
    Done(T),
    /// The stack failed: a layer's error, or the work's own, passed out through the layers.
    Failed { error: BoxError, started: bool },
    /// The stack answered, but not with this request's work (a layer answered with another
    /// request's response).
    Forged,
    /// The deadline passed while the layers held the request.
    Expired { started: bool },
}

impl<S: Side> Stack<S> {
    /// A clone of the stack to call: the thread's ready one if it is this stack's, else a new
    /// clone.
    fn clone_ready(&self) -> BoxCloneSyncService<S::Req, S::Resp, BoxError> {
        let kept = S::ready()
            .try_with(|r| {
                let mut r = r.borrow_mut();
                match &*r {
                    Some((id, _)) if *id == self.id => r.take().map(|(_, s)| s),
                    _ => None,
                }
            })
            .ok()
            .flatten();
        kept.unwrap_or_else(|| self.service.clone())
    }

    /// Keeps `service` (called, so ready for its next `poll_ready`) for the thread's next
    /// request.
    fn keep(&self, service: BoxCloneSyncService<S::Req, S::Resp, BoxError>) {
        let _ = S::ready().try_with(|r| {
            let old = r.replace(Some((self.id, service)));
            drop(old);
        });
    }

    /// Runs `req`, which carries work [`boxed`] with `progress`, through the stack. The layers
    /// hold the request at most until `deadline` (while the work runs, it keeps its own
    /// deadline).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        req: S::Req,
        progress: Arc<Progress>,
        deadline: Instant,
    ) -> Driven<T> {
        let mut req = Some(req);
        let mut service = Some(self.clone_ready());
        let mut called: Option<BoxFuture<'static, Result<S::Resp, BoxError>>> = None;
        let mut timer = pin!(None::<tokio::time::Sleep>);
        let through = std::future::poll_fn(|cx| {
            let fut = match &mut called {
                Some(fut) => fut,
                None => {
                    let s = service.as_mut().expect("a clone until called");
                    match s.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            called.insert(s.call(req.take().expect("called once")))
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Poll::Pending => return expired(timer.as_mut(), deadline, cx),
                    }
                }
            };
            let polled = fut.as_mut().poll(cx);
            if service.is_some() && !matches!(polled, Poll::Ready(Err(_))) {
                // Called and not refused at once: the clone goes back for the thread's next
                // request. One refused at once is dropped: it may hold a registration its
                // layer made while saying it was ready (tower's `LoadShed` over a
                // `ConcurrencyLimit` queues for a permit, then refuses the call), which would
                // keep a permit from everyone until the clone is polled again.
                self.keep(service.take().expect("checked"));
            }
            if let Poll::Ready(r) = polled {
                return Poll::Ready(Some(r));
            }
            let state = progress.get();
            if timer.is_none() && state & STARTED != 0 && state & ENDED == 0 {
                // The work runs: it ends by the deadline itself.
                return Poll::Pending;
            }
            expired(timer.as_mut(), deadline, cx)
        })
        .await;
        drop((called, req, service));
        let started = progress.get() & STARTED != 0;
        let driven = match through {
            Some(Ok(resp)) => {
                let mut work = resp.into_work();
                let mut out: Option<T> = None;
                work.as_mut().output_into(&mut out);
                match out {
                    Some(out) => Driven::Done(out),
                    None => Driven::Forged,
                }
            }
            Some(Err(error)) => Driven::Failed { error, started },
            None => Driven::Expired { started },
        };
        // The work is dropped by now (unless a layer keeps it): the flags are free again.
        spare(progress);
        driven
    }
}

/// `Ready(None)` once `deadline` has passed, arming `timer` for it if it is not yet.
fn expired<T>(
    mut timer: Pin<&mut Option<tokio::time::Sleep>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    if timer.is_none() {
        timer.set(Some(tokio::time::sleep_until(deadline.into())));
    }
    match timer.as_pin_mut() {
        Some(sleep) => sleep.poll(cx).map(|()| None),
        None => Poll::Pending,
    }
}
