// The drawing page: canvas → preprocess.js (the MNIST recipe) → onnxruntime-web → the answer.
// Everything is loaded from this folder: config.json, model.onnx and the runtime files that
// mnistlib.apps.webpage.build_site copied next to this script. No CDN, no other host.
import { DrawingError, FRAME, normalise, prepareDigit, rgbaToGray, softmax } from "./preprocess.js";

const HERE = new URL("./", import.meta.url).href;
const RUNTIME = "ort.wasm.min.mjs"; // onnxruntime-web's wasm-only build
const BRUSH = 20; // the Jupyter pad's brush on the same 280×280 canvas
const LIVE_MS = 150; // while drawing, predict at most this often
const EMPTY = "Draw a digit in the white square (mouse or finger).";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const seen = $("seen").getContext("2d");

let ort = null; // the runtime module, once loaded
const state = { session: null, config: null, strokes: 0, pointer: null, last: null, busy: false, again: false, lastRun: 0 };

// ---- showing things ------------------------------------------------------------------------

const bars = Array.from({ length: 10 }, (_, digit) => {
  const row = document.createElement("div");
  row.className = "bar";
  row.dataset.digit = String(digit);
  row.innerHTML = `<span class="label">${digit}</span><span class="track"><span class="fill"></span></span>` +
    `<span class="value">0%</span>`;
  $("bars").append(row);
  return row;
});

function drawBars(probabilities) {
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  bars.forEach((row, digit) => {
    const p = probabilities ? probabilities[digit] : 0;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${Math.round(100 * p)}%`;
    row.classList.toggle("best", digit === best);
  });
}

function drawSeen(image28) {
  const picture = seen.createImageData(FRAME, FRAME);
  for (let i = 0; i < FRAME * FRAME; i++) {
    const v = image28 ? Math.round(255 * Math.min(Math.max(image28[i], 0), 1)) : 0;
    picture.data.set([v, v, v, 255], 4 * i); // ink white on black, like MNIST
  }
  seen.putImageData(picture, 0, 0);
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
  $("answer").hidden = true;
  drawBars(null);
  drawSeen(null);
}

function showAnswer(image28, probabilities) {
  const digit = probabilities.indexOf(Math.max(...probabilities));
  $("digit").textContent = String(digit);
  $("confidence").textContent = `(${Math.round(100 * probabilities[digit])}% sure)`;
  $("message").hidden = true;
  $("answer").hidden = false;
  drawBars(probabilities);
  drawSeen(image28);
}

function showLoadError(err) {
  document.body.dataset.state = "error";
  const reason = String((err && err.message) || err).split("\n")[0];
  $("error").textContent = `Could not load the model: ${reason}`;
  $("error").hidden = false;
  showMessage("The model is not available, so the page cannot read digits.");
}

// ---- predicting ----------------------------------------------------------------------------

async function classify(image28) {
  const { session, config } = state;
  const input = new ort.Tensor("float32", normalise(image28, config.mean, config.std), [1, 1, FRAME, FRAME]);
  const outputs = await session.run({ [session.inputNames[0]]: input });
  const logits = outputs[session.outputNames[0]].data;
  if (logits.length !== 10) throw new Error(`the model gave ${logits.length} scores instead of 10`);
  return softmax(logits);
}

async function predictOnce() {
  if (state.strokes === 0) return showMessage(EMPTY);
  const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
  let image28;
  try {
    image28 = prepareDigit(rgbaToGray(data, width, height), width, height);
  } catch (err) {
    if (err instanceof DrawingError) return showMessage(err.message);
    throw err;
  }
  showAnswer(image28, await classify(image28));
}

/** Predict from the canvas now; one inference at a time, the latest drawing always last. */
async function predict() {
  state.lastRun = performance.now();
  if (!state.session) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  document.body.dataset.busy = "true"; // lets a test wait for the answer to the finished drawing
  try {
    do {
      state.again = false;
      await predictOnce();
    } while (state.again);
  } catch (err) {
    console.error(err);
    showMessage(`Something went wrong: ${err.message}`);
  } finally {
    state.busy = false;
    document.body.dataset.busy = "false";
  }
}

// ---- drawing (pointer events: mouse, finger and pen alike) ---------------------------------

function paintBackground() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.fillStyle = ctx.strokeStyle = "#000";
  ctx.lineWidth = BRUSH;
  ctx.lineCap = ctx.lineJoin = "round";
}

/** A pointer event's position in canvas pixels (the canvas may be shown smaller on a phone). */
function position(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left - pad.clientLeft) * pad.width) / pad.clientWidth,
    y: ((event.clientY - box.top - pad.clientTop) * pad.height) / pad.clientHeight,
  };
}

function startStroke(event) {
  if (state.pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  state.pointer = event.pointerId;
  document.body.dataset.pointer = event.pointerType; // "mouse", "touch" or "pen"
  pad.setPointerCapture(event.pointerId);
  state.last = position(event);
  ctx.beginPath();
  ctx.arc(state.last.x, state.last.y, BRUSH / 2, 0, 2 * Math.PI);
  ctx.fill();
  state.strokes += 1;
}

function extendStroke(event) {
  if (event.pointerId !== state.pointer) return;
  event.preventDefault();
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of coalesced.length ? coalesced : [event]) {
    const p = position(e);
    ctx.beginPath();
    ctx.moveTo(state.last.x, state.last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    state.last = p;
  }
  if (performance.now() - state.lastRun >= LIVE_MS) predict();
}

function endStroke(event) {
  if (event.pointerId !== state.pointer) return;
  state.pointer = null;
  predict(); // always on pen-up
}

function clear() {
  state.strokes = 0;
  state.pointer = null;
  paintBackground();
  if (state.session) predict();
}

// ---- loading -------------------------------------------------------------------------------

async function fetchOk(name) {
  const response = await fetch(new URL(name, HERE));
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

async function load() {
  if (location.protocol === "file:") {
    throw new Error("this page must be served, not opened as a file. In a terminal: " +
      "python -m http.server 8000 --bind 127.0.0.1 -d THIS_FOLDER, then open http://127.0.0.1:8000");
  }
  const config = await (await fetchOk("config.json")).json();
  ort = await import(new URL(RUNTIME, HERE).href);
  ort.env.wasm.numThreads = 1; // no SharedArrayBuffer without cross-origin isolation headers
  ort.env.wasm.wasmPaths = HERE; // the .wasm and its loader lie next to this script
  const bytes = new Uint8Array(await (await fetchOk(config.model)).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  Object.assign(state, { session, config });
  await classify(new Float32Array(FRAME * FRAME)); // fail now, not at the first drawing
}

pad.addEventListener("pointerdown", startStroke);
pad.addEventListener("pointermove", extendStroke);
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", clear);
paintBackground();
drawBars(null);
drawSeen(null);
load().then(
  () => {
    document.body.dataset.state = "ready";
    state.strokes ? predict() : showMessage(EMPTY);
  },
  (err) => {
    state.session = null;
    console.error(err);
    showLoadError(err);
  },
);
