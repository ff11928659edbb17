// mnistcnn serve: the page. No build step, no libraries, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  run: "", lastImage: null, busy: false, queued: null, model: null, chartRun: null, poll: null, gen: 0,
  listing: null, listPoll: null, freshRun: null,
};
const GENERATIVE = ["ae", "vae", "cvae", "gan"];
const isMynet = (r) => !r.model || r.model === "mynet";
// ten colours told apart on white and on the dark theme (Tableau 10)
const COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

// ---- API ----
async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw Object.assign(new Error(body.error || `${res.status}`), { status: res.status, body });
  return body;
}
const q = (path, params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") s.set(k, v);
  const t = s.toString();
  return t ? `${path}${path.includes("?") ? "&" : "?"}${t}` : path;
};
const withRun = (path) => q(path, { run: state.run });
const postJSON = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
const postImage = (path, blob) => api(path, {
  method: "POST", headers: { "Content-Type": blob.type && blob.type.startsWith("image/") ? blob.type : "image/png" }, body: blob,
});
const mynetRun = () => state.run || (state.listing && state.listing.default) || "";

function notice(text, isError) {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

// One request in flight; calls made meanwhile keep only the newest arguments, sent when it returns.
function latestOnly(work) {
  let busy = false, next = null;
  const run = async (...args) => {
    if (busy) { next = args; return; }
    busy = true;
    try {
      await work(...args);
    } catch (err) {
      notice(err.message, true);
    } finally {
      busy = false;
      const again = next;
      next = null;
      if (again) run(...again);
    }
  };
  return run;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}
const picture = (src, alt, cls = "") => el("img", { src, alt, class: cls });
function dataUrlBlob(url) { // the page's CSP keeps fetch() to its own origin: data URLs are decoded here
  const [head, b64] = url.split(",");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}
function digitOptions(select, extra) {
  select.replaceChildren(...(extra ? [new Option(extra[1], extra[0])] : []), ..."0123456789".split("").map((d) => new Option(d, d)));
}

// ---- Tabs (arrow keys move between them, as the ARIA tabs pattern) ----
const tabs = ["read", "model", "runs", "generate", "map", "mistakes", "epochs", "train"];
const onShow = {};
function showTab(name) {
  for (const t of tabs) {
    const on = t === name;
    $(`tab-${t}`).setAttribute("aria-selected", on);
    $(`tab-${t}`).tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  if (name !== "runs") stopPolling();
  if (onShow[name]) onShow[name]();
}
for (const t of tabs) {
  $(`tab-${t}`).addEventListener("click", () => showTab(t));
  $(`tab-${t}`).addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const next = tabs[(tabs.indexOf(t) + step + tabs.length) % tabs.length];
    $(`tab-${next}`).focus();
    showTab(next);
  });
}
const visible = (name) => !$(`panel-${name}`).hidden;

// ---- Drawing pads: pointer events cover mouse, pen and touch; onStroke(blob, t0) at each stroke's end ----
function makePad(canvas, onStroke) {
  const g = canvas.getContext("2d");
  let drawing = false, inked = false;
  const clear = () => {
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
    inked = false;
  };
  clear();
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return; // the left button, a pen's tip, a finger; not a right click
    drawing = inked = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = point(e);
    g.strokeStyle = g.fillStyle = "#fff";
    g.lineWidth = 22 * (canvas.width / 280); // ~2.2 px of 28 when the digit fills the pad: MNIST's stroke
    g.lineCap = g.lineJoin = "round";
    g.beginPath();
    g.arc(x, y, g.lineWidth / 2, 0, 2 * Math.PI);
    g.fill();
    g.beginPath();
    g.moveTo(x, y);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    g.lineTo(x, y);
    g.stroke();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    const t0 = performance.now();
    canvas.toBlob((blob) => onStroke(blob, t0), "image/png");
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return { canvas, clear, inked: () => inked, toBlob: () => new Promise((ok) => canvas.toBlob(ok, "image/png")) };
}

// ---- Read: the main pad ----
const readPad = makePad($("pad"), (blob, t0) => {
  $("photo").hidden = true;
  predict(blob, t0);
});
$("clear").addEventListener("click", () => {
  readPad.clear();
  $("upload").value = ""; // the same photo can be chosen again
  state.lastImage = state.queued = null;
  state.gen += 1; // an answer still on its way is for the cleared drawing: dropped
  $("photo").hidden = true;
  showResult(null);
});

// ---- Photos: shrunk in the browser to at most 2 MP (a phone's 48 MP photo is ~20 MB; MyNet sees 28×28) ----
const MAX_PIXELS = 2_000_000;
async function shrinkPhoto(file, maxPixels = MAX_PIXELS) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return { blob: file, size: "as is" }; // a format this browser cannot decode: the server may
  }
  const { width: w, height: h } = bitmap;
  if (w * h <= maxPixels) {
    bitmap.close();
    return { blob: file, size: `${w}×${h}` };
  }
  const s = Math.sqrt(maxPixels / (w * h));
  const W = Math.max(1, Math.floor(w * s)), H = Math.max(1, Math.floor(h * s));
  const canvas = el("canvas", { width: W, height: H });
  canvas.getContext("2d").drawImage(bitmap, 0, 0, W, H);
  bitmap.close();
  const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
  return { blob, size: `${W}×${H}` };
}

async function usePhoto(file) {
  if (!file) return;
  readPad.clear(); // the photo replaces the drawing: no old strokes beside the photo's result
  state.gen += 1; // a drawing's answer still on its way is not the photo's
  const img = $("photo");
  const { blob, size } = await shrinkPhoto(file);
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  img.dataset.sent = size;
  predict(blob);
}
$("upload").addEventListener("click", (e) => { e.target.value = ""; }); // choosing the same photo again reads it
$("upload").addEventListener("change", (e) => usePhoto(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("dragging");
  usePhoto([...e.dataTransfer.files].find((f) => f.type.startsWith("image/")));
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item && !$("panel-read").hidden) usePhoto(item.getAsFile());
});
$("multi").addEventListener("change", () => state.lastImage && predict(state.lastImage));

// ---- Prediction: one request at a time; the newest image waits, older ones are dropped ----
async function predict(blob, t0 = performance.now()) {
  state.lastImage = blob;
  if (state.busy) { state.queued = [blob, t0]; return; }
  state.busy = true;
  const gen = state.gen;
  try {
    const onMap = mapReady() && !$("multi").checked;
    const answer = await postImage(withRun(q("/api/predict?features=1", { multi: $("multi").checked ? 1 : "", map: onMap ? 1 : "" })), blob);
    if (gen !== state.gen) return;
    showResult(answer);
    $("prediction").dataset.ms = (performance.now() - t0).toFixed(1); // stroke end → shown (bench_serve --browser)
    if (answer.map) markOnMap(answer.map);
    notice("");
  } catch (err) {
    if (gen === state.gen) {
      showResult(null);
      notice(err.message, true);
    }
  } finally {
    state.busy = false;
    const next = state.queued;
    state.queued = null;
    if (next) predict(...next);
  }
}

// A reading (predict's answer, or a test image's) drawn into a view's elements: Read, Epochs, a mistake's detail.
const READ_VIEW = { prediction: "prediction", quick: "quick", bars: "probabilities", input: "model-input", caption: "seen-caption", conv1: "conv1", conv2: "conv2" };
function renderReading(a, view) {
  const shown = $(view.prediction);
  shown.textContent = a ? a.text : "";
  if (view.quick) $(view.quick).textContent = shown.textContent;
  shown.style.fontSize = ""; // a number of 8 digits on a phone is wider than the card: shrunk to fit, not cut off
  if (shown.scrollWidth > shown.clientWidth) {
    shown.style.fontSize = `${(parseFloat(getComputedStyle(shown).fontSize) * 0.95 * shown.clientWidth) / shown.scrollWidth}px`;
  }
  const bars = $(view.bars);
  bars.replaceChildren();
  const rows = !a ? [] : a.probabilities
    ? a.probabilities.map((p, d) => [String(d), p, d === a.prediction])
    : a.digits.map((g, k) => [`#${k + 1}: ${g.prediction}`, Math.max(...g.probabilities), false]);
  for (const [label, p, top] of rows) bars.append(bar(label, p, top));
  if (view.caption) {
    const n = a && a.digits ? a.digits.length : 1;
    $(view.caption).textContent = `what the model saw: ${n > 1 ? `${n} inputs of ` : ""}28×28, white ink on black, as MNIST`;
  }
  const map = (f) => (f && typeof f === "object" ? f.png : f);
  for (const [id, src] of [[view.input, a && a.input_png], [view.conv1, a && a.features && map(a.features.conv1)],
    [view.conv2, a && a.features && map(a.features.conv2)]]) {
    if (!id) continue;
    $(id).hidden = !src;
    if (src) $(id).src = src;
  }
}
const showResult = (a) => renderReading(a, READ_VIEW);

function bar(label, p, top) {
  const row = document.createElement("div");
  row.className = top ? "bar top" : "bar";
  row.setAttribute("role", "listitem");
  const name = document.createElement("span");
  name.textContent = label;
  const track = document.createElement("div");
  track.className = "track";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${(100 * p).toFixed(1)}%`;
  track.append(fill);
  const pct = document.createElement("span");
  pct.className = "pct";
  pct.textContent = `${(100 * p).toFixed(1)} %`;
  row.append(name, track, pct);
  row.setAttribute("aria-label", `${label}: ${(100 * p).toFixed(1)} percent`);
  return row;
}

// ---- Checkpoint switcher (MyNet runs; the generative ones have the Generate tab's own picker) ----
$("checkpoint").addEventListener("change", (e) => {
  state.run = e.target.value;
  state.model = null;
  if (!$("panel-model").hidden) loadModel();
  if (state.lastImage) predict(state.lastImage);
  for (const t of ["map", "mistakes", "epochs"]) if (visible(t)) onShow[t]();
});

function fillSwitcher(listing) {
  const select = $("checkpoint");
  const keep = select.value;
  select.replaceChildren(new Option(listing.default ? `served: ${listing.default}` : "none yet", ""));
  for (const r of listing.runs) if (r.checkpoint && isMynet(r)) select.append(new Option(r.name, r.name));
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
}

async function listRuns() {
  const listing = await api("/api/runs");
  state.listing = listing;
  fillSwitcher(listing);
  return listing;
}

// A run picker holding the runs that pass `keep`, keeping the chosen one if it is still there.
function fillPicker(select, runs, prefer) {
  const keep = select.value || prefer;
  select.replaceChildren(...runs.map((r) => new Option(GENERATIVE.includes(r.model) ? `${r.name} (${r.model})` : r.name, r.name)));
  if (runs.some((r) => r.name === keep)) select.value = keep;
  return runs.find((r) => r.name === select.value) || null;
}

// ---- Model: layers, kernels, then the test-set views (computed by the server on first request) ----
async function loadModel() {
  if (state.model === state.run) return;
  const run = (state.model = state.run);
  try {
    const m = await api(withRun("/api/model"));
    if (state.model !== run) return; // another checkpoint was chosen while this answer was on its way: stale
    const body = $("layers").tBodies[0];
    body.replaceChildren();
    for (const l of m.layers) body.append(tr([l.name, l.shape.join(" × "), l.parameters ? l.parameters.toLocaleString("en") : ""]));
    body.append(tr(["total", "", m.parameters.toLocaleString("en")]));
    const c = m.classic;
    $("classic").textContent = `A fully-connected layer giving the same first-layer activations (${c.inputs} inputs → ` +
      `${c.outputs.toLocaleString("en")} outputs) needs ${c.parameters.toLocaleString("en")} parameters; conv1 needs ` +
      `${c.conv1_parameters}: each 3×3 kernel is shared across the image.`;
    drawFilters(m.filters);
  } catch (err) {
    if (state.model !== run) return;
    state.model = null;
    notice(err.message, true);
    return;
  }
  $("accuracy").textContent = "Evaluating on the test set…";
  try {
    const e = await api(withRun("/api/model/evaluation"));
    if (state.model === run) showEvaluation(e); // the first evaluation takes seconds: the choice may have changed
  } catch (err) {
    if (state.model === run) $("accuracy").textContent = err.message;
  }
}
onShow.model = loadModel;

function tr(cells, tag = "td", numeric = (k) => k > 0) {
  const row = document.createElement("tr");
  cells.forEach((text, k) => {
    const cell = document.createElement(tag);
    cell.textContent = text;
    if (numeric(k)) cell.className = "num";
    row.append(cell);
  });
  return row;
}

function drawFilters(filters) {
  const canvas = $("filters");
  const g = canvas.getContext("2d");
  const vmax = Math.max(...filters.flat(2).map(Math.abs)) || 1;
  const cell = 12, gap = 2, size = 3 * cell;
  g.clearRect(0, 0, canvas.width, canvas.height);
  filters.forEach((k, n) => {
    const x0 = (n % 8) * (size + 14), y0 = Math.floor(n / 8) * (size + 14);
    k.forEach((row, i) => row.forEach((v, j) => {
      g.fillStyle = diverging(v / vmax);
      g.fillRect(x0 + j * cell, y0 + i * cell, cell - gap / 2, cell - gap / 2);
    }));
  });
}
function diverging(t) { // -1 blue … 0 white … 1 red
  const a = Math.min(1, Math.abs(t));
  const [r, g, b] = t >= 0 ? [255, 255 - 190 * a, 255 - 200 * a] : [255 - 200 * a, 255 - 150 * a, 255];
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

// The confusion matrix, rows true, columns predicted; onCell(t, p, count) makes each count a button.
function confusionTable(table, confusion, onCell) {
  table.replaceChildren(tr(["true ↓ pred →", ..."0123456789"], "th"));
  const max = Math.max(...confusion.flat());
  confusion.forEach((row, i) => {
    const r = tr([String(i), ...row.map(String)]);
    row.forEach((v, j) => {
      const cell = r.cells[j + 1];
      const a = v ? Math.log10(v + 1) / Math.log10(max + 1) : 0;
      cell.style.backgroundColor = i === j ? `rgba(43,108,176,${a})` : v ? `rgba(180,35,24,${0.2 + 0.8 * a})` : "";
      if (a > 0.6) cell.classList.add("dark");
      if (onCell && v) {
        cell.replaceChildren(el("button", {
          type: "button", class: "cell", text: String(v), "data-cell": `${i},${j}`,
          "aria-label": `${v} test images of a ${i} read as ${j}`, onclick: () => onCell(i, j, v),
        }));
      }
    });
    table.append(r);
  });
}

function showEvaluation(e) {
  $("accuracy").textContent = `Accuracy ${(100 * e.accuracy).toFixed(2)} % on ${e.n.toLocaleString("en")} test ` +
    `images (${e.misclassified} wrong), average loss ${e.loss.toFixed(4)}.`;
  confusionTable($("confusion"), e.confusion);
  const gallery = $("failures");
  gallery.replaceChildren();
  for (const f of e.failures) {
    const fig = document.createElement("figure");
    const img = new Image();
    img.src = f.png;
    img.alt = `test image ${f.index}: a ${f.label} read as ${f.prediction}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `${f.label} → ${f.prediction} (${f.confidence.toFixed(2)})`;
    fig.append(img, cap);
    gallery.append(fig);
  }
  if (!e.failures.length) gallery.textContent = "No misclassified test digit.";
}

// ---- Runs: listing, then the chosen run's curves, polled from the byte offset of the last answer ----
const ACTIVE = ["training", "stopping"];
async function loadRuns() {
  clearTimeout(state.listPoll);
  let listing;
  try {
    listing = await listRuns();
  } catch (err) {
    return notice(err.message, true);
  }
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  for (const r of listing.runs) body.append(runRow(r));
  if (!listing.runs.length) body.append(tr([listing.hint || "No runs yet: train one with `mnistcnn train`."]));
  if (!state.chartRun && listing.runs.length) chooseRun((listing.runs.find((r) => r.name === listing.default) || listing.runs.at(-1)).name);
  // the run this page started, stopped or resumed: one line when it settles
  const settled = listing.runs.find((r) => r.name === state.watch && r.state && !ACTIVE.includes(r.state));
  if (settled) {
    state.watch = null;
    notice(settled.state === "stopped" && settled.resumable ? `${settled.name} stopped at epoch ${settled.epochs_done}/${settled.epochs}, saved in last.pt: Resume continues from there.`
      : `${settled.name} ${settled.state}${settled.message ? `: ${settled.message}` : "."}`, settled.state === "failed");
  }
  // a run started from the page changes state (training → stopping → stopped, finished, failed): watched
  if (listing.runs.some((r) => ACTIVE.includes(r.state)) && visible("runs")) state.listPoll = setTimeout(loadRuns, 1500);
}

function runRow(r) {
  const c = r.config || {};
  const from = typeof c.recipe === "string" ? c.recipe.split("/").pop() : null; // "fast", or a file's name
  const kind = isMynet(r) ? null : r.model;
  const recipe = [kind, from !== kind && from, c.optimizer, c.lr && `lr ${c.lr}`, c.batch_size && `batch ${c.batch_size}`, c.activation].filter(Boolean).join(", ");
  const acc = r.test_acc != null ? `${(100 * r.test_acc).toFixed(2)} %`
    : r.test_loss != null && r.model !== "gan" && r.state !== "training" ? `loss ${r.test_loss.toPrecision(4)}` // a GAN's is D's
    : r.state && r.state !== "finished" ? r.state : r.training ? "training…" : "–";
  const row = tr([r.name, recipe, `${r.epochs_done}/${r.epochs ?? "?"}`, acc, ""], "td", (k) => k === 2 || k === 3);
  row.dataset.state = r.state || "";
  if (r.message) row.cells[3].title = r.message;
  const cell = row.cells[4];
  const button = (text, label, onclick) => el("button", { type: "button", text, "aria-label": label, onclick });
  cell.append(button("Show curves", `Show the curves of run ${r.name}`, () => chooseRun(r.name)));
  if (r.state === "training") cell.append(button("Stop", `Stop run ${r.name}`, () => runAction(r.name, "stop")));
  if (r.resumable) cell.append(button("Resume", `Resume run ${r.name}`, () => runAction(r.name, "resume")));
  row.classList.toggle("selected", r.name === state.chartRun);
  return row;
}

async function runAction(name, action) {
  try {
    await postJSON(`/api/runs/${encodeURIComponent(name)}/${action}`, {});
    notice(action === "stop" ? `Stopping ${name}: it saves last.pt first.` : `Resumed ${name}.`);
    state.watch = name;
    if (action === "resume") { state.freshRun = name; chooseRun(name); }
  } catch (err) {
    notice(err.message, true);
  }
  loadRuns();
}
onShow.runs = loadRuns;

function chooseRun(name) {
  stopPolling();
  state.chartRun = name;
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.cells[0].textContent === name);
  $("chart-title").textContent = `Loss curve — ${name}`;
  const series = { offset: 0, batches: [], epochs: [], tests: [] };
  const tick = async () => {
    try {
      const m = await api(`/api/runs/${encodeURIComponent(name)}/metrics?after=${series.offset}`);
      if (state.chartRun !== name) return; // another run was chosen while this answer was on its way: stale
      if (m.reset) Object.assign(series, { batches: [], epochs: [], tests: [] });
      for (const r of m.records) {
        if (r.type === "batch") series.batches.push(r);
        else if (r.type === "epoch") series.epochs.push(r);
        else if (r.type === "test") series.tests.push(r); // a generative run tests a loss, no accuracy
      }
      series.offset = m.offset;
      if (m.records.length || m.reset || !series.drawn) drawChart(series);
      if (m.records.some((r) => r.type !== "batch")) loadRuns(); // an epoch ended: the table's row changed
    } catch (err) {
      if (state.freshRun !== name) notice(err.message, true); // a run just started has no folder for a moment
    }
    if (state.chartRun === name && !$("panel-runs").hidden) state.poll = setTimeout(tick, 1000);
  };
  tick();
}
function stopPolling() { clearTimeout(state.poll); state.poll = null; }
function drawChart(s) {
  s.drawn = true;
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 900, h = Math.round(Math.max(w * 0.46, 300)); // a phone: room for both panels
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const steps = s.batches.map((r) => r.step), losses = s.batches.map((r) => r.loss);
  const split = Math.round(h * 0.62);
  const fg = getComputedStyle(document.body).color;
  panel(g, { x: 64, y: 10, w: w - 78, h: split - 40 }, steps, [
    { ys: losses, color: "rgba(43,108,176,.3)", width: 1, label: "batch loss" },
    { ys: movingAverage(losses, Math.max(1, Math.min(500, Math.floor(losses.length / 50)))), color: "#2b6cb0", width: 2, label: "moving average" },
  ], fg, "loss", "step");
  const ep = s.epochs.map((r) => r.epoch), test = s.tests.at(-1);
  // a classifier's epochs: accuracy; a generative run's (ae, vae, cvae, gan): its epoch loss, lower is better
  const what = s.epochs.some((r) => r.train_acc != null) || test?.test_acc != null ? "acc" : "loss";
  const name = what === "acc" ? "accuracy" : "epoch loss";
  const lines = [{ ys: s.epochs.map((r) => r[`train_${what}`]), color: "#1f7a3a", width: 2, label: `train ${name}`, dots: true }];
  if (s.epochs.some((r) => r[`val_${what}`] != null)) lines.push({ ys: s.epochs.map((r) => r[`val_${what}`]), color: "#b7791f", width: 2, label: `validation ${name}`, dots: true });
  const value = test?.[`test_${what}`];
  const shown = value == null ? null : what === "acc" ? `${(100 * value).toFixed(2)} %` : value.toPrecision(4);
  const who = test?.test_d_real != null ? "D " : ""; // a GAN: its epoch and test losses are the discriminator's
  const mark = shown && { value, label: `test ${who}${shown}` };
  panel(g, { x: 64, y: split, w: w - 78, h: h - split - 30 }, ep, lines, fg, what === "acc" ? "accuracy" : "loss", "epoch", mark);
  canvas.dataset.points = String(s.batches.length);
  canvas.dataset.epochs = String(s.epochs.length);
  $("chart-caption").textContent = `${s.batches.length.toLocaleString("en")} batch losses, ${s.epochs.length} epoch(s)` +
    (shown ? `; test ${what === "acc" ? "accuracy" : `${who}loss`} ${shown}` : test ? "; tested" : "; still training or stopped early");
}

function movingAverage(v, n) {
  const out = [];
  let acc = 0;
  v.forEach((x, i) => { acc += x; if (i >= n) acc -= v[i - n]; out.push(acc / Math.min(i + 1, n)); });
  return out;
}

function panel(g, box, xs, lines, fg, name, xName, test) {
  g.strokeStyle = g.fillStyle = fg;
  g.font = "12px system-ui, sans-serif";
  g.lineWidth = 1;
  g.strokeRect(box.x, box.y, box.w, box.h);
  const all = lines.flatMap((l) => l.ys).filter((v) => v != null).concat(test ? [test.value] : []);
  if (!xs.length || !all.length) {
    g.fillText(`no ${name} yet`, box.x + 10, box.y + 20);
    return;
  }
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-9) { const pad = Math.max(Math.abs(lo) * 0.05, 1e-3); lo -= pad; hi += pad; } // one value: an accuracy stays near itself
  const x0 = xName === "epoch" ? 0 : Math.min(...xs), x1 = Math.max(...xs, x0 + 1); // epoch 0: before training
  // the data inside the frame, clear of its edges (whole dots) and below a band for the legend
  const left = box.x + 6, right = box.x + box.w - 6, top = box.y + 28, bottom = box.y + box.h - 6;
  const X = (x) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const Y = (y) => bottom - ((y - lo) / (hi - lo)) * (bottom - top);
  g.textAlign = "right";
  let digits = 3; // enough that the two ends read differently (201.8 and 202.3, not 202 and 202)
  while (digits < 7 && hi.toPrecision(digits) === lo.toPrecision(digits)) digits++;
  g.fillText(hi.toPrecision(digits), box.x - 6, top + 4);
  g.fillText(lo.toPrecision(digits), box.x - 6, bottom + 4);
  g.fillText(name, box.x - 6, box.y + box.h / 2);
  g.fillText(String(x1), box.x + box.w, box.y + box.h + 14);
  g.textAlign = "center";
  g.fillText(xName, box.x + box.w / 2, box.y + box.h + 14);
  g.textAlign = "left";
  g.fillText(String(x0), box.x, box.y + box.h + 14);
  let key = box.x + 10; // the legend: a swatch in the line's colour, the name in the text colour (readable)
  const legend = (color, label) => {
    g.fillStyle = color;
    g.fillRect(key, box.y + 10, 14, 4);
    g.fillStyle = fg;
    g.fillText(label, key + 18, box.y + 16);
    key += 18 + g.measureText(label).width + 16;
  };
  lines.forEach((l) => {
    g.strokeStyle = g.fillStyle = l.color;
    g.lineWidth = l.width;
    g.beginPath();
    l.ys.forEach((y, i) => (i ? g.lineTo(X(xs[i]), Y(y)) : g.moveTo(X(xs[i]), Y(y))));
    g.stroke();
    if (l.dots) l.ys.forEach((y, i) => { g.beginPath(); g.arc(X(xs[i]), Y(y), 3.5, 0, 7); g.fill(); });
    legend(l.color, l.label);
  });
  if (test) {
    g.fillStyle = "#b42318";
    g.beginPath();
    g.arc(X(x1), Y(test.value), 5, 0, 7);
    g.fill();
    legend("#b42318", test.label);
  }
}

// ---- Generate: the generative runs (ae, vae, cvae, gan) ----
const G = { run: null, token: 0, sources: {}, arith: {}, seed: 0 };
const genRun = () => G.run && G.run.name;
const genQ = (path, params = {}) => q(path, { run: genRun(), ...params });

async function loadGenerate() {
  let listing;
  try {
    listing = await listRuns();
  } catch (err) {
    return notice(err.message, true);
  }
  const runs = listing.runs.filter((r) => GENERATIVE.includes(r.model) && r.checkpoint);
  const chosen = fillPicker($("gen-run"), runs);
  $("gen-none").hidden = runs.length > 0;
  $("gen-run").disabled = !runs.length;
  if (!chosen) {
    G.run = null;
    for (const card of $("panel-generate").querySelectorAll(":scope > [data-kinds]")) card.hidden = true;
    return;
  }
  if (!G.run || G.run.name !== chosen.name) useGenerative(chosen);
}
onShow.generate = loadGenerate;
$("gen-run").addEventListener("change", (e) => {
  const r = state.listing.runs.find((x) => x.name === e.target.value);
  if (r) useGenerative(r);
});

function useGenerative(r) {
  G.run = r;
  G.token += 1;
  const kind = r.model;
  for (const node of $("panel-generate").querySelectorAll("[data-kinds]")) node.hidden = !node.dataset.kinds.split(" ").includes(kind);
  $("gen-kind").textContent = {
    ae: "an autoencoder: it codes and decodes, it has no prior to sample from",
    vae: "a variational autoencoder: codes, decodes and samples",
    cvae: "a conditional VAE: your style, any digit",
    gan: "a conditional GAN: samples of any digit",
  }[kind];
  genPad.clear();
  $("handwriting").replaceChildren();
  $("style-read").textContent = "Draw a digit: the model writes 0–9 in its style.";
  setupSources(kind);
  loadLatent();
  if (kind === "gan") { newSamples(); loadProgress(r.name, $("gan-epoch"), $("gan-epoch-value"), $("gan-progress")); }
  else setupArithmetic();
}

// Your digit: a pad (the Read pad's code) or an image; the cvae writes 0–9 in its style at each stroke's end
const genPad = makePad($("gen-pad"), (blob) => yourDigit(blob));
$("gen-clear").addEventListener("click", () => { genPad.clear(); $("handwriting").replaceChildren(); });
$("gen-upload").addEventListener("click", (e) => { e.target.value = ""; });
$("gen-upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  genPad.clear();
  yourDigit((await shrinkPhoto(file)).blob);
});
function yourDigit(blob) {
  G.yours = blob;
  if (G.run && G.run.model === "cvae") style(blob);
  for (const w of ["a", "b"]) if (G.sources[w] && G.sources[w].from === "pad") setSource(w, "pad");
}
const style = latestOnly(async (blob) => {
  const token = G.token;
  const a = await postImage(genQ("/api/style"), blob);
  if (token !== G.token) return;
  $("handwriting").replaceChildren(...a.images.map((src, d) => picture(src, `digit ${d} in your style`, "digit")));
  $("style-read").textContent = `Read as a ${a.digit}; here is every digit in that hand:`;
});

// Morph: two sources (the pad, a file, a random test digit; for a gan two digits), the decoded path between them
function setupSources(kind) {
  G.sources = {};
  for (const [w, seed, digit] of [["a", 1, 1], ["b", 2, 7]]) {
    const box = $(`src-${w}`);
    box.replaceChildren(el("legend", { text: w === "a" ? "from" : "to" }));
    if (kind === "gan") {
      const select = el("select", { id: `src-${w}-digit`, "data-testid": `src-${w}-digit`, "aria-label": `${w === "a" ? "from" : "to"} digit` });
      digitOptions(select);
      select.value = String(digit);
      select.addEventListener("change", () => { G.sources[w] = { digit: +select.value }; morph(); });
      box.append(el("label", { text: "digit " }, select));
      G.sources[w] = { digit };
      continue;
    }
    const thumb = el("img", { id: `src-${w}-img`, class: "thumb", alt: "", hidden: true });
    const file = el("input", { type: "file", accept: "image/*", class: "sr-only", id: `src-${w}-file` });
    file.addEventListener("click", () => { file.value = ""; });
    file.addEventListener("change", async () => {
      if (!file.files[0]) return;
      G.sources[w] = { png: await pngDataUrl(file.files[0]), from: "file" };
      thumb.src = G.sources[w].png;
      thumb.hidden = false;
      morph();
    });
    box.append(thumb,
      el("button", { type: "button", text: "the pad", onclick: () => setSource(w, "pad") }),
      el("button", { type: "button", text: "a random test digit", "data-testid": `src-${w}-random`, onclick: () => setSource(w, "random") }),
      el("label", { class: "button", htmlFor: `src-${w}-file`, text: "an image…" }), file);
    G.sources[w] = { seed };
    setSource(w, "random", true);
  }
  if (kind === "gan") morph();
}

async function setSource(w, from, first) {
  const token = G.token, thumb = $(`src-${w}-img`);
  if (from === "pad") {
    if (!genPad.inked()) return notice("Draw a digit on the pad first.", true);
    G.sources[w] = { png: genPad.canvas.toDataURL("image/png"), from };
    thumb.src = G.sources[w].png;
  } else {
    const seed = first ? G.sources[w].seed : (G.sources[w].seed || 0) + 2;
    const t = (await api(q("/api/test", { n: 1, seed }))).images[0];
    if (token !== G.token) return;
    G.sources[w] = { index: t.index, seed, from };
    thumb.src = t.png;
    thumb.alt = `test image ${t.index}, a ${t.label}`;
  }
  thumb.hidden = false;
  if (G.sources.a && G.sources.b && (G.sources.a.index != null || G.sources.a.png) && (G.sources.b.index != null || G.sources.b.png)) morph();
}

async function pngDataUrl(file) { // an image of any size and format as a PNG of at most 1 MP
  const bitmap = await createImageBitmap(file);
  const s = Math.min(1, Math.sqrt(1e6 / (bitmap.width * bitmap.height)));
  const c = el("canvas", { width: Math.max(1, Math.round(bitmap.width * s)), height: Math.max(1, Math.round(bitmap.height * s)) });
  c.getContext("2d").drawImage(bitmap, 0, 0, c.width, c.height);
  bitmap.close();
  return c.toDataURL("image/png");
}

const morph = latestOnly(async () => {
  const token = G.token;
  const src = (s) => (s.digit != null ? { digit: s.digit } : s.png ? { png: s.png } : { index: s.index });
  const a = await postJSON(genQ("/api/interpolate"), { a: src(G.sources.a), b: src(G.sources.b), steps: 10, seed: 0 });
  if (token !== G.token) return;
  const strip = (node, images, what) => node.replaceChildren(...images.map((p, k) => picture(p, `${what}, step ${k + 1} of ${images.length}`, "digit")));
  strip($("morph"), a.images, "decoded path");
  strip($("morph-pixels"), a.pixels || [], "pixel cross-fade");
});

// Latent map: the test codes as dots; pressing and dragging decodes the point under the pointer, live
const L = { data: null, dots: null, pending: null, inFlight: false, frame: 0, down: false };
async function loadLatent() {
  const token = G.token, canvas = $("latent-map");
  L.data = null;
  $("latent-digit").hidden = true;
  canvas.dataset.frames = "0";
  const a = await api(genQ("/api/latent")).catch((err) => notice(err.message, true));
  if (!a || token !== G.token) return;
  L.data = a;
  $("latent-axes").textContent = `axes ${a.axes}, ±${a.extent}`;
  $("latent-digit-label").hidden = !a.conditional;
  digitOptions($("latent-class"));
  drawLatent();
  legend($("latent-legend"), a.points.label.length > 0);
  decodeAt(0, 0);
}
function drawLatent(marker) {
  const canvas = $("latent-map"), a = L.data;
  if (!a) return;
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth || 320;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = canvas.height = Math.round(w * dpr); L.dots = null; }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (!L.dots) { // the dots drawn once, then copied under each marker
    g.fillStyle = getComputedStyle(canvas).backgroundColor;
    g.fillRect(0, 0, w, w);
    g.strokeStyle = "rgba(127,127,127,.35)";
    g.beginPath();
    g.moveTo(w / 2, 0); g.lineTo(w / 2, w); g.moveTo(0, w / 2); g.lineTo(w, w / 2);
    g.stroke();
    const { x, y, label } = a.points;
    for (let i = 0; i < label.length; i++) {
      const [px, py] = latentToPx(x[i], y[i], w);
      g.fillStyle = COLOURS[label[i]];
      g.fillRect(px - 1.5, py - 1.5, 3, 3);
    }
    if (!label.length) {
      g.fillStyle = getComputedStyle(document.body).color;
      g.font = "12px system-ui, sans-serif";
      g.fillText("a GAN codes no test digits:", 8, 18);
      g.fillText("drag through its noise", 8, 34);
    }
    L.dots = g.getImageData(0, 0, canvas.width, canvas.height);
  } else {
    g.putImageData(L.dots, 0, 0);
  }
  if (marker) {
    const [px, py] = latentToPx(marker[0], marker[1], w);
    g.strokeStyle = "#000";
    g.fillStyle = "#fff";
    g.lineWidth = 2;
    g.beginPath();
    g.arc(px, py, 6, 0, 7);
    g.fill();
    g.stroke();
  }
}
const latentToPx = (u, v, w) => [((u / L.data.extent + 1) / 2) * w, ((1 - v / L.data.extent) / 2) * w];
function pxToLatent(e) {
  const r = $("latent-map").getBoundingClientRect(), E = L.data.extent;
  const clamp = (t) => Math.max(-E, Math.min(E, t));
  return [clamp((((e.clientX - r.left) / r.width) * 2 - 1) * E), clamp((1 - ((e.clientY - r.top) / r.height) * 2) * E)];
}
function decodeAt(u, v) {
  L.last = [u, v];
  L.pending = [u, v];
  if (!L.frame) L.frame = requestAnimationFrame(sendDecode);
}
async function sendDecode() {
  L.frame = 0;
  if (L.inFlight || !L.pending || !L.data) return;
  const [u, v] = L.pending, token = G.token, t0 = performance.now();
  L.pending = null;
  L.inFlight = true;
  drawLatent([u, v]);
  try {
    const digit = L.data.conditional ? $("latent-class").value : "";
    const a = await api(genQ("/api/latent/decode", { u: u.toFixed(3), v: v.toFixed(3), digit }));
    if (token !== G.token) return;
    const img = $("latent-digit"), canvas = $("latent-map");
    img.src = a.image;
    img.hidden = false;
    img.alt = `the digit decoded at (${u.toFixed(2)}, ${v.toFixed(2)})`;
    canvas.dataset.frames = String(+canvas.dataset.frames + 1);
    canvas.dataset.ms = (performance.now() - t0).toFixed(1); // the last frame: request → shown
  } catch (err) {
    notice(err.message, true);
  } finally {
    L.inFlight = false;
    if (L.pending && !L.frame) L.frame = requestAnimationFrame(sendDecode); // the newest point, next frame
  }
}
const latentCanvas = $("latent-map");
latentCanvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 || !L.data) return;
  L.down = true;
  latentCanvas.setPointerCapture(e.pointerId);
  decodeAt(...pxToLatent(e));
});
latentCanvas.addEventListener("pointermove", (e) => { if (L.down) decodeAt(...pxToLatent(e)); });
for (const ev of ["pointerup", "pointercancel"]) latentCanvas.addEventListener(ev, () => { L.down = false; });
$("latent-class").addEventListener("change", () => L.data && decodeAt(...(L.last || [0, 0])));

function legend(box, shown) {
  box.hidden = !shown;
  box.replaceChildren(...COLOURS.map((c, d) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = c;
    return el("span", {}, swatch, String(d));
  }));
}

// GAN: samples of a digit (or all ten) with a new seed per press; the fixed noise across the epochs
digitOptions($("gan-digit"), ["", "all"]);
$("gan-digit").addEventListener("change", () => newSamples(G.seed));
$("gan-new").addEventListener("click", () => newSamples(Math.floor(Math.random() * 1e6)));
const newSamples = latestOnly(async (seed = 0) => {
  const token = G.token, digit = $("gan-digit").value;
  G.seed = seed;
  const a = await api(genQ("/api/generate", { digit, n: 30, seed }));
  if (token !== G.token) return;
  $("samples").replaceChildren(...a.images.map((p, k) => picture(p, `sample ${k + 1}${a.digit != null ? ` of a ${a.digit}` : `, a ${k % 10}`}`, "digit")));
  $("gan-seed").textContent = `seed ${a.seed}`;
});

// The samples of fixed noise after each epoch of a gan, on a slider (Generate and Epochs both show them).
async function loadProgress(name, slider, label, img) {
  const a = await api(`/api/runs/${encodeURIComponent(name)}/progress`).catch((err) => notice(err.message, true));
  if (!a) return null;
  slider.max = Math.max(0, a.epochs.length - 1);
  slider.value = slider.max;
  slider.disabled = a.epochs.length < 2;
  const show = () => {
    const k = +slider.value;
    label.textContent = a.epochs.length ? String(a.epochs[k]) : "–";
    img.hidden = !a.images.length;
    if (a.images.length) { img.src = a.images[k]; img.alt = `the fixed-noise samples after epoch ${a.epochs[k]}`; }
  };
  slider.oninput = show;
  show();
  return a;
}

// Latent arithmetic: a − b + c, each a test image of a chosen digit ("another" picks the next one)
function setupArithmetic() {
  const box = $("arith-pickers");
  box.replaceChildren();
  for (const [w, digit, seed] of [["a", 7, 0], ["b", 7, 1], ["c", 2, 0]]) {
    const select = el("select", { id: `arith-${w}`, "data-testid": `arith-${w}`, "aria-label": `digit ${w}` });
    digitOptions(select);
    select.value = String(digit);
    G.arith[w] = { seed };
    select.addEventListener("change", () => pickArith(w));
    box.append(el("div", { class: "picker" }, el("label", { text: `${w} ` }, select),
      el("button", { type: "button", text: "another", "aria-label": `another ${w}`, onclick: () => { G.arith[w].seed += 1; pickArith(w); } })));
  }
  Promise.all(["a", "b", "c"].map((w) => pickArith(w, true))).then(arithmetic);
}
async function pickArith(w, quiet) {
  const token = G.token, digit = $(`arith-${w}`).value;
  const t = (await api(q("/api/test", { digit, n: 1, seed: G.arith[w].seed }))).images[0];
  if (token !== G.token) return;
  G.arith[w].index = t.index;
  if (!quiet) arithmetic();
}
const arithmetic = latestOnly(async () => {
  const token = G.token, [a, b, c] = ["a", "b", "c"].map((w) => G.arith[w].index);
  if ([a, b, c].some((i) => i == null)) return;
  const r = await api(genQ("/api/arithmetic", { a, b, c }));
  if (token !== G.token) return;
  const op = (t) => el("span", { class: "op", text: t, "aria-hidden": "true" });
  const [ia, ib, ic] = r.inputs.map((p, k) => picture(p, `${"abc"[k]}: a test ${r.labels[k]}`, "digit"));
  $("arithmetic").replaceChildren(ia, op("−"), ib, op("+"), ic, op("="), picture(r.image, "a − b + c, decoded", "digit result"));
});

// ---- Map: every test image placed by MyNet's features; hover for the digit; your digit as a star ----
const M = { run: null, data: null, sx: null, sy: null, star: null, hover: -1, cache: new Map(), loading: null };
// "" is the server's default run, which is the listing's default once it has arrived (it may come after the map)
const sameRun = (a, b) => (a || state.listing?.default || "") === (b || state.listing?.default || "");
const mapReady = () => !!M.data && sameRun(M.run, mynetRun());
async function loadMap() {
  const run = mynetRun();
  if (sameRun(M.run, run) && (M.data || M.loading)) return drawMap();
  M.run = run;
  M.data = M.star = null;
  $("map").dataset.pad = "";
  $("map-info").textContent = "Computing MyNet's features of the 10,000 test images (seconds, once per checkpoint)…";
  const loading = (M.loading = api(withRun("/api/map")));
  try {
    const a = await loading;
    if (M.loading !== loading) return;
    M.data = a;
    const wrong = a.pred.reduce((s, p, i) => s + (p !== a.label[i]), 0);
    $("map-info").textContent = `${a.n.toLocaleString("en")} test images, accuracy ${(100 * a.accuracy).toFixed(2)} % ` +
      `(${wrong} ringed: read wrong). Axes: the features' first two principal components, ` +
      `${(100 * a.explained[0]).toFixed(1)} % and ${(100 * a.explained[1]).toFixed(1)} % of their variance.`;
    legend($("map-legend"), true);
    drawMap();
  } catch (err) {
    if (M.loading === loading) $("map-info").textContent = err.message;
  } finally {
    if (M.loading === loading) M.loading = null;
  }
}
onShow.map = loadMap;

function drawMap() {
  const canvas = $("map"), a = M.data;
  if (!a || !visible("map")) return;
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth || 800, h = Math.round(Math.min(w * 0.72, 640));
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.height = `${h}px`;
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pts = M.star ? [...a.x, M.star[0]] : a.x, ptsY = M.star ? [...a.y, M.star[1]] : a.y;
  const [x0, x1] = [Math.min(...pts), Math.max(...pts)], [y0, y1] = [Math.min(...ptsY), Math.max(...ptsY)];
  const m = 12, sx = (w - 2 * m) / (x1 - x0 || 1), sy = (h - 2 * m) / (y1 - y0 || 1);
  M.px = (x) => m + (x - x0) * sx;
  M.py = (y) => h - m - (y - y0) * sy;
  M.sx = Float32Array.from(a.x, M.px);
  M.sy = Float32Array.from(a.y, M.py);
  const wrong = [];
  for (let i = 0; i < a.n; i++) {
    if (a.pred[i] !== a.label[i]) { wrong.push(i); continue; }
    g.fillStyle = COLOURS[a.label[i]];
    g.fillRect(M.sx[i] - 1.5, M.sy[i] - 1.5, 3, 3);
  }
  g.lineWidth = 1.2;
  g.strokeStyle = getComputedStyle(document.body).color;
  for (const i of wrong) { // the mistakes on top, ringed
    g.fillStyle = COLOURS[a.label[i]];
    g.beginPath();
    g.arc(M.sx[i], M.sy[i], 3.2, 0, 7);
    g.fill();
    g.stroke();
  }
  if (M.star) star(g, M.px(M.star[0]), M.py(M.star[1]));
}

function star(g, x, y) {
  g.beginPath();
  for (let k = 0; k < 10; k++) {
    const r = k % 2 ? 5 : 12, t = (Math.PI * k) / 5 - Math.PI / 2;
    g.lineTo(x + r * Math.cos(t), y + r * Math.sin(t));
  }
  g.closePath();
  g.fillStyle = "#000";
  g.strokeStyle = "#fff";
  g.lineWidth = 1.5;
  g.fill();
  g.stroke();
}
function markOnMap(xy) {
  M.star = xy;
  $("map").dataset.pad = `${xy[0].toFixed(4)},${xy[1].toFixed(4)}`;
  drawMap();
}

const mapPad = makePad($("map-pad"), (blob) => mapPredict(blob));
$("map-clear").addEventListener("click", () => { mapPad.clear(); $("map-reading").textContent = ""; });
const mapPredict = latestOnly(async (blob) => {
  const run = M.run;
  const a = await postImage(withRun("/api/predict?map=1"), blob);
  if (run !== M.run) return;
  $("map-reading").textContent = `MyNet reads ${a.text} (${(100 * Math.max(...a.probabilities)).toFixed(1)} %)`;
  if (a.map) markOnMap(a.map);
});

$("map").addEventListener("pointermove", (e) => hoverMap(e));
$("map").addEventListener("pointerdown", (e) => hoverMap(e));
$("map").addEventListener("pointerleave", () => { M.hover = -1; $("map-card").hidden = true; });
function hoverMap(e) {
  if (!M.data || !M.sx) return;
  const r = $("map").getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
  let best = -1, bestD = 36; // within 6 px
  for (let i = 0; i < M.sx.length; i++) {
    const d = (M.sx[i] - x) ** 2 + (M.sy[i] - y) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  if (best === M.hover) return;
  M.hover = best;
  const card = $("map-card");
  if (best < 0) { card.hidden = true; return; }
  card.style.left = `${Math.min(x + 14, r.width - 190)}px`;
  card.style.top = `${Math.max(0, Math.min(y + 14, r.height - 250))}px`;
  testImage(best).then((t) => {
    if (M.hover !== best) return;
    const wrong = t.prediction !== t.label;
    card.replaceChildren(picture(t.png, `test image ${t.index}, a ${t.label}`, "digit"),
      el("p", { class: wrong ? "bad" : "", text: `#${t.index}: a ${t.label}, read as ${t.prediction}` }),
      el("div", { class: "bars mini", role: "list" }, ...t.probabilities.map((p, d) => bar(String(d), p, d === t.prediction))));
    card.hidden = false;
  }).catch((err) => notice(err.message, true));
}
function testImage(index) { // answers kept: hovering over the same dots again asks nothing
  const key = `${M.run}|${index}`;
  if (!M.cache.has(key)) M.cache.set(key, api(withRun(`/api/test/${index}`)).catch((err) => { M.cache.delete(key); throw err; }));
  return M.cache.get(key);
}
window.addEventListener("resize", () => { drawMap(); L.dots = null; drawLatent(L.last); });

// ---- Mistakes: the confusion matrix's cells open their images; an image opens its features and neighbours ----
const X = { run: null, cell: null };
async function loadMistakes() {
  const run = mynetRun();
  if (X.run === run) return;
  X.run = run;
  $("mistakes-info").textContent = "Evaluating on the test set…";
  try {
    const e = await api(withRun("/api/model/evaluation"));
    if (X.run !== run) return;
    $("mistakes-info").textContent = `${e.misclassified} of ${e.n.toLocaleString("en")} test images read wrong. Pick a cell.`;
    confusionTable($("mistake-matrix"), e.confusion, openCell);
  } catch (err) {
    if (X.run === run) { $("mistakes-info").textContent = err.message; X.run = null; }
  }
}
onShow.mistakes = loadMistakes;

const openCell = latestOnly(async (t, p) => {
  const run = X.run;
  for (const b of $("mistake-matrix").querySelectorAll("button.cell")) b.classList.toggle("chosen", b.dataset.cell === `${t},${p}`);
  const a = await api(withRun(q("/api/mistakes", { true: t, pred: p })));
  if (run !== X.run) return;
  $("mistakes-title").textContent = `${a.count} test image${a.count === 1 ? "" : "s"} of a ${t} read as ${p}` +
    (a.count > a.images.length ? ` (the ${a.images.length} most confident)` : "");
  const pct = (x) => `${(100 * x).toFixed(0)} %`;
  $("mistakes").replaceChildren(...a.images.map((m) => {
    const top3 = m.probabilities.map((x, d) => [x, d]).sort((u, v) => v[0] - u[0]).slice(0, 3);
    return el("button", { type: "button", class: "shot", onclick: () => openDetail(m.index), "aria-label": `test image ${m.index}` },
      picture(m.png, `test image ${m.index}: a ${t} read as ${p} with ${pct(m.confidence)}`),
      el("span", { class: t === p ? "muted" : "bad", text: top3.map(([x, d]) => `${d}: ${pct(x)}`).join(", ") }));
  }));
});

const DETAIL_VIEW = { prediction: "detail-prediction", bars: "detail-bars", input: null, conv1: "detail-conv1", conv2: "detail-conv2" };
const openDetail = latestOnly(async (index) => {
  const run = X.run;
  const box = $("mistake-detail");
  box.hidden = false;
  $("detail-title").textContent = `Test image #${index} (finding its nearest training images: seconds the first time)…`;
  const t = await api(withRun(`/api/test/${index}?features=1&neighbours=8`));
  if (run !== X.run) return;
  $("detail-title").textContent = `Test image #${index}: a ${t.label}, read as ${t.prediction}`;
  $("detail-input").src = t.png;
  $("detail-input").alt = `test image ${index}, a ${t.label}`;
  renderReading({ ...t, text: String(t.prediction) }, DETAIL_VIEW);
  $("neighbours").replaceChildren(...(t.neighbours || []).map((n) => el("figure", {},
    picture(n.png, `training image ${n.index}, a ${n.label}`),
    el("figcaption", { text: `${n.label} · ${n.distance.toFixed(2)}` }))));
  box.scrollIntoView({ block: "nearest" });
});

// ---- Epochs: a digit replayed through a run's per-epoch snapshots (a gan: its samples per epoch) ----
const E = { run: null, epochs: [], image: null, kind: null };
const EPOCH_VIEW = { prediction: "epochs-prediction", bars: "epochs-bars", input: "epochs-input", conv1: "epochs-conv1", conv2: "epochs-conv2" };
async function loadEpochs() {
  let listing;
  try {
    listing = await listRuns();
  } catch (err) {
    return notice(err.message, true);
  }
  const runs = listing.runs.filter((r) => r.checkpoint && (isMynet(r) || r.model === "gan"));
  const chosen = fillPicker($("epochs-run"), runs, mynetRun());
  if (chosen && chosen.name !== E.run) useEpochs(chosen);
  else if (E.kind === "mynet" && state.lastImage && E.image !== state.lastImage) useImage(state.lastImage, "the Read pad's digit");
}
onShow.epochs = loadEpochs;
$("epochs-run").addEventListener("change", (e) => useEpochs(state.listing.runs.find((r) => r.name === e.target.value)));

async function useEpochs(r) {
  E.run = r.name;
  E.kind = isMynet(r) ? "mynet" : r.model;
  const gan = E.kind === "gan";
  for (const id of ["epochs-draw", "epochs-maps", "epochs-prediction", "epochs-bars"]) $(id).hidden = gan;
  $("epochs-input").hidden = true;
  $("epochs-progress").hidden = !gan;
  const slider = $("epoch-slider");
  if (gan) {
    $("epochs-title").textContent = "The same noise after the chosen epoch";
    const p = await loadProgress(r.name, slider, $("epoch-value"), $("epochs-progress"));
    $("epochs-none").hidden = !!(p && p.epochs.length);
    $("epochs-slide").hidden = !(p && p.epochs.length);
    return;
  }
  $("epochs-title").textContent = "The chosen epoch reads";
  const a = await api(`/api/runs/${encodeURIComponent(r.name)}/epochs`).catch((err) => notice(err.message, true));
  if (!a || E.run !== r.name) return;
  E.epochs = a.epochs;
  $("epochs-none").hidden = a.epochs.length > 0;
  $("epochs-slide").hidden = $("epochs-draw").hidden = !a.epochs.length;
  slider.max = Math.max(0, a.epochs.length - 1);
  slider.value = slider.max;
  slider.disabled = a.epochs.length < 2;
  slider.oninput = () => replay();
  $("epoch-value").textContent = a.epochs.length ? String(a.epochs.at(-1)) : "–";
  if (!a.epochs.length) return renderReading(null, EPOCH_VIEW);
  if (state.lastImage) return useImage(state.lastImage, "the Read pad's digit");
  const t = (await api(q("/api/test", { n: 1, seed: 0 }))).images[0]; // nothing drawn yet: a test digit
  useImage(dataUrlBlob(t.png), `test image #${t.index} (draw your own above)`);
}
function useImage(blob, what) {
  E.image = blob;
  $("epochs-source").textContent = `replaying ${what}`;
  replay();
}
const epochsPad = makePad($("epochs-pad"), (blob) => useImage(blob, "your digit"));
$("epochs-clear").addEventListener("click", () => epochsPad.clear());
const replay = latestOnly(async () => {
  if (!E.image || !E.epochs.length) return;
  const run = E.run, epoch = E.epochs[+$("epoch-slider").value];
  $("epoch-value").textContent = String(epoch);
  const a = await postImage(q("/api/predict?features=1", { run, epoch }), E.image);
  if (run !== E.run) return;
  renderReading(a, EPOCH_VIEW);
  $("epochs-prediction").dataset.epoch = String(epoch);
});

// ---- Train: a form over a recipe; a bad value is the server's one line, beside the field it names ----
const T = { recipes: [] };
async function loadTrain() {
  let a;
  try {
    a = await api("/api/train");
  } catch (err) {
    return notice(err.message, true);
  }
  T.recipes = a.recipes || [];
  const select = $("train-recipe"), keep = select.value;
  select.replaceChildren(...T.recipes.map((r) => new Option(`${r.name} (${r.model})`, r.name)));
  if (T.recipes.some((r) => r.name === keep)) select.value = keep;
  else {
    if (T.recipes.some((r) => r.name === a.default)) select.value = a.default;
    prefill();
  }
  $("train-fields").disabled = !a.allowed;
  $("train-why").hidden = a.allowed;
  $("train-why").textContent = a.allowed ? "" : a.why || "Training from the page is off.";
  $("train-active").textContent = a.active ? `Training now: ${a.active} (see Runs).` : "";
}
onShow.train = loadTrain;
function prefill() {
  const r = T.recipes.find((x) => x.name === $("train-recipe").value);
  if (!r) return;
  for (const k of ["epochs", "batch_size", "lr"]) $(`train-${k}`).value = r[k] ?? "";
  $("train-recipe-why").textContent = r.why || "";
  markInvalid(null);
}
$("train-recipe").addEventListener("change", prefill);
function markInvalid(field, message) {
  for (const input of $("train-form").querySelectorAll("input, select")) input.removeAttribute("aria-invalid");
  const error = $("train-error");
  error.hidden = !message;
  error.textContent = message || "";
  const input = field && $(`train-${field}`);
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "train-error");
    input.focus();
  }
}
$("train-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { recipe: $("train-recipe").value };
  for (const k of ["epochs", "batch_size", "lr"]) {
    const v = $(`train-${k}`).value.trim();
    if (v !== "") body[k] = Number(v);
  }
  if ($("train-keep_epochs").checked) body.keep_epochs = true;
  $("train-start").disabled = true;
  try {
    const a = await postJSON("/api/train", body);
    markInvalid(null);
    state.freshRun = state.watch = a.run;
    showTab("runs");
    chooseRun(a.run);
    notice(`Started ${a.run}.`);
  } catch (err) {
    markInvalid(err.body && err.body.field, err.message);
  } finally {
    $("train-start").disabled = false;
  }
});

// ---- Start: the listing fills the switcher and says how to train when there is no checkpoint ----
listRuns().then((listing) => {
  if (!listing.default) notice(listing.hint || "No checkpoint yet: train one with `mnistcnn train`, then reload.", true);
}).catch((err) => notice(err.message, true));
