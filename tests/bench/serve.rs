//! The benchmark of `nnmnist serve` (run by scripts/bench_serve, not by `cargo test`): the
//! latency of one `POST /api/predict` with everything the page shows (both networks: digit,
//! probabilities, every layer, the saliency maps), measured from a client on the same machine
//! over keep-alive connections, one request at a time and 16 at a time.
//!
//! The server is the release binary, `nnmnist serve --port 0`, serving PyTorch's trained
//! convnet fixture and an MLP of nn.py's shape (784,30,10) trained one epoch here. Each body
//! is what the page sends: a PNG of the pad reduced to 140x140 (MNIST test images, enlarged
//! smoothly), cycling through 100 of them. After a warm-up, each request's time is from
//! writing it to reading the last byte of its answer; the server's own `Server-Timing` header
//! says where its time went (the medians of each step).
//!
//! Options: --requests N (1000), --concurrency LIST (1,16), --size PIXELS (140), --pytorch
//! (the PyTorch side too, as `serve --pytorch`).
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

struct Options {
    requests: usize,
    concurrency: Vec<usize>,
    size: u32,
    pytorch: bool,
}

fn options() -> Options {
    let mut o = Options { requests: 1000, concurrency: vec![1, 16], size: 140, pytorch: false };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{a} needs a value")));
        match a.as_str() {
            "--requests" => o.requests = value().parse().unwrap_or_else(|_| fail("--requests takes a number")),
            "--concurrency" => o.concurrency = value().split(',').map(|c| c.parse().unwrap_or_else(|_| fail("--concurrency takes numbers: 1,16"))).collect(),
            "--size" => o.size = value().parse().unwrap_or_else(|_| fail("--size takes a number of pixels")),
            "--pytorch" => o.pytorch = true,
            other => fail(&format!("unknown option {other}: --requests N, --concurrency LIST, --size PIXELS, --pytorch")),
        }
    }
    if o.requests == 0 || o.concurrency.contains(&0) {
        fail("--requests and each --concurrency must be at least 1");
    }
    o
}

fn fail(msg: &str) -> ! {
    eprintln!("bench_serve: {msg}");
    std::process::exit(2)
}

/// The server, stopped when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, o: &Options) -> Server {
    let convnet = common::root().join("tests/fixtures/convnet/trained.safetensors");
    let status = common::nnmnist().current_dir(dir).args(["mlp", "--epochs", "1", "--save", "mlp.safetensors", "--data-dir"]).arg(common::repo_data()).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("nnmnist mlp runs");
    assert!(status.success(), "training the MLP failed");
    let mut cmd: Command = common::nnmnist();
    cmd.current_dir(dir).args(["serve", "--port", "0", "--weights"]).arg(&convnet).args(["--weights", "mlp.safetensors", "--data-dir"]).arg(common::repo_data());
    if o.pytorch {
        cmd.arg("--pytorch");
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("nnmnist serve starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.expect("the server's stdout");
        if let Some(url) = line.strip_prefix("Listening on ") {
            return Server(child, url.trim_end_matches('/').to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    fail("the server stopped before listening");
}

/// The bodies: test images 0..100 enlarged to `size` x `size` (Triangle: smooth), as PNG.
fn bodies(size: u32) -> Vec<Vec<u8>> {
    let test = &common::real().test;
    (0..100)
        .map(|i| {
            let small = image::GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap();
            let big = image::imageops::resize(&small, size, size, image::imageops::FilterType::Triangle);
            let mut png = std::io::Cursor::new(Vec::new());
            big.write_to(&mut png, image::ImageFormat::Png).unwrap();
            png.into_inner()
        })
        .collect()
}

/// One request: its latency and the server's steps.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> (Duration, usize, Vec<(String, f64)>) {
    let start = Instant::now();
    let mut response = agent.post(url).header("Content-Type", "image/png").send(body).unwrap_or_else(|e| fail(&format!("POST {url}: {e}")));
    let mut answer = Vec::new();
    response.body_mut().as_reader().read_to_end(&mut answer).unwrap();
    let elapsed = start.elapsed();
    if response.status() != 200 {
        fail(&format!("POST {url} answered {}: {}", response.status(), String::from_utf8_lossy(&answer)));
    }
    let steps = response.headers().get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or("");
    let steps = steps.split(", ").filter_map(|s| s.split_once(";dur=")).map(|(n, v)| (n.to_string(), v.parse().unwrap_or(f64::NAN))).collect();
    (elapsed, answer.len(), steps)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // The nearest-rank quantile: the smallest value with at least q of them at or below it.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &o);
    let url = format!("{}/api/predict", server.1);
    let bodies = Arc::new(bodies(o.size));
    let agent = || -> ureq::Agent { ureq::Agent::config_builder().build().into() };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("nnmnist serve: POST /api/predict, a {0}x{0} PNG (about {1} bytes) -> both networks with every layer and saliency", o.size, bodies[0].len());
    println!("{} requests per run after 50 of warm-up; load average before: {}", o.requests, load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let warm = agent();
    for i in 0..50 {
        post(&warm, &url, &bodies[i % bodies.len()]);
    }
    println!("{:>11}  {:>9}  {:>9}  {:>9}  {:>10}  server steps (median ms)", "at a time", "median ms", "p99 ms", "max ms", "requests/s");
    for &c in &o.concurrency {
        let next = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new(Vec::with_capacity(o.requests)));
        let started = Instant::now();
        let threads: Vec<_> = (0..c)
            .map(|_| {
                let (next, results, bodies, url, n) = (next.clone(), results.clone(), bodies.clone(), url.clone(), o.requests);
                std::thread::spawn(move || {
                    let a = agent();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let r = post(&a, &url, &bodies[i % bodies.len()]);
                        results.lock().unwrap().push(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let wall = started.elapsed().as_secs_f64();
        let results = results.lock().unwrap();
        let mut ms: Vec<f64> = results.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let mut names: Vec<String> = Vec::new();
        for (name, _) in results.iter().flat_map(|r| &r.2) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let steps: Vec<String> = names
            .iter()
            .map(|name| {
                let mut v: Vec<f64> = results.iter().flat_map(|r| &r.2).filter(|(n, _)| n == name).map(|(_, d)| *d).collect();
                v.sort_by(f64::total_cmp);
                format!("{name} {:.2}", quantile(&v, 0.5))
            })
            .collect();
        println!("{c:>11}  {:>9.2}  {:>9.2}  {:>9.2}  {:>10.0}  {}", quantile(&ms, 0.5), quantile(&ms, 0.99), ms[ms.len() - 1], results.len() as f64 / wall, steps.join(", "));
        let bytes = results.iter().map(|r| r.1).sum::<usize>() / results.len();
        if c == o.concurrency[0] {
            println!("{:>11}  answers of {bytes} bytes on average", "");
        }
    }
    drop(server);
}
