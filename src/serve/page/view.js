// Drawing what the server answers: grey and signed maps on canvases, probability bars,
// one column per network. Nothing here talks to the server.

// Values >= 0 as grey levels, the largest white (all black when all are 0).
export function grey(canvas, values, width, height) {
  const top = Math.max(...values, 0);
  paint(canvas, values, width, height, (v) => {
    const g = top > 0 ? Math.round((255 * v) / top) : 0;
    return [g, g, g];
  });
}

// Signed values: positive orange, negative blue, 0 black, scaled by the largest |value|.
export function signed(canvas, values, width, height) {
  const top = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  paint(canvas, values, width, height, (v) => {
    const t = top > 0 ? Math.abs(v) / top : 0;
    return v >= 0 ? [255 * t, 160 * t, 0] : [0, 140 * t, 255 * t];
  });
}

// MNIST's grey levels as they are: 0 black, 255 white.
export function pixels(canvas, values) {
  paint(canvas, values, 28, 28, (v) => [v, v, v]);
}

function paint(canvas, values, width, height, colour) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const [r, g, b] = colour(values[i]);
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

// The ten probabilities as bars; the predicted digit's is marked. Each bar keeps the exact
// value it shows in data-p.
export function bars(list, probabilities, digit) {
  list.replaceChildren(
    ...probabilities.map((p, d) => {
      const li = document.createElement("li");
      li.className = d === digit ? "bar top" : "bar";
      li.dataset.p = String(p);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = d;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(100 * p).toFixed(2)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p);
      li.append(label, track, value);
      return li;
    }),
  );
}

export function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

// One layer's output: a grid of feature maps for (C, H, W), a row of cells for (F).
// Maps that can be negative (no ReLU after them) are drawn signed.
export function layer(box, l) {
  const canvases = box.querySelectorAll("canvas");
  const canNegative = l.values.some((v) => v < 0);
  const draw = canNegative ? signed : grey;
  if (l.shape.length === 3) {
    const [c, h, w] = l.shape;
    for (let i = 0; i < c; i++) draw(canvases[i], l.values.slice(i * h * w, (i + 1) * h * w), w, h);
  } else {
    draw(canvases[0], l.values, l.shape[0], 1);
  }
}

// The empty boxes of a layer, made once: a heading and its canvases.
export function layerBox(about, shape) {
  const box = document.createElement("figure");
  box.className = "layer";
  const caption = document.createElement("figcaption");
  caption.textContent = `${about.name}: ${about.title} (${shape.join("×")})`;
  const grid = document.createElement("div");
  grid.className = shape.length === 3 ? "maps" : "strip";
  const count = shape.length === 3 ? shape[0] : 1;
  for (let i = 0; i < count; i++) {
    const c = document.createElement("canvas");
    c.className = shape.length === 3 ? "map pixels layer-canvas" : "cells pixels layer-canvas";
    c.width = shape.length === 3 ? shape[2] : shape[0];
    c.height = shape.length === 3 ? shape[1] : 1;
    grid.append(c);
  }
  box.append(caption, grid);
  return box;
}

// The MLP's hidden neurons: each one's incoming weights as a 28x28 picture (what it looks
// for), made once; `activations` then dims each by how strongly it fires.
export function neurons(box, incoming) {
  const [n, h, w] = incoming.shape;
  const fig = document.createElement("figure");
  fig.className = "layer";
  const caption = document.createElement("figcaption");
  caption.textContent = `${incoming.name}: ${incoming.title}; each dimmed by its activation (${n} neurons)`;
  const grid = document.createElement("div");
  grid.className = "neurons";
  for (let j = 0; j < n; j++) {
    const c = document.createElement("canvas");
    c.className = "neuron pixels layer-canvas";
    c.title = `hidden neuron ${j}`;
    signed(c, incoming.values.slice(j * h * w, (j + 1) * h * w), w, h);
    grid.append(c);
  }
  fig.append(caption, grid);
  box.append(fig);
  return grid;
}

export function activations(grid, values) {
  grid.querySelectorAll("canvas").forEach((c, j) => {
    c.style.opacity = String(0.15 + 0.85 * values[j]);
    c.title = `hidden neuron ${j}: activation ${values[j].toFixed(3)}`;
  });
}
