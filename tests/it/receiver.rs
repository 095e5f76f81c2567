//! A real in-process HTTP listener standing in for subscribers' EventServices, shared by the
//! tests and the benchmark harness. It answers from a script (a status, a delay, a huge
//! body, silence, or a hold until released) and keeps, per delivery (`webhook-id`), its
//! first arrival. The tests' receiver ([`Receiver::start`]) also records every request in
//! full; the harness's ([`Receiver::counting`]) only counts, so that recording does not
//! slow a benchmark. A path `/<n>/…` stands for subscriber `n` ([`Receiver::subscriber_url`]),
//! so that one receiver serves many subscriptions.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::net::TcpListener;
use webhookd::domain::EVENT_PATH_SUFFIX;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A delivery's first arrival.
pub struct Arrival {
    pub at: Instant,
    /// The subscriber whose path it reached: `n` of `/<n>/…`.
    pub subscriber: Option<usize>,
    /// Its body, when the receiver keeps bodies.
    pub body: Option<Bytes>,
}

/// Each delivery (by its `webhook-id`) on its first arrival, and how many distinct
/// deliveries reached each subscriber.
#[derive(Default)]
pub struct Seen {
    pub first: HashMap<String, Arrival>,
    pub per_subscriber: HashMap<usize, usize>,
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, with an empty Connect success (or a Connect error body for non-2xx).
    Status(u16),
    /// This status and headers.
    StatusWithHeaders(u16, Vec<(&'static str, &'static str)>),
    /// Wait this long, then answer 200.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Wait until [`Receiver::release`] lets it go, then answer 200.
    Held,
    /// 200 with an endless body.
    Endless,
}

struct State {
    /// Every request, when the receiver records them.
    captured: Option<Vec<Captured>>,
    keep_bodies: bool,
    seen: Seen,
    script: VecDeque<Reply>,
    default: Reply,
    /// Requests to paths starting with this never get an answer.
    hang_prefix: Option<String>,
    /// Requests being answered now, and the most there ever were at once.
    open: usize,
    peak: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    /// What [`Reply::Held`] requests wait for.
    gate: Arc<tokio::sync::Semaphore>,
}

impl Receiver {
    /// A receiver that records every request (headers and body) and answers 200.
    pub async fn start() -> Self {
        Self::with(Some(vec![]), true, None).await.unwrap()
    }

    /// A receiver that only keeps first arrivals (with their bodies if `keep_bodies`), and
    /// never answers (nor counts) requests to paths starting with `hang_prefix`.
    pub async fn counting(keep_bodies: bool, hang_prefix: Option<String>) -> anyhow::Result<Self> {
        Self::with(None, keep_bodies, hang_prefix).await
    }

    async fn with(
        captured: Option<Vec<Captured>>,
        keep_bodies: bool,
        hang_prefix: Option<String>,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            captured,
            keep_bodies,
            seen: Seen::default(),
            script: VecDeque::new(),
            default: Reply::Status(200),
            hang_prefix,
            open: 0,
            peak: 0,
        }));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (shared, held) = (state.clone(), gate.clone());
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (shared, held) = (shared.clone(), held.clone());
            async move {
                let reply = lock(&shared).take(&uri, headers, body);
                if let Reply::Held = reply {
                    held.acquire().await.unwrap().forget();
                }
                let response = answer(reply).await;
                lock(&shared).open -= 1;
                response
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(handler));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, state, gate })
    }

    /// The callback URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://{}{EVENT_PATH_SUFFIX}", self.addr)
    }

    /// The callback URL of subscriber `n`.
    pub fn subscriber_url(&self, n: usize) -> String {
        format!("http://{}/{n}{EVENT_PATH_SUFFIX}", self.addr)
    }

    /// Answers the next requests with these replies, in order (then the default).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state).script.extend(replies);
    }

    /// Answers every unscripted request with `reply`.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.state).default = reply;
    }

    /// Lets `n` held requests be answered (see [`Reply::Held`]).
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// The most requests this receiver was answering at once.
    pub fn peak_concurrency(&self) -> usize {
        lock(&self.state).peak
    }

    /// Every request so far (a receiver made by [`Self::start`]).
    pub fn captured(&self) -> Vec<Captured> {
        lock(&self.state).captured.clone().unwrap_or_default()
    }

    /// What arrived, first arrivals per delivery.
    pub fn seen(&self) -> SeenGuard<'_> {
        SeenGuard(lock(&self.state))
    }

    /// When the first delivery arrived, if any has.
    pub fn first_arrival(&self) -> Option<Instant> {
        self.seen().first.values().map(|a| a.at).min()
    }

    /// Distinct deliveries that arrived, to any path.
    pub fn distinct(&self) -> usize {
        self.seen().first.len()
    }

    /// Distinct deliveries that reached subscribers `0..subscribers`.
    pub fn arrived(&self, subscribers: usize) -> usize {
        let seen = self.seen();
        (0..subscribers)
            .filter_map(|n| seen.per_subscriber.get(&n))
            .sum()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let what = format!("{n} requests arrive");
        crate::wait::until(&what, timeout, || async { self.captured().len() >= n })
            .await
            .unwrap();
        self.captured()
    }

    /// Waits until `n` distinct deliveries have arrived, to any path.
    pub async fn wait_distinct(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{n} distinct deliveries arrive (saw {})", self.distinct());
        crate::wait::until(&what, timeout, || async { self.distinct() >= n }).await?;
        Ok(())
    }

    /// Waits until `n` distinct deliveries have reached subscribers `0..subscribers`.
    pub async fn wait_arrived(
        &self,
        subscribers: usize,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{n} distinct deliveries reach subscribers 0..{subscribers}");
        crate::wait::until(&what, timeout, || async { self.arrived(subscribers) >= n }).await?;
        Ok(())
    }
}

impl State {
    /// Notes a request and picks its reply.
    fn take(&mut self, uri: &Uri, headers: HeaderMap, body: Bytes) -> Reply {
        self.open += 1;
        self.peak = self.peak.max(self.open);
        // A subscriber that never answers never takes a delivery either.
        let hang = self
            .hang_prefix
            .as_deref()
            .is_some_and(|p| uri.path().starts_with(p));
        if hang {
            return Reply::Hang;
        }
        // A GitHub hook's deliveries carry no webhook-id: its event and hook ids name them;
        // nor do a configuration file webhook's (Angos's): its body's leading `id` does.
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let angos_id = || {
            body.strip_prefix(br#"{"id":""#)
                .and_then(|rest| rest.get(..36))
                .map(|id| String::from_utf8_lossy(id).into_owned())
        };
        let id = match text("webhook-id") {
            Some(id) => id.to_owned(),
            None => match text("x-registry-event").and_then(|_| angos_id()) {
                Some(id) => id,
                None => format!(
                    "{}/{}",
                    text("x-github-delivery").unwrap_or_default(),
                    text("x-github-hook-id").unwrap_or_default()
                ),
            },
        };
        let subscriber = uri.path().split('/').nth(1).and_then(|n| n.parse().ok());
        if let Entry::Vacant(slot) = self.seen.first.entry(id) {
            slot.insert(Arrival {
                at: Instant::now(),
                subscriber,
                body: self.keep_bodies.then(|| body.clone()),
            });
            if let Some(n) = subscriber {
                *self.seen.per_subscriber.entry(n).or_default() += 1;
            }
        }
        if let Some(captured) = &mut self.captured {
            captured.push(Captured {
                headers,
                body,
                at: Instant::now(),
            });
        }
        let default = self.default.clone();
        self.script.pop_front().unwrap_or(default)
    }
}

/// The receiver's first arrivals, locked (see [`Receiver::seen`]).
pub struct SeenGuard<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for SeenGuard<'_> {
    type Target = Seen;
    fn deref(&self) -> &Seen {
        &self.0.seen
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn answer(reply: Reply) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match reply {
        Reply::Status(code) => status_response(code, vec![]),
        Reply::StatusWithHeaders(code, headers) => status_response(code, headers),
        Reply::Delay(pause) => {
            tokio::time::sleep(pause).await;
            status_response(200, vec![])
        }
        Reply::Held => status_response(200, vec![]),
        Reply::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        Reply::Endless => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            (
                [("content-type", "application/proto")],
                Body::from_stream(stream),
            )
                .into_response()
        }
    }
}

fn status_response(
    code: u16,
    headers: Vec<(&'static str, &'static str)>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let status = StatusCode::from_u16(code).unwrap();
    let mut response = if status.is_success() {
        ([("content-type", "application/proto")], Bytes::new()).into_response()
    } else {
        let body = format!(r#"{{"code":"unavailable","message":"test receiver answered {code}"}}"#);
        (status, [("content-type", "application/json")], body).into_response()
    };
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
