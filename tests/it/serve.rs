//! `nnmnist serve`, end to end: the binary started on a free port (`--port 0`, the port read
//! from its `Listening on` line), its JSON API asked over HTTP. The answers are what `predict`
//! and `eval` compute (the same preprocessing, the same probabilities, to the bit); every bad
//! request gets a 4xx and a JSON error and the server goes on serving, under many requests
//! at once too; with `--pytorch` the convnet's logits are PyTorch's to the bit.
use crate::common::{self, real, root};
use nnmnist::classifier::Classifier;
use nnmnist::evaluation::argmax;
use nnmnist::weights::Weights;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The trained convnet PyTorch wrote, and the MLP fixture (784,16,12,10).
pub fn fixture_weights() -> [PathBuf; 2] {
    [root().join("tests/fixtures/convnet/trained.safetensors"), root().join("tests/fixtures/mlp/net.safetensors")]
}

/// A running `nnmnist serve`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, without the final slash.
    pub url: String,
    /// Its stdout up to the `Listening on` line.
    pub stdout: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `nnmnist serve --port 0 ARGS`, once it says it is listening (at most `patience` for
    /// that line: a server that never says it fails the test, with its output).
    pub fn start(args: &[&str], patience: Duration) -> Server {
        Server::start_in(&root(), args, patience)
    }

    /// [`Server::start`] in the directory `dir` (where relative paths in `args` are).
    pub fn start_in(dir: &std::path::Path, args: &[&str], patience: Duration) -> Server {
        let mut child = common::nnmnist()
            .current_dir(dir)
            .args(["serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nnmnist serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // stdout read on a thread, so that a silent server cannot hang the test.
        let (lines, got) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stdout = String::new();
        let deadline = std::time::Instant::now() + patience;
        let url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match got.recv_timeout(left) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                    if let Some(rest) = line.strip_prefix("Listening on ") {
                        let url = rest.strip_suffix('/').unwrap_or_else(|| panic!("the Listening line ends without '/': {line:?}"));
                        assert!(url.starts_with("http://127.0.0.1:"), "serve listens on 127.0.0.1 by default: {line:?}");
                        break url.to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("no `Listening on` line ({e}; {status:?}); stdout:\n{stdout}\nstderr:\n{}", stderr.lock().unwrap());
                }
            }
        };
        // The rest of stdout is drained by the thread (it stops when the receiver is gone).
        std::thread::spawn(move || while got.recv().is_ok() {});
        Server { child, url, stdout, stderr }
    }

    /// With the two fixture networks.
    pub fn with_fixtures(extra: &[&str]) -> Server {
        let [c, m] = fixture_weights();
        let mut args = vec!["--weights", c.to_str().unwrap(), "--weights", m.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start(&args, Duration::from_secs(120))
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A line of the server's /proc/PID/status, in KiB (`VmRSS`, `VmHWM`).
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A raw TCP connection to the server, which gives up reading after `patience`.
    fn connect(&self, patience: Duration) -> std::net::TcpStream {
        let address = self.url.strip_prefix("http://").unwrap();
        let stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(patience)).unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 4xx and 5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// (status, body as JSON) of a request; the body must be JSON whatever the status.
pub fn call(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let agent = agent();
    let response = match method {
        "GET" => agent.get(url).call(),
        "POST" => {
            let mut r = agent.post(url);
            if let Some(t) = content_type {
                r = r.header("Content-Type", t);
            }
            r.send(body)
        }
        "PUT" => agent.put(url).send(body),
        "DELETE" => agent.delete(url).call(),
        other => panic!("no method {other} here"),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let mime = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_else(|e| panic!("{method} {url}: the body: {e}"));
    assert_eq!(mime, "application/json", "{method} {url} answered {status} with {mime:?}: {text}");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}")))
}

/// Test image `index` as a 28x28 grey PNG.
pub fn test_png(index: usize) -> Vec<u8> {
    let img = image::GrayImage::from_raw(28, 28, real().test.image(index).to_vec()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The fixture networks, as `nnmnist predict` builds them.
fn classifiers() -> Vec<Box<dyn Classifier>> {
    fixture_weights().iter().map(|p| nnmnist::networks::load(&Weights::load(p).unwrap(), None, tch::Device::Cpu).unwrap()).collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap()).collect()
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| u8::try_from(x.as_u64().unwrap()).unwrap()).collect()
}

/// The answer's input is the preprocessing's (the one `predict` uses), and each network's
/// digit and probabilities are what `predict` computes from it, to the bit.
fn check_answer(answer: &Value, input: &[u8; 784], classifiers: &[Box<dyn Classifier>]) {
    assert_eq!(bytes(&answer["input"]), input);
    let models = answer["models"].as_array().unwrap();
    assert_eq!(models.iter().map(|m| m["model"].as_str().unwrap()).collect::<Vec<_>>(), ["convnet", "mlp"]);
    for (m, c) in models.iter().zip(classifiers) {
        let want = c.probabilities(input).unwrap();
        assert_eq!(numbers(&m["probabilities"]), want.to_vec(), "{}", m["model"]);
        assert_eq!(m["digit"].as_u64().unwrap() as usize, argmax(&want));
        assert_eq!(numbers(&m["saliency"]).len(), 784);
        assert_eq!(numbers(&m["logits"]).len(), 10);
        assert!(m.get("pytorch").is_none(), "no --pytorch, no parity");
    }
    let shapes = |m: &Value| m["layers"].as_array().unwrap().iter().map(|l| (l["name"].as_str().unwrap().to_string(), l["shape"].to_string(), l["values"].as_array().unwrap().len())).collect::<Vec<_>>();
    let s = |name: &str, shape: &str, n: usize| (name.to_string(), shape.to_string(), n);
    assert_eq!(shapes(&models[0]), [s("model.1", "[8,28,28]", 6272), s("model.2", "[8,14,14]", 1568), s("model.4", "[16,12,12]", 2304), s("model.5", "[16,6,6]", 576), s("model.8", "[100]", 100), s("model.9", "[10]", 10)]);
    assert_eq!(shapes(&models[1]), [s("1", "[16]", 16), s("3", "[12]", 12), s("5", "[10]", 10)]);
}

#[test]
fn predict_answers_with_the_preprocessing_and_probabilities_of_predict() {
    let server = Server::with_fixtures(&[]);
    let classifiers = classifiers();
    for index in [0, 1, 8] {
        let png = test_png(index);
        let (status, answer) = call("POST", &format!("{}/api/predict", server.url), Some("image/png"), &png);
        assert_eq!(status, 200, "{answer}");
        let input = nnmnist::digit::decode(&png, "test").unwrap();
        check_answer(&answer, &input.pixels, &classifiers);
        assert_eq!(answer["preprocessing"]["width"], 28);
        assert_eq!(answer["preprocessing"]["polarity"], input.polarity.name());
        // A 28x28 MNIST digit comes out as itself or nearly, and reads as eval reads it.
        let eval_digit = argmax(&classifiers[0].probabilities(real().test.image(index)).unwrap());
        assert_eq!(answer["models"][0]["digit"].as_u64().unwrap() as usize, eval_digit, "test image {index}");
    }
    // The same image as JSON pixels: taken as it is.
    let pixels: [u8; 784] = *real().test.image(3);
    let body = serde_json::to_vec(&serde_json::json!({ "pixels": pixels.to_vec() })).unwrap();
    let (status, answer) = call("POST", &format!("{}/api/predict", server.url), Some("application/json"), &body);
    assert_eq!(status, 200, "{answer}");
    check_answer(&answer, &pixels, &classifiers);
    assert!(answer["preprocessing"].is_null());

    let (status, image) = call("GET", &format!("{}/api/mnist/9999", server.url), None, b"");
    assert_eq!(status, 200);
    assert_eq!((image["index"].as_u64(), image["label"].as_u64()), (Some(9999), Some(real().test.labels[9999] as u64)));
    assert_eq!(bytes(&image["pixels"]), real().test.image(9999));

    let (status, about) = call("GET", &format!("{}/api/models", server.url), None, b"");
    assert_eq!(status, 200);
    assert_eq!(about["test_images"], 10000);
    assert_eq!(about["max_body_bytes"], 16 << 20);
    assert!(about["pytorch"].is_null());
    let models = about["models"].as_array().unwrap();
    assert_eq!(models[0]["source"], fixture_weights()[0].display().to_string());
    let incoming = &models[1]["incoming"];
    assert_eq!(incoming["shape"].to_string(), "[16,28,28]");
    let net = nnmnist::mlp::network_of(&Weights::load(&fixture_weights()[1]).unwrap()).unwrap();
    // float32, printed as the shortest text that reads back as the same float32
    let got: Vec<f32> = numbers(&incoming["values"]).iter().map(|&v| v as f32).collect();
    let want: Vec<f32> = net.weights[0].iter().map(|&w| w as f32).collect();
    assert!(got == want, "the incoming weights are not the MLP's 0.weight");
    assert!(models[0].get("incoming").is_none());
}

/// Each bad request: its status and a piece of its message. After each, the server still
/// answers a good request.
#[test]
fn bad_requests_get_a_json_error_and_the_server_keeps_serving() {
    let server = Server::with_fixtures(&[]);
    let predict = format!("{}/api/predict", server.url);
    let too_large = vec![0u8; (16 << 20) + 1];
    let long = serde_json::to_vec(&serde_json::json!({ "pixels": vec![0; 785] })).unwrap();
    let wide_pixels = [vec![0; 783], vec![256]].concat();
    let wide = serde_json::to_vec(&serde_json::json!({ "pixels": wide_pixels })).unwrap();
    // (method, URL, Content-Type, body, the status expected, a piece of its error)
    type Case<'a> = (&'a str, String, Option<&'a str>, &'a [u8], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", predict.clone(), Some("image/png"), b"", 400, "the body is empty"),
        ("POST", predict.clone(), Some("image/png"), b"GIF89a not what it says", 400, "cannot read the image posted"),
        ("POST", predict.clone(), None, b"\x89PNG\r\n\x1a\n truncated", 400, "cannot read the image posted"),
        ("POST", predict.clone(), Some("image/png"), &too_large, 413, "larger than 16777216 bytes (16 MiB)"),
        ("POST", predict.clone(), Some("application/json"), b"{\"pixels\": [1, 2", 400, "malformed JSON"),
        ("POST", predict.clone(), Some("application/json"), b"[]", 400, "malformed JSON"),
        ("POST", predict.clone(), Some("application/json"), b"{\"pixels\": [], \"more\": 1}", 400, "unknown field `more`"),
        ("POST", predict.clone(), Some("application/json"), &long, 400, "holds 785 numbers"),
        ("POST", predict.clone(), Some("application/json"), &wide, 400, "malformed JSON: invalid value: integer `256`"),
        ("GET", predict.clone(), None, b"", 405, "GET is not allowed on /api/predict"),
        ("PUT", format!("{}/api/models", server.url), None, b"x", 405, "PUT is not allowed on /api/models"),
        ("DELETE", format!("{}/", server.url), None, b"", 405, "DELETE is not allowed on /"),
        ("GET", format!("{}/api/mnist/10000", server.url), None, b"", 404, "the test set has 10000 images (0 to 9999)"),
        ("GET", format!("{}/api/mnist/-1", server.url), None, b"", 400, "\"-1\" is not a test image number"),
        ("GET", format!("{}/api/mnist/99999999999999999999999", server.url), None, b"", 404, "test image 99999999999999999999999 does not exist"),
        ("GET", format!("{}/api/mnist/+5", server.url), None, b"", 400, "\"+5\" is not a test image number"),
        ("GET", format!("{}/nothing", server.url), None, b"", 404, "no such page: /nothing"),
        ("GET", format!("{}/index.html", server.url), None, b"", 404, "no such page"),
        ("GET", format!("{}/app.js/", server.url), None, b"", 404, "no such page"),
        ("GET", format!("{}/src/serve/page/app.js", server.url), None, b"", 404, "no such page"),
        ("GET", format!("{}/..%2f..%2fCargo.toml", server.url), None, b"", 404, "no such page"),
        ("GET", format!("{}/%2e%2e/%2e%2e/Cargo.toml", server.url), None, b"", 404, "no such page"),
        ("GET", format!("{}/api/mnist/0/..%2f..%2f..%2fetc%2fpasswd", server.url), None, b"", 404, "no such page"),
    ];
    let good = test_png(0);
    for (method, url, content_type, body, status, message) in cases {
        let (got, answer) = call(method, &url, content_type, body);
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{method} {url}: no error message: {answer}"));
        assert_eq!((got, error.contains(message)), (status, true), "{method} {url} answered {got} {error:?}; expected {status} with {message:?}");
        assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
        let (ok, _) = call("POST", &predict, Some("image/png"), &good);
        assert_eq!(ok, 200, "after {method} {url}");
    }
    assert!(server.stderr().is_empty() || !server.stderr().contains("panicked"), "{}", server.stderr());
}

/// The page's files, each with the policy that keeps it to this server; nothing else.
#[test]
fn the_page_is_served_from_the_binary_and_loads_nothing_from_elsewhere() {
    let server = Server::with_fixtures(&[]);
    for (path, mime) in [("/", "text/html"), ("/style.css", "text/css"), ("/app.js", "text/javascript"), ("/draw.js", "text/javascript"), ("/view.js", "text/javascript")] {
        let mut response = agent().get(&format!("{}{path}", server.url)).call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(header("content-type").starts_with(mime), "{path}: {}", header("content-type"));
        assert!(header("content-security-policy").starts_with("default-src 'self'"), "{path}");
        let text = response.body_mut().read_to_string().unwrap();
        let file = if path == "/" { "index.html" } else { &path[1..] };
        assert_eq!(text, std::fs::read_to_string(root().join("src/serve/page").join(file)).unwrap(), "{path}");
        for host in ["http://", "https://", "//cdn", "@import"] {
            assert!(!text.contains(host), "{path} names another host ({host})");
        }
    }
}

/// 16 clients at once, 8 requests each, good and bad mixed: every good answer is the same,
/// every bad one a 400, and the server answers afterwards.
#[test]
fn many_requests_at_once_are_all_answered() {
    let server = Server::with_fixtures(&[]);
    let predict = format!("{}/api/predict", server.url);
    let png = test_png(4);
    let (_, reference) = call("POST", &predict, Some("image/png"), &png);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (predict, png, reference) = (predict.clone(), png.clone(), reference.clone());
            std::thread::spawn(move || {
                for i in 0..8 {
                    if (t + i) % 4 == 0 {
                        let (status, answer) = call("POST", &predict, Some("image/png"), b"not an image");
                        assert_eq!(status, 400, "{answer}");
                    } else {
                        let (status, answer) = call("POST", &predict, Some("image/png"), &png);
                        assert_eq!(status, 200);
                        assert_eq!(answer, reference);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
    assert_eq!(call("GET", &format!("{}/api/models", server.url), None, b"").0, 200);
}

/// A client that sends nothing, or half a body, holds no connection for ever: an idle
/// connection is closed once the headers' time is up, a body that stops coming gets a 408
/// and a JSON error once the body's time is up; the server answers others meanwhile.
#[test]
fn clients_that_send_nothing_are_timed_out() {
    use std::io::Write;
    let server = Server::with_fixtures(&[]);
    // Well past both limits: a server that never closes fails the read, not the suite.
    let patience = nnmnist::serve::connections::HEADER_TIMEOUT + nnmnist::serve::api::BODY_TIMEOUT * 3;
    let mut idle = server.connect(patience);
    let mut half = server.connect(patience);
    half.write_all(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n\x89PNG").unwrap();
    assert_eq!(call("GET", &format!("{}/api/models", server.url), None, b"").0, 200);
    let mut byte = [0u8; 1];
    assert_eq!(idle.read(&mut byte).expect("the idle connection is closed, not left open"), 0);
    let mut answer = String::new();
    half.read_to_string(&mut answer).expect("the half-sent body is answered and its connection closed");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let error: Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["error"], format!("the body did not arrive within {} s", nnmnist::serve::api::BODY_TIMEOUT.as_secs()));
}

/// 40 clients each sending a body of the largest size and holding back its last byte: the
/// server reads at most its budget of bodies at once (the others wait their turn, unread),
/// so its memory grows by that budget, not by 40 bodies (640 MiB), and it answers other
/// routes meanwhile.
#[test]
fn bodies_read_at_once_stay_within_their_budget() {
    use std::io::Write;
    let server = Server::with_fixtures(&[]);
    let predict = format!("{}/api/predict", server.url);
    assert_eq!(call("POST", &predict, Some("image/png"), &test_png(0)).0, 200);
    let before = server.memory("VmHWM");
    let size = nnmnist::serve::api::MAX_BODY;
    // Each client writes until its body is in or the server has stopped reading it (no
    // progress for the write timeout); the connections stay open until the end.
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let mut stream = server.connect(Duration::from_secs(60));
            std::thread::spawn(move || {
                stream.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let head = format!("POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
                stream.write_all(head.as_bytes()).unwrap();
                let chunk = vec![0u8; 1 << 16];
                let mut sent = 0;
                while sent < size - 1 {
                    match stream.write(&chunk[..chunk.len().min(size - 1 - sent)]) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                (stream, sent)
            })
        })
        .collect();
    let clients: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let whole = clients.iter().filter(|(_, sent)| *sent == size - 1).count();
    let grown = server.memory("VmHWM").saturating_sub(before);
    eprintln!("{whole} of 40 bodies sent whole; the server's peak grew by {grown} KiB from {before} KiB");
    let budget = (nnmnist::serve::api::BODY_BUDGET >> 10) as u64;
    assert!(grown < 2 * budget, "the server's peak grew by {grown} KiB, more than twice its body budget of {budget} KiB");
    assert!(whole <= nnmnist::serve::api::BODY_BUDGET / size, "{whole} bodies were read at once");
    assert_eq!(call("GET", &format!("{}/api/models", server.url), None, b"").0, 200);
    // Their turns come to nothing once they are gone (at the latest a 503 after the time a
    // turn may take): the next body is read.
    drop(clients);
    assert_eq!(call("POST", &predict, Some("image/png"), &test_png(0)).0, 200);
}

/// A client that sends a request's headers and then nothing holds none of the body budget:
/// with four such clients each declaring a body of the largest size (together the whole
/// budget), and each request's body already asked for (hyper's `100 Continue`), another's
/// request is answered at once, while theirs are still waiting.
#[test]
fn clients_that_send_only_headers_hold_no_budget() {
    use std::io::Write;
    let server = Server::with_fixtures(&[]);
    let size = nnmnist::serve::api::MAX_BODY;
    let holders: Vec<std::net::TcpStream> = (0..nnmnist::serve::api::BODY_BUDGET / size)
        .map(|_| {
            let mut c = server.connect(Duration::from_secs(60));
            c.write_all(format!("POST /api/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {size}\r\n\r\n").as_bytes()).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(c.read(&mut byte).expect("the server asks for the body"), 1, "closed after {:?}", String::from_utf8_lossy(&head));
                head.push(byte[0]);
            }
            assert_eq!(String::from_utf8_lossy(&head), "HTTP/1.1 100 Continue\r\n\r\n");
            c
        })
        .collect();
    let (status, answer) = call("POST", &format!("{}/api/predict", server.url), Some("image/png"), &test_png(0));
    assert_eq!(status, 200, "{answer}");
    for mut c in holders {
        c.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let got = c.read(&mut byte);
        assert!(matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "a client that sent only headers was answered first ({got:?})");
    }
}

/// `--pytorch`: the same weights in PyTorch, on the same inputs: the convnet's logits equal
/// to the bit on the CPU, the MLP's z within 1e-12 (float64 sums in another order), the same
/// digits.
#[test]
fn pytorch_runs_the_same_weights_beside() {
    let server = Server::with_fixtures(&["--pytorch"]);
    let predict = format!("{}/api/predict", server.url);
    let (_, about) = call("GET", &format!("{}/api/models", server.url), None, b"");
    assert!(about["pytorch"].as_str().unwrap().contains("to the bit"));
    let mut mlp_worst = 0f64;
    for index in 0..20 {
        let (status, answer) = call("POST", &predict, Some("image/png"), &test_png(index));
        assert_eq!(status, 200, "{answer}");
        for m in answer["models"].as_array().unwrap() {
            let parity = &m["pytorch"];
            assert_eq!(parity["digit"], m["digit"], "test image {index}, {}", m["model"]);
            let diff = parity["max_abs_diff"].as_f64().unwrap();
            match m["model"].as_str().unwrap() {
                "convnet" => assert_eq!(diff, 0.0, "test image {index}: the convnet's logits differ from PyTorch's"),
                _ => mlp_worst = mlp_worst.max(diff),
            }
        }
    }
    println!("MLP: largest |z difference| with PyTorch over 20 images: {mlp_worst:e}");
    assert!(mlp_worst < 1e-12, "{mlp_worst}");
}

/// Without `--weights`: both networks trained one epoch first (their usual console, the
/// seed on stderr), then served, saying so.
#[test]
fn without_weights_it_trains_both_networks_first() {
    let server = Server::start(&["--seed", "3"], Duration::from_secs(600));
    assert!(server.stdout.contains("Epoch 1\n"), "the convnet's transcript: {}", server.stdout);
    assert!(server.stdout.contains("Epoch 0: "), "the MLP's transcript: {}", server.stdout);
    let stderr = server.stderr();
    assert!(stderr.contains("no --weights: training each network for 1 epoch first (seed 3)"), "{stderr}");
    let (_, about) = call("GET", &format!("{}/api/models", server.url), None, b"");
    let sources: Vec<&str> = about["models"].as_array().unwrap().iter().map(|m| m["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["trained by serve: nnmnist convnet --device cpu --epochs 1 --seed 3", "trained by serve: nnmnist mlp --epochs 1 --seed 3"]);
    let (status, answer) = call("POST", &format!("{}/api/predict", server.url), Some("image/png"), &test_png(0));
    assert_eq!(status, 200);
    assert_eq!(answer["models"][0]["digit"], 7, "one epoch reads test image 0, a 7");
}

/// What cannot be served is refused before listening, naming what is wrong.
#[test]
fn bad_weights_and_addresses_are_refused() {
    let run = |args: &[&str]| {
        let out = common::nnmnist().args(["serve", "--port", "0"]).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let readme = root().join("README.md");
    let (code, stdout, stderr) = run(&["--weights", readme.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("README.md"), "{stderr}");
    assert!(!stdout.contains("Listening"), "{stdout}");
    let [convnet, _] = fixture_weights();
    let (code, _, stderr) = run(&["--weights", convnet.to_str().unwrap(), "--seed", "1"]);
    assert_eq!(code, Some(2), "clap refuses --seed with --weights: {stderr}");
    let (code, _, stderr) = run(&["--weights", convnet.to_str().unwrap(), "--host", "no-such-host.invalid"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot listen on no-such-host.invalid:0"), "{stderr}");
    // A port in use: named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = common::nnmnist().args(["serve", "--port", &port, "--weights", convnet.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}
