//! A real in-process HTTP listener standing in for a subscriber's EventService: it records
//! every request and answers from a script (a status, a delay, a huge body, or silence).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;

use crate::helpers::EVENT_PATH;

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
    captured: Vec<Captured>,
    script: VecDeque<Reply>,
    default: Reply,
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
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            captured: vec![],
            script: VecDeque::new(),
            default: Reply::Status(200),
            open: 0,
            peak: 0,
        }));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (shared, held) = (state.clone(), gate.clone());
        let app = axum::Router::new().route(
            EVENT_PATH,
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (shared, held) = (shared.clone(), held.clone());
                async move {
                    let reply = {
                        let mut state = shared.lock().unwrap();
                        state.captured.push(Captured {
                            headers,
                            body,
                            at: Instant::now(),
                        });
                        state.open += 1;
                        state.peak = state.peak.max(state.open);
                        let default = state.default.clone();
                        state.script.pop_front().unwrap_or(default)
                    };
                    if let Reply::Held = reply {
                        held.acquire().await.unwrap().forget();
                    }
                    let response = answer(reply).await;
                    shared.lock().unwrap().open -= 1;
                    response
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state, gate }
    }

    /// Lets `n` held requests be answered (see [`Reply::Held`]).
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// The most requests this receiver was answering at once.
    pub fn peak_concurrency(&self) -> usize {
        self.state.lock().unwrap().peak
    }

    /// The callback URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://{}{EVENT_PATH}", self.addr)
    }

    /// Answers the next requests with these replies, in order (then 200s).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answers every unscripted request with `reply`.
    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = reply;
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.state.lock().unwrap().captured.clone()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let captured = self.captured();
            if captured.len() >= n {
                return captured;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests arrived within {timeout:?}",
                captured.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
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
