//! The HTTP side of `nnmnist serve`: the page's files and the JSON API it uses (scripts can
//! too; docs/usage.md documents every endpoint).
//!
//! - `GET /`, `/style.css`, `/app.js`, `/draw.js`, `/view.js`: the embedded page;
//! - `GET /api/models`: the networks served, their layers, the MLP's incoming weights;
//! - `POST /api/predict`: an image (PNG, JPEG, PNM), or `{"pixels": [784 numbers]}` as JSON,
//!   to every network's reading of it;
//! - `GET /api/mnist/{n}`: MNIST test image n, for "load test image N".
//!
//! A refused request gets a 4xx status and `{"error": ...}` ([`ApiError`]); any other path is
//! 404, any other method 405. Bodies are read up to [`MAX_BODY`] bytes each, at most
//! [`BODY_BUDGET`] bytes of them held at once (counted as they arrive: a piece past it waits,
//! a 503 when the time is up), each within [`BODY_TIMEOUT`] (else a 408). The networks run
//! on tokio's blocking threads, at most as many at once as the machine has cores.
use super::error::ApiError;
use super::networks::{Reading, Served};
use super::pytorch::{parity, PyTorch};
use crate::data::{Split, PIXELS};
use anyhow::Result;
use axum::body::Body;
use http_body_util::BodyExt;
use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The largest body `POST /api/predict` reads: 16 MiB (a phone's photo fits; the image's
/// size in pixels is checked again, from its header, before it is decoded).
pub const MAX_BODY: usize = 16 << 20;

/// The most body bytes read and held at once, over every request: 64 MiB, four bodies of
/// the largest size. Each piece of a body takes its bytes from it once it has arrived.
pub const BODY_BUDGET: usize = 4 * MAX_BODY;

/// How long a body may take to arrive, waits for the budget included (16 MiB at 1 MB/s).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// What every request handler shares.
pub struct App {
    pub networks: Vec<Served>,
    pub pytorch: Option<PyTorch>,
    /// MNIST's test set, for `GET /api/mnist/{n}`.
    pub test: Split,
    /// `GET /api/models`'s answer, made once.
    models: Vec<u8>,
    /// Requests computing at once (the networks, the PNG decoding) at most: the cores.
    busy: Semaphore,
    /// The bytes of the bodies being read and held, out of [`BODY_BUDGET`].
    reading: Semaphore,
}

/// `GET /api/models`.
#[derive(Serialize)]
struct Models {
    models: Vec<super::networks::About>,
    /// With `--pytorch`: what each network's parity line compares.
    pytorch: Option<&'static str>,
    test_images: usize,
    max_body_bytes: usize,
}

/// `POST /api/predict`'s answer.
#[derive(Serialize)]
struct Prediction {
    /// The 28x28 input every network read (row-major, 0 background, 255 ink).
    input: Vec<u8>,
    /// What the preprocessing found, for an image (null for `{"pixels": ...}`).
    preprocessing: Option<serde_json::Value>,
    models: Vec<Reading>,
}

/// `POST /api/predict` with a JSON body: an input already in MNIST's form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pixels {
    pixels: Vec<u8>,
}

/// `GET /api/mnist/{n}`'s answer.
#[derive(Serialize)]
struct TestImage {
    index: usize,
    label: u8,
    pixels: Vec<u8>,
}

impl App {
    pub fn new(networks: Vec<Served>, pytorch: Option<PyTorch>, test: Split) -> Result<App> {
        let models = Models {
            models: networks.iter().map(Served::about).collect(),
            pytorch: pytorch.as_ref().map(|_| super::pytorch::COMPARED),
            test_images: test.len(),
            max_body_bytes: MAX_BODY,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(App { models: serde_json::to_vec(&models)?, networks, pytorch, test, busy: Semaphore::new(cores), reading: Semaphore::new(BODY_BUDGET) })
    }
}

/// Every route; anything else is a JSON 404 (or 405 for a known path and another method).
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for asset in &super::assets::ASSETS {
        router = router.route(asset.path, get(move || async move { asset.response() }));
    }
    router
        .route("/api/models", get(models))
        .route("/api/predict", post(predict))
        .route("/api/mnist/{n}", get(test_image))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such page: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// A JSON answer that no cache keeps.
fn json(bytes: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/json"), (CACHE_CONTROL, "no-store")], bytes).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Response {
    json(app.models.clone())
}

async fn test_image(State(app): State<Arc<App>>, Path(n): Path<String>) -> Result<Response, ApiError> {
    let last = app.test.len().saturating_sub(1);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad(format!("{n:?} is not a test image number: use 0 to {last}")));
    }
    // A number of digits only, past usize too: no such image.
    let index = n.parse::<usize>().unwrap_or(usize::MAX);
    if index >= app.test.len() {
        return Err(ApiError::not_found(format!("test image {n} does not exist: the test set has {} images (0 to {last})", app.test.len())));
    }
    let image = TestImage { index, label: app.test.labels[index], pixels: app.test.image(index).to_vec() };
    Ok(json(serde_json::to_vec(&image).map_err(internal)?))
}

async fn predict(State(app): State<Arc<App>>, request: Request) -> Result<Response, ApiError> {
    // A body over the limit is read up to it before the 413 (within the budget), not refused
    // from its Content-Length: a client that sends its whole body before it reads the answer
    // would find the connection closed under it, and never see why.
    let (parts, body) = request.into_parts();
    let (body, _reading) = read_within_budget(&app, body).await?;
    if body.is_empty() {
        return Err(ApiError::bad("the body is empty: send an image (PNG, JPEG, PNM) or JSON {\"pixels\": [784 numbers 0-255]}"));
    }
    let is_json = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let _permit = app.busy.acquire().await.map_err(internal)?;
    let worker = app.clone();
    let (answer, timing) = tokio::task::spawn_blocking(move || read_body(&worker, &body, is_json)).await.map_err(internal)??;
    let mut response = json(answer);
    if let Ok(value) = HeaderValue::from_str(&timing.header()) {
        response.headers_mut().insert("server-timing", value);
    }
    Ok(response)
}

/// 413, for a body over [`MAX_BODY`].
fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY} bytes ({} MiB), the limit of POST /api/predict", MAX_BODY >> 20))
}

/// A request's body, read as it arrives: each piece takes its bytes from [`BODY_BUDGET`]
/// once it has come, so a client that sends nothing holds nothing; the whole within
/// [`BODY_TIMEOUT`]: a 408 where the client was slow, a 503 where the budget was (other
/// bodies held it). The permit holds the body's buffer (its capacity) until it is dropped.
async fn read_within_budget(app: &App, mut body: Body) -> Result<(Vec<u8>, Option<SemaphorePermit<'_>>), ApiError> {
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    let mut bytes = Vec::new();
    let mut held: Option<SemaphorePermit> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()))),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::bad(format!("cannot read the body: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry no body bytes.
        let Ok(data) = frame.into_data() else { continue };
        let needed = bytes.len() + data.len();
        if needed > MAX_BODY {
            return Err(too_large());
        }
        // The budget counts what is allocated: the buffer grows (doubling, up to the limit)
        // only by what the budget grants it.
        let grow = if needed > bytes.capacity() { needed.max(2 * bytes.capacity()).min(MAX_BODY) - bytes.capacity() } else { 0 };
        let permit = match tokio::time::timeout_at(deadline, app.reading.acquire_many(grow as u32)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("busy: other requests' bodies ({} MiB at most at once) held the server for {} s; try again", BODY_BUDGET >> 20, BODY_TIMEOUT.as_secs()),
                ))
            }
            Ok(permit) => permit.map_err(internal)?,
        };
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        bytes.reserve_exact(bytes.capacity() + grow - bytes.len());
        bytes.extend_from_slice(&data);
    }
    Ok((bytes, held))
}

/// Where a request's time went, as a `Server-Timing` header (which browsers' developer
/// tools show, and scripts/bench_serve reports): each step's milliseconds.
#[derive(Default)]
struct Timing(Vec<(&'static str, f64)>);

impl Timing {
    /// Runs `step`, timing it as `name`.
    fn time<T>(&mut self, name: &'static str, step: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = step();
        self.0.push((name, start.elapsed().as_secs_f64() * 1e3));
        out
    }

    fn header(&self) -> String {
        self.0.iter().map(|(name, ms)| format!("{name};dur={ms:.3}")).collect::<Vec<_>>().join(", ")
    }
}

/// The body to the networks' readings, as JSON bytes, and where the time went.
fn read_body(app: &App, body: &[u8], is_json: bool) -> Result<(Vec<u8>, Timing), ApiError> {
    let mut timing = Timing::default();
    let (input, preprocessing): ([u8; PIXELS], _) = if is_json {
        let given: Pixels = serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON: {e}; expected {{\"pixels\": [784 numbers 0-255]}}")))?;
        let count = given.pixels.len();
        let pixels = given.pixels.try_into().map_err(|_| ApiError::bad(format!("\"pixels\" holds {count} numbers; a 28x28 input has {PIXELS}")))?;
        (pixels, None)
    } else {
        let digit = timing.time("preprocess", || crate::digit::decode(body, "the image posted")).map_err(|e| ApiError::bad(format!("{e:#}")))?;
        let found = super::preprocessing::describe(&digit);
        (digit.pixels, Some(found))
    };
    let mut models = app.networks.iter().map(|n| timing.time(n.model, || n.read(&input))).collect::<Result<Vec<_>>>().map_err(internal)?;
    if let Some(pytorch) = &app.pytorch {
        let theirs = timing.time("pytorch", || pytorch.logits(&input)).map_err(internal)?;
        for (reading, theirs) in models.iter_mut().zip(&theirs) {
            reading.pytorch = Some(parity(theirs, &reading.logits));
        }
    }
    let answer = timing.time("json", || serde_json::to_vec(&Prediction { input: input.to_vec(), preprocessing, models })).map_err(internal)?;
    Ok((answer, timing))
}

/// 500, for what is the server's fault, not the request's.
fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}
