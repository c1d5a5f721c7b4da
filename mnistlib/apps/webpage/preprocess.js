// Prepare a drawing like an MNIST digit, exactly as mnistlib.drawing.prepare_digit does:
// grayscale → invert when the ink is darker than the background → crop to the ink's bounding
// box → scale the longer side to 20 px (Pillow's Lanczos filter) → centre of mass to the centre
// of 28×28 → normalise. Pure functions on typed arrays: the page and Node (the parity test) both
// run this file. Arithmetic mirrors NumPy's float32 steps (Math.fround) so results agree with
// Python to float32 rounding.

const f32 = Math.fround;

export const FRAME = 28; // MNIST images are 28×28 …
export const BOX = 20; // … with the digit's longer side scaled to 20 px.
export const MIN_CONTRAST = 0.08; // ink must differ from the background by this much
export const NOISE = 0.1; // after stretching, ink fainter than this counts as background

/** An input that holds no readable digit; the message is one line meant for the learner. */
export class DrawingError extends Error {
  constructor(message) {
    super(message);
    this.name = "DrawingError";
  }
}

/** 8-bit grayscale pixels → Float32Array in 0..1 (NumPy: a.astype(float32) / 255). */
export function grayFromUint8(pixels) {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] / 255;
  return out;
}

/** RGBA bytes (a canvas's ImageData) → Float32Array gray in 0..1, transparency flattened. */
export function rgbaToGray(rgba, width, height) {
  const n = width * height;
  if (rgba.length !== 4 * n) throw new DrawingError(`Expected ${4 * n} RGBA bytes, got ${rgba.length}.`);
  const gray = new Float32Array(n);
  const alpha = new Float32Array(n);
  const [wr, wg, wb] = [f32(0.299), f32(0.587), f32(0.114)]; // ITU-R 601, like Pillow
  let minAlpha = 1;
  for (let i = 0; i < n; i++) {
    const r = f32(rgba[4 * i] / 255), g = f32(rgba[4 * i + 1] / 255), b = f32(rgba[4 * i + 2] / 255);
    gray[i] = f32(f32(f32(r * wr) + f32(g * wg)) + f32(b * wb));
    alpha[i] = rgba[4 * i + 3] / 255;
    minAlpha = Math.min(minAlpha, alpha[i]);
  }
  return minAlpha >= 1 ? gray : composite(gray, alpha);
}

/** Flatten transparency onto a background that contrasts with the visible ink. */
function composite(gray, alpha) {
  let weight = 0, inked = 0;
  for (let i = 0; i < gray.length; i++) {
    weight += alpha[i];
    inked += f32(gray[i] * alpha[i]);
  }
  if (weight <= 0) throw new DrawingError("The image is fully transparent: there is nothing to read.");
  const background = inked / weight < 0.5 ? 1 : 0; // dark marks go on white, light marks on black
  const out = new Float32Array(gray.length);
  for (let i = 0; i < gray.length; i++) {
    out[i] = f32(f32(gray[i] * alpha[i]) + f32(background * f32(1 - alpha[i])));
  }
  return out;
}

/** The median of the image's outer edge (NumPy's median of float32: mean of the two middles). */
function borderMedian(gray, width, height) {
  const edge = [];
  for (let x = 0; x < width; x++) edge.push(gray[x], gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) edge.push(gray[y * width], gray[y * width + width - 1]);
  const sorted = Float32Array.from(edge).sort();
  const mid = sorted.length / 2; // always even: 2·width + 2·height values
  return f32(f32(sorted[mid - 1] + sorted[mid]) / 2);
}

/** Grayscale → ink (background 0, strongest ink 1); throws DrawingError on a blank image. */
export function findInk(gray, width, height) {
  const background = borderMedian(gray, width, height);
  let lo = Infinity, hi = -Infinity;
  for (const v of gray) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const inverted = background - lo > hi - background; // ink darker than the paper: invert
  const contrast = inverted ? background - lo : hi - background;
  if (contrast < MIN_CONTRAST) throw new DrawingError("No digit found: the image is blank (one colour, no ink).");
  const c = f32(contrast), noise = f32(NOISE);
  const ink = new Float32Array(gray.length);
  for (let i = 0; i < gray.length; i++) {
    const v = f32(f32(inverted ? background - gray[i] : gray[i] - background) / c);
    ink[i] = v < noise ? 0 : Math.min(v, 1);
  }
  return { ink, inverted };
}

// ---- Pillow's resampling (src/libImaging/Resample.c), for float ("F") images --------------

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

export const FILTERS = {
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
};

/** Per output pixel: the first input pixel, how many, and their normalised weights. */
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const inverse = 1 / filterScale;
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const centre = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const weights = [];
    let total = 0;
    for (let x = xmin; x < xmax; x++) {
      const w = filter.fn((x - centre + 0.5) * inverse);
      weights.push(w);
      total += w;
    }
    taps.push({ first: xmin, weights: total !== 0 ? weights.map((w) => w / total) : weights });
  }
  return taps;
}

/** One resampling pass along rows (horizontal) or columns; sums in double, stores float32. */
function pass(src, width, height, outSize, filter, horizontal) {
  const taps = coefficients(horizontal ? width : height, outSize, filter);
  const [outW, outH] = horizontal ? [outSize, height] : [width, outSize];
  const out = new Float32Array(outW * outH);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const { first, weights } = taps[horizontal ? x : y];
      let sum = 0;
      for (let k = 0; k < weights.length; k++) {
        sum += (horizontal ? src[y * width + first + k] : src[(first + k) * width + x]) * weights[k];
      }
      out[y * outW + x] = sum;
    }
  }
  return out;
}

/** Resize a float image like Pillow's Image.resize((newW, newH), filter) on mode "F". */
export function resize(src, width, height, newW, newH, filter = FILTERS.lanczos) {
  let out = src, w = width;
  if (newW !== width) {
    out = pass(out, w, height, newW, filter, true);
    w = newW;
  }
  if (newH !== height) out = pass(out, w, height, newH, filter, false);
  return out === src ? Float32Array.from(src) : out;
}

/** Anti-aliased resize clipped to 0..1, as mnistlib.drawing._resize. */
function resizeInk(src, width, height, newW, newH) {
  const out = resize(src, width, height, newW, newH, FILTERS.lanczos);
  let max = 0;
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.min(Math.max(out[i], 0), 1);
    max = Math.max(max, out[i]);
  }
  // Lanczos ringing can swallow a lone faint pixel; a box filter cannot.
  return max > 0 ? out : resize(src, width, height, newW, newH, FILTERS.box);
}

// ---- The MNIST recipe ----------------------------------------------------------------------

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The ink's bounding box: {top, left, h, w} (the ink has at least one non-zero pixel). */
function boundingBox(ink, width, height) {
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] !== 0) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  return { top, left, h: bottom - top + 1, w: right - left + 1 };
}

function crop(a, width, box) {
  const out = new Float32Array(box.w * box.h);
  for (let y = 0; y < box.h; y++) {
    out.set(a.subarray((box.top + y) * width + box.left, (box.top + y) * width + box.left + box.w), y * box.w);
  }
  return out;
}

/** NumPy's float32 pairwise summation (np.add.reduce over a run of n values): same rounding. */
function pairwiseSum(a, start, n, stride) {
  if (n < 8) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum = f32(sum + a[start + i * stride]);
    return sum;
  }
  if (n <= 128) {
    const r = Array.from({ length: 8 }, (_, j) => a[start + j * stride]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[start + (i + j) * stride]);
    }
    let sum = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) sum = f32(sum + a[start + i * stride]);
    return sum;
  }
  const half = Math.floor(n / 2) - (Math.floor(n / 2) % 8);
  return f32(pairwiseSum(a, start, half, stride) + pairwiseSum(a, start + half * stride, n - half, stride));
}

/**
 * (row, column) of the intensity-weighted centre, in pixel-index coordinates. The sums round
 * like NumPy's float32 sums: a symmetric blob's centre can sit a hair off x.5, and which side
 * decides the one-pixel shift.
 */
export function centreOfMass(a, width, height) {
  const total = pairwiseSum(a, 0, width * height, 1);
  if (total <= 0) return [(height - 1) / 2, (width - 1) / 2];
  const columns = new Float32Array(width); // a.sum(axis=0): rows added one after another
  let sy = 0;
  for (let y = 0; y < height; y++) {
    sy += pairwiseSum(a, y * width, width, 1) * y; // a.sum(axis=1) @ rows
    for (let x = 0; x < width; x++) columns[x] += a[y * width + x];
  }
  let sx = 0;
  for (let x = 0; x < width; x++) sx += columns[x] * x;
  return [sy / total, sx / total];
}

/**
 * Any grayscale image (Float32Array in 0..1, row-major) → the 28×28 Float32Array an MNIST model
 * reads (ink = 1). Throws DrawingError for input that holds no readable digit.
 */
export function prepareDigit(gray, width, height) {
  const { ink } = findInk(gray, width, height);
  const box = boundingBox(ink, width, height);
  const cropped = crop(ink, width, box);
  const scale = BOX / Math.max(box.h, box.w);
  const newW = Math.max(1, roundHalfEven(box.w * scale));
  const newH = Math.max(1, roundHalfEven(box.h * scale));
  const scaled = resizeInk(cropped, box.w, box.h, newW, newH);
  let max = 0;
  for (const v of scaled) max = Math.max(max, v);
  const peak = f32(Math.max(max, 1e-6));
  for (let i = 0; i < scaled.length; i++) scaled[i] = scaled[i] / peak;
  const [cy, cx] = centreOfMass(scaled, newW, newH);
  // Integer shift putting the centre of mass on pixel (14, 14), clamped so no ink falls off.
  const top = Math.min(Math.max(roundHalfEven(FRAME / 2 - cy), 0), FRAME - newH);
  const left = Math.min(Math.max(roundHalfEven(FRAME / 2 - cx), 0), FRAME - newW);
  const frame = new Float32Array(FRAME * FRAME);
  for (let y = 0; y < newH; y++) frame.set(scaled.subarray(y * newW, (y + 1) * newW), (top + y) * FRAME + left);
  return frame;
}

/** (x - mean) / std in float32, the tensor a model trained with those constants expects. */
export function normalise(image28, mean, std) {
  const m = f32(mean), s = f32(std);
  return image28.map((v) => f32(v - m) / s);
}

/** Ten logits → ten probabilities. */
export function softmax(logits) {
  const top = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}
