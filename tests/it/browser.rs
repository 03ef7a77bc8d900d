//! `nnmnist serve`'s page in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver, with the fantoccini client), against `nnmnist serve --port 0
//! --pytorch`. It loads a test image, then draws a digit with real pointer events (strokes
//! traced row by row from an MNIST test image), waits for the page to show the answer, and
//! checks that:
//! - the digits and the ten probabilities shown are `nnmnist predict`'s on the PNG the page
//!   sent (read back from the page's "The image sent" link), to the bit;
//! - the 28x28 preview is `predict --save-input`'s input, pixel for pixel;
//! - the preview, the saliency maps and every layer's pictures are drawn (not blank);
//! - PyTorch's side agrees (the convnet's logits to the bit);
//! - the browser's console has no error;
//!
//! and saves a screenshot: target/browser/serve.png, or the path in NNMNIST_SCREENSHOT (the
//! README's docs/serve.png is made with NNMNIST_SCREENSHOT=docs/serve.png).
//!
//! It needs `chromium` and `chromedriver` on PATH (Debian: `apt-get install chromium
//! chromium-driver`); nothing here downloads a browser. Ignored by default so that `cargo
//! test` passes without them; scripts/test runs it when both are installed, and always when
//! NNMNIST_REQUIRE_BROWSER=1 (as .ci/run sets, after installing them); run by hand with
//! `cargo test --release --test it browser:: -- --ignored`. Asked to run without a browser,
//! it fails and says what to install: a test that could not run has not passed.
use crate::common::{self, real, root};
use crate::serve::Server;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use image::GenericImageView;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const INSTALL: &str = "apt-get install chromium chromium-driver";
/// Written to the console by the test itself: the console's log must hold it, or the check
/// that it holds no error would check nothing.
const MARKER: &str = "nnmnist browser test: the console is read";

/// The MNIST test image whose strokes are drawn.
const TRACED: usize = 30;
/// The test image loaded with "Load".
const LOADED: usize = 8;
/// How long the page may take to answer before the test fails (a guard, not a pause).
const PATIENCE: Duration = Duration::from_secs(120);

/// `name` found on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// chromedriver, on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &Path) -> Driver {
        let mut child = common::command(path).arg("--port=0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("chromedriver starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        for line in out.lines() {
            let line = line.expect("chromedriver's stdout");
            seen.push_str(&line);
            seen.push('\n');
            if let Some(port) = line.strip_prefix("ChromeDriver was started successfully on port ").and_then(|p| p.strip_suffix('.')) {
                return Driver { child, url: format!("http://127.0.0.1:{port}") };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not say its port:\n{seen}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's log of the browser's console (`goog:loggingPrefs`), which WebDriver itself
/// does not cover: `POST /session/{id}/se/log {"type": "browser"}`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

#[test]
#[ignore = "drives headless Chromium: needs chromium and chromedriver (apt-get install chromium chromium-driver); scripts/test runs it when they are installed"]
fn the_page_draws_predicts_and_shows_what_predict_computes() {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver")) else {
        let required = if std::env::var_os("NNMNIST_REQUIRE_BROWSER").is_some_and(|v| v == "1") { " (NNMNIST_REQUIRE_BROWSER=1)" } else { "" };
        panic!("this test needs chromium and chromedriver on PATH{required}: {INSTALL}");
    };
    // Small weights, made once here in a directory of the test's own (the page names them as
    // given): PyTorch's trained convnet fixture, and an MLP of nn.py's shape after one epoch
    // (a fraction of a second).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("tests/fixtures/convnet/trained.safetensors"), dir.path().join("convnet.safetensors")).unwrap();
    let out = common::nnmnist().current_dir(dir.path()).args(["mlp", "--epochs", "1", "--save", "mlp.safetensors", "--data-dir"]).arg(common::repo_data()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weights = ["convnet.safetensors", "mlp.safetensors"];
    let server = Server::start_in(dir.path(), &["--weights", weights[0], "--weights", weights[1], "--pytorch", "--data-dir", common::repo_data().to_str().unwrap()], PATIENCE);
    let driver = Driver::start(&chromedriver);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let screenshot = std::env::var_os("NNMNIST_SCREENSHOT").map(PathBuf::from).unwrap_or_else(|| root().join("target/browser/serve.png"));
    runtime.block_on(async {
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                // --no-sandbox: Chromium refuses to start as root with its sandbox (CI runs as root).
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200", "--force-device-scale-factor=1"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = caps.as_object().unwrap().clone();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps).connect(&driver.url).await.expect("a WebDriver session with headless Chromium");
        let result = drive(&client, &server, &weights, dir.path(), &screenshot).await;
        let log = client.issue_cmd(BrowserLog).await;
        let _ = client.close().await;
        result.unwrap();
        let log = log.expect("the browser's console log");
        let severe: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["level"] == "SEVERE").collect();
        let (marker, errors): (Vec<&Value>, Vec<&Value>) = severe.into_iter().partition(|e| e["message"].as_str().is_some_and(|m| m.contains(MARKER)));
        assert_eq!(marker.len(), 1, "the console's log does not hold the test's own message: {log:#}");
        assert!(errors.is_empty(), "the browser's console has errors: {errors:#?}");
    });
    println!("screenshot: {}", screenshot.display());
}

/// Waits until the page shows the answer to its last request.
async fn settled(client: &Client) -> Result<(), fantoccini::error::CmdError> {
    client.wait().at_most(PATIENCE).for_element(Locator::Css("body[data-state=idle]")).await?;
    Ok(())
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn drive(client: &Client, server: &Server, weights: &[&str; 2], dir: &Path, screenshot: &Path) -> Result<(), Box<dyn std::error::Error>> {
    client.goto(&format!("{}/", server.url)).await?;
    settled(client).await?;
    js(client, &format!("console.error('{MARKER}')")).await;
    assert_eq!(js(client, "return document.querySelectorAll('section.model').length").await, 2);

    // "Load" test image LOADED: its own 28x28, taken as it is.
    let index = client.find(Locator::Id("index")).await?;
    index.clear().await?;
    index.send_keys(&LOADED.to_string()).await?;
    client.find(Locator::Css("#load button")).await?.click().await?;
    client.wait().at_most(PATIENCE).for_element(Locator::Css("body[data-shown='1'][data-state=idle]")).await?;
    assert_eq!(seen(client).await, real().test.image(LOADED), "the preview of a loaded test image is the image");
    let source = client.find(Locator::Id("source")).await?.text().await?;
    assert_eq!(source, format!("MNIST test image {LOADED}, label {}", real().test.labels[LOADED]));
    client.find(Locator::Id("clear")).await?.click().await?;

    // Draw test image TRACED with the mouse: each row's runs of ink as one stroke.
    let pad = client.find(Locator::Id("pad")).await?;
    let (x, y, w, h) = pad.rectangle().await?;
    let image = real().test.image(TRACED);
    let mut mouse = MouseActions::new("mouse".into());
    let at = |r: usize, c: f64| (x + (c + 0.5) * w / 28.0, y + (r as f64 + 0.5) * h / 28.0);
    let mut strokes = 0;
    for r in 0..28 {
        let mut c = 0;
        while c < 28 {
            if image[r * 28 + c] < 128 {
                c += 1;
                continue;
            }
            let start = c;
            while c < 28 && image[r * 28 + c] >= 128 {
                c += 1;
            }
            let (sx, sy) = at(r, start as f64);
            mouse = mouse.then(PointerAction::MoveTo { duration: None, x: sx, y: sy }).then(PointerAction::Down { button: MOUSE_BUTTON_LEFT });
            for k in start + 1..c {
                let (px, py) = at(r, k as f64);
                mouse = mouse.then(PointerAction::MoveTo { duration: Some(Duration::from_millis(8)), x: px, y: py });
            }
            mouse = mouse.then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
            strokes += 1;
        }
    }
    assert!(strokes > 10, "test image {TRACED} gave {strokes} strokes");
    let before: u64 = js(client, "return Number(document.body.dataset.shown)").await.as_u64().unwrap();
    client.perform_actions(mouse).await?;
    settled(client).await?;
    let after = js(client, "return Number(document.body.dataset.shown)").await.as_u64().unwrap();
    assert!(after > before, "the page showed no answer to the drawing");
    assert_eq!(js(client, "return document.getElementById('status').classList.contains('error')").await, false, "{}", client.find(Locator::Id("status")).await?.text().await?);

    // The PNG the page sent for what it shows, which is what the pad holds now, reduced to
    // 140x140 as the page's Pad.png(140) does.
    let sent = js_bytes(client, "fetch(document.getElementById('sent').href).then((r) => r.blob())").await;
    let pad_png = js_bytes(
        client,
        "new Promise((done) => { const c = document.createElement('canvas'); c.width = c.height = 140; const x = c.getContext('2d');
         x.imageSmoothingEnabled = true; x.imageSmoothingQuality = 'high'; x.drawImage(document.getElementById('pad'), 0, 0, 140, 140); c.toBlob(done, 'image/png'); })",
    )
    .await;
    assert_eq!(sent, pad_png, "the answer shown is not for the drawing as it ends");
    assert_eq!(image::load_from_memory(&sent)?.dimensions(), (140, 140));
    let png = dir.join("drawn.png");
    std::fs::write(&png, &sent)?;

    // `nnmnist predict` on it: the same digits and probabilities, the same input.
    let inputs = dir.join("inputs");
    std::fs::create_dir(&inputs)?;
    let out = common::nnmnist().current_dir(dir).args(["predict", "--format", "json", "--weights", weights[0], "--weights", weights[1], "--save-input"]).arg(&inputs).arg(&png).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let readings: Vec<Value> = String::from_utf8(out.stdout)?.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(readings.len(), 2);
    for (i, reading) in readings.iter().enumerate() {
        let model = reading["model"].as_str().unwrap();
        let column = format!("section.model[data-model={model}]");
        let digit = client.find(Locator::Css(&format!("{column} .digit"))).await?.text().await?;
        assert_eq!(digit, reading["digit"].to_string(), "{model}: the digit shown");
        let shown: Vec<f64> = js(client, &format!("return [...document.querySelectorAll('{column} .bar')].map(b => b.dataset.p)")).await.as_array().unwrap().iter().map(|p| p.as_str().unwrap().parse().unwrap()).collect();
        let want: Vec<f64> = reading["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        assert_eq!(shown, want, "{model}: the probabilities shown are not predict's");
        let texts: Vec<String> = js(client, &format!("return [...document.querySelectorAll('{column} .bar .value')].map(v => v.textContent)")).await.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        assert_eq!(texts, want.iter().map(|p| format!("{:.1}%", 100.0 * p)).collect::<Vec<_>>(), "{model}: the percentages");
        // --pytorch: the same digit; the convnet's logits the same to the bit.
        let parity = client.find(Locator::Css(&format!("{column} .parity"))).await?;
        assert!(parity.text().await?.starts_with("PyTorch: the same digit;"), "{model}: {}", parity.text().await?);
        if model == "convnet" {
            assert_eq!(parity.attr("data-diff").await?.as_deref(), Some("0"), "the convnet's logits differ from PyTorch's");
        }
        assert_eq!(i == 0, model == "convnet");
    }
    let saved = std::fs::read_dir(&inputs)?.next().expect("predict --save-input wrote the input")?.path();
    let input = image::open(&saved)?.to_luma8().into_raw();
    assert_eq!(seen(client).await, input, "the 28x28 preview is not predict's input");

    // Everything drawn: the preview, each saliency map, each layer (at least one of its
    // feature maps: a channel may be all zero after its ReLU), each hidden neuron's weights.
    let blank: Value = js(client, r#"
        const drawn = (c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                               for (let i = 0; i < d.length; i += 4) if (d[i] || d[i + 1] || d[i + 2]) return true; return false; };
        const out = [];
        if (!drawn(document.getElementById('seen'))) out.push('the 28x28 preview');
        document.querySelectorAll('section.model').forEach((m) => {
          const name = m.dataset.model;
          if (!drawn(m.querySelector('canvas.saliency'))) out.push(name + ': saliency');
          m.querySelectorAll('figure.layer').forEach((f) => {
            const cs = [...f.querySelectorAll('canvas')];
            if (!cs.length || !cs.some(drawn)) out.push(name + ': ' + f.querySelector('figcaption').textContent);
          });
          m.querySelectorAll('canvas.neuron').forEach((c, j) => { if (!drawn(c)) out.push(name + ': neuron ' + j); });
        });
        out.push(document.querySelectorAll('figure.layer').length);
        return out;"#)
    .await;
    let blank = blank.as_array().unwrap();
    let figures = blank.last().unwrap().as_u64().unwrap();
    assert_eq!(figures, 6 + 2 + 1, "the convnet's 6 layers, the MLP's 2 and its neurons");
    assert!(blank.len() == 1, "blank pictures: {:?}", &blank[..blank.len() - 1]);

    // The screenshot, of the whole page.
    let height = js(client, "return Math.ceil(document.documentElement.scrollHeight)").await.as_u64().unwrap();
    client.set_window_size(1400, height.max(900) as u32 + 100).await?;
    let shot = client.screenshot().await?;
    if let Some(parent) = screenshot.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(screenshot, shot)?;
    Ok(())
}

/// The #seen canvas's pixels as grey levels (its red channel: it is drawn grey).
async fn seen(client: &Client) -> Vec<u8> {
    let v = js(client, "const c = document.getElementById('seen'); return [...c.getContext('2d').getImageData(0, 0, 28, 28).data].filter((_, i) => i % 4 === 0)").await;
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect()
}

/// The bytes of the Blob `promise` gives, read in the page.
async fn js_bytes(client: &Client, promise: &str) -> Vec<u8> {
    let script = format!("const done = arguments[0]; {promise}.then((b) => b.arrayBuffer()).then((b) => done([...new Uint8Array(b)])).catch((e) => done(String(e)));");
    let v = client.execute_async(&script, vec![]).await.unwrap_or_else(|e| panic!("{promise}: {e}"));
    v.as_array().unwrap_or_else(|| panic!("{promise}: {v}")).iter().map(|x| x.as_u64().unwrap() as u8).collect()
}
