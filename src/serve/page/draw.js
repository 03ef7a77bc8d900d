// The drawing pad: one digit, drawn with a mouse, a pen or a finger (Pointer Events), in
// white ink on black as MNIST stores its digits. The server preprocesses what is drawn
// exactly as `nnmnist predict` does an image file, so the ink's colour does not matter to it.

const INK = "#fff";
const PAPER = "#000";
// The pen, as a fraction of the pad's width: a digit drawn across most of the pad becomes
// 20 pixels tall in MNIST's 28x28 field, with strokes about 2 pixels wide, as MNIST's.
const PEN = 0.08;

export class Pad {
  // canvas: the <canvas> to draw on; changed(what): called with "draw" while a stroke
  // goes on and "end" when one ends.
  constructor(canvas, changed) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.changed = changed;
    this.pens = new Map(); // pointerId -> the last point of its stroke
    this.clear();
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", (e) => this.up(e));
  }

  // Whether nothing has been drawn since the last clear.
  get blank() {
    return this.empty;
  }

  // A pointer event's place in the canvas's own pixels.
  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return { x: ((e.clientX - r.left) * this.canvas.width) / r.width, y: ((e.clientY - r.top) * this.canvas.height) / r.height };
  }

  down(e) {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    const p = this.point(e);
    this.pens.set(e.pointerId, p);
    this.segment(p, p);
    this.changed("draw");
  }

  move(e) {
    let last = this.pens.get(e.pointerId);
    if (!last) return;
    e.preventDefault();
    // The points the browser merged into this event, so fast strokes stay smooth.
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = this.point(ev);
      this.segment(last, p);
      last = p;
    }
    this.pens.set(e.pointerId, last);
    this.changed("draw");
  }

  up(e) {
    if (this.pens.delete(e.pointerId)) this.changed("end");
  }

  segment(a, b) {
    const ctx = this.ctx;
    ctx.strokeStyle = INK;
    ctx.lineWidth = PEN * this.canvas.width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    this.empty = false;
  }

  clear() {
    this.ctx.fillStyle = PAPER;
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.pens.clear();
    this.empty = true;
  }

  // Draws a 28x28 image (784 grey levels, 0 black) over the whole pad, smoothly enlarged.
  show(pixels) {
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    const data = small.getContext("2d").createImageData(28, 28);
    pixels.forEach((v, i) => data.data.set([v, v, v, 255], 4 * i));
    small.getContext("2d").putImageData(data, 0, 0);
    this.clear();
    this.ctx.imageSmoothingEnabled = true;
    this.ctx.drawImage(small, 0, 0, this.canvas.width, this.canvas.height);
    this.empty = false;
  }

  // The pad as a PNG Blob of size x size pixels (smoothly reduced).
  png(size) {
    const small = document.createElement("canvas");
    small.width = small.height = size;
    const ctx = small.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.canvas, 0, 0, size, size);
    return new Promise((resolve, reject) => small.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas gave no PNG"))), "image/png"));
  }
}
