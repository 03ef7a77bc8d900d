// The page: the pad, the requests to the server, and one column per network.
//
// While you draw, the pad is sent as a PNG to POST /api/predict, at most one request at a
// time: strokes made while one is on its way are sent together once it is answered, so the
// networks keep up with the pen and the last drawing is always the one shown.
// <body data-state> is "busy" while a drawing waits for its answer and "idle" once the
// last one is shown; data-shown counts the answers shown (the browser test waits on them).
import { Pad } from "./draw.js";
import * as view from "./view.js";

const $ = (id) => document.getElementById(id);
const columns = new Map(); // model index -> its column's elements
let next = null; // the request to send when the one on its way is answered
let sending = false;
let timer = null;
let sentUrl = null;
let shown = 0;

// While a stroke goes on, a request at most every THROTTLE ms.
const THROTTLE = 40;
// The pad is sent at half its size: a digit drawn across it is still 5 times the 20x20 box
// MNIST scales it into, and the server's preprocessing, which grows faster than the
// image's area, takes a few milliseconds instead of 15.
const SENT = 140;

const pad = new Pad($("pad"), (what) => {
  $("source").textContent = "";
  if (what === "end") {
    clearTimeout(timer);
    timer = null;
    send(drawing);
  } else if (timer === null) {
    timer = setTimeout(() => {
      timer = null;
      send(drawing);
    }, THROTTLE);
  }
});

// What the pad shows now, as a request body.
async function drawing() {
  const blob = await pad.png(SENT);
  return { body: blob, type: "image/png", blob };
}

function setState(state, message, isError = false) {
  document.body.dataset.state = state;
  if (message !== undefined) {
    $("status").textContent = message;
    $("status").classList.toggle("error", isError);
  }
}

function send(make) {
  next = make;
  setState("busy");
  if (!sending) pump();
}

async function pump() {
  sending = true;
  while (next) {
    const make = next;
    next = null;
    try {
      const { body, type, blob } = await make();
      const answer = await fetch("/api/predict", { method: "POST", headers: { "Content-Type": type }, body });
      const json = await answer.json();
      if (!answer.ok) throw new Error(json.error || `HTTP ${answer.status}`);
      show(json, blob);
      setState(next ? "busy" : "idle", "Draw a digit; both networks read it as you draw.");
    } catch (e) {
      setState(next ? "busy" : "idle", String(e.message || e), true);
    }
  }
  sending = false;
}

function show(answer, blob) {
  view.pixels($("seen"), answer.input);
  $("preprocessing").textContent = describe(answer.preprocessing);
  const link = $("sent");
  if (sentUrl) URL.revokeObjectURL(sentUrl);
  sentUrl = blob ? URL.createObjectURL(blob) : null;
  link.hidden = !blob;
  if (blob) link.href = sentUrl;
  answer.models.forEach((m, i) => showModel(columns.get(i), m));
  shown += 1;
  document.body.dataset.shown = String(shown);
}

function describe(p) {
  if (!p) return "Sent as it is: already MNIST's 28x28.";
  const parts = [`${p.width}×${p.height} image, ${p.polarity}`];
  if (p.specks) parts.push(`${p.specks} speck${p.specks === 1 ? "" : "s"} left out`);
  if (p.geometry) parts.push(`digit scaled to ${p.geometry.size.join("×")}, centre of mass at the centre`);
  return parts.join("; ") + ".";
}

function showModel(col, m) {
  col.digit.textContent = m.digit;
  view.bars(col.bars, m.probabilities, m.digit);
  if (m.pytorch) {
    const same = m.pytorch.digit === m.digit ? "the same digit" : `digit ${m.pytorch.digit}`;
    const diff = m.pytorch.max_abs_diff;
    const size = diff === 0 ? "0, the same to the bit" : diff.toExponential(1);
    col.parity.textContent = `PyTorch: ${same}; largest |logit difference| ${size}`;
    col.parity.dataset.diff = String(m.pytorch.max_abs_diff);
  }
  view.signed(col.saliency, m.saliency, 28, 28);
  m.layers.forEach((l, i) => {
    if (!col.layers[i]) {
      col.layers[i] = view.layerBox(l, l.shape);
      col.layerBox.append(col.layers[i]);
    }
    view.layer(col.layers[i], l);
  });
  if (col.neurons) view.activations(col.neurons, m.layers[0].values);
}

async function start() {
  const answer = await fetch("/api/models");
  const about = await answer.json();
  if (!answer.ok) throw new Error(about.error || `HTTP ${answer.status}`);
  const template = $("model");
  about.models.forEach((m, i) => {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.model = m.model;
    node.querySelector(".name").textContent = m.model;
    node.querySelector(".source").textContent = `${m.source}. ${m.description}.`;
    node.querySelector(".saliency-what").textContent = m.saliency;
    const col = {
      digit: node.querySelector(".digit"),
      bars: node.querySelector(".bars"),
      parity: node.querySelector(".parity"),
      saliency: node.querySelector(".saliency"),
      layerBox: node.querySelector(".layers"),
      layers: [],
      neurons: null,
    };
    if (about.pytorch) col.parity.title = about.pytorch;
    if (m.incoming) col.neurons = view.neurons(node.querySelector(".layers"), m.incoming);
    view.bars(col.bars, new Array(10).fill(0), -1);
    columns.set(i, col);
    $("models").append(node);
  });
  $("index").max = String(about.test_images - 1);
  $("clear").addEventListener("click", () => {
    pad.clear();
    $("source").textContent = "";
  });
  $("load").addEventListener("submit", (e) => {
    e.preventDefault();
    load(Number($("index").value));
  });
  setState("idle", "Draw a digit; both networks read it as you draw.");
}

// MNIST test image n on the pad, and its exact 28x28 to the networks (so the page agrees
// with `nnmnist eval` on it); drawing on it afterwards sends the pad.
async function load(n) {
  setState("busy");
  try {
    const answer = await fetch(`/api/mnist/${n}`);
    const image = await answer.json();
    if (!answer.ok) throw new Error(image.error || `HTTP ${answer.status}`);
    pad.show(image.pixels);
    $("source").textContent = `MNIST test image ${image.index}, label ${image.label}`;
    send(async () => ({ body: JSON.stringify({ pixels: image.pixels }), type: "application/json", blob: null }));
  } catch (e) {
    setState("idle", String(e.message || e), true);
  }
}

start().catch((e) => setState("idle", `Cannot start: ${e.message || e}`, true));
