// mnistcnn serve: the page. No build step, no libraries, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { run: "", lastImage: null, busy: false, queued: null, model: null, chartRun: null, poll: null, gen: 0 };

// ---- API ----
async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}
const withRun = (path) => (state.run ? `${path}${path.includes("?") ? "&" : "?"}run=${encodeURIComponent(state.run)}` : path);

function notice(text, isError) {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

// ---- Tabs (arrow keys move between them, as the ARIA tabs pattern) ----
const tabs = ["read", "model", "runs"];
function showTab(name) {
  for (const t of tabs) {
    const on = t === name;
    $(`tab-${t}`).setAttribute("aria-selected", on);
    $(`tab-${t}`).tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  if (name === "model") loadModel();
  if (name === "runs") loadRuns();
  else stopPolling();
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

// ---- Drawing pad: pointer events cover mouse, pen and touch ----
const pad = $("pad");
const ctx = pad.getContext("2d");
function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}
clearPad();
let drawing = false;
function padPoint(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}
pad.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return; // the left button, a pen's tip, a finger; not a right click
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  const [x, y] = padPoint(e);
  ctx.strokeStyle = ctx.fillStyle = "#fff";
  ctx.lineWidth = 22; // ~2.2 px of 28 when the digit fills the pad: MNIST's stroke
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(x, y);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = padPoint(e);
  ctx.lineTo(x, y);
  ctx.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  $("photo").hidden = true;
  const t0 = performance.now();
  pad.toBlob((blob) => predict(blob, t0), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", () => {
  clearPad();
  $("upload").value = ""; // the same photo can be chosen again
  state.lastImage = state.queued = null;
  state.gen += 1; // an answer still on its way is for the cleared drawing: dropped
  $("photo").hidden = true;
  showResult(null);
});

// ---- Photos: file input (a phone opens its camera), drag and drop, paste ----
function usePhoto(file) {
  if (!file) return;
  const img = $("photo");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  predict(file);
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
  if (item) usePhoto(item.getAsFile());
});
$("multi").addEventListener("change", () => state.lastImage && predict(state.lastImage));

// ---- Prediction: one request at a time; the newest image waits, older ones are dropped ----
async function predict(blob, t0 = performance.now()) {
  state.lastImage = blob;
  if (state.busy) { state.queued = [blob, t0]; return; }
  state.busy = true;
  const gen = state.gen;
  try {
    const multi = $("multi").checked ? "&multi=1" : "";
    const type = blob.type && blob.type.startsWith("image/") ? blob.type : "image/png";
    const answer = await api(withRun(`/api/predict?features=1${multi}`),
      { method: "POST", headers: { "Content-Type": type }, body: blob });
    if (gen !== state.gen) return;
    showResult(answer);
    $("prediction").dataset.ms = (performance.now() - t0).toFixed(1); // stroke end → shown (bench_serve --browser)
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

function showResult(a) {
  const shown = $("prediction");
  shown.textContent = $("quick").textContent = a ? a.text : "";
  shown.style.fontSize = ""; // a number of 8 digits on a phone is wider than the card: shrunk to fit, not cut off
  if (shown.scrollWidth > shown.clientWidth) {
    shown.style.fontSize = `${(parseFloat(getComputedStyle(shown).fontSize) * 0.95 * shown.clientWidth) / shown.scrollWidth}px`;
  }
  const bars = $("probabilities");
  bars.replaceChildren();
  const rows = !a ? [] : a.probabilities
    ? a.probabilities.map((p, d) => [String(d), p, d === a.prediction])
    : a.digits.map((g, k) => [`#${k + 1}: ${g.prediction}`, Math.max(...g.probabilities), false]);
  for (const [label, p, top] of rows) bars.append(bar(label, p, top));
  const n = a ? a.digits.length : 1;
  $("seen-caption").textContent = `what the model saw: ${n > 1 ? `${n} inputs of ` : ""}28×28, white ink on black, as MNIST`;
  for (const [id, src] of [["model-input", a && a.input_png], ["conv1", a && a.features && a.features.conv1.png],
    ["conv2", a && a.features && a.features.conv2.png]]) {
    $(id).hidden = !src;
    if (src) $(id).src = src;
  }
}

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

// ---- Checkpoint switcher ----
$("checkpoint").addEventListener("change", (e) => {
  state.run = e.target.value;
  state.model = null;
  if (!$("panel-model").hidden) loadModel();
  if (state.lastImage) predict(state.lastImage);
});

function fillSwitcher(listing) {
  const select = $("checkpoint");
  const keep = select.value;
  select.replaceChildren(new Option(listing.default ? `served: ${listing.default}` : "none yet", ""));
  for (const r of listing.runs) if (r.checkpoint) select.append(new Option(r.name, r.name));
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
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

function showEvaluation(e) {
  $("accuracy").textContent = `Accuracy ${(100 * e.accuracy).toFixed(2)} % on ${e.n.toLocaleString("en")} test ` +
    `images (${e.misclassified} wrong), average loss ${e.loss.toFixed(4)}.`;
  const table = $("confusion");
  table.replaceChildren(tr(["true ↓ pred →", ..."0123456789"], "th"));
  const max = Math.max(...e.confusion.flat());
  e.confusion.forEach((row, i) => {
    const r = tr([String(i), ...row.map(String)]);
    row.forEach((v, j) => {
      const cell = r.cells[j + 1];
      const a = v ? Math.log10(v + 1) / Math.log10(max + 1) : 0;
      cell.style.backgroundColor = i === j ? `rgba(43,108,176,${a})` : v ? `rgba(180,35,24,${0.2 + 0.8 * a})` : "";
      if (a > 0.6) cell.style.color = "#fff";
    });
    table.append(r);
  });
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
async function loadRuns() {
  let listing;
  try {
    listing = await api("/api/runs");
  } catch (err) {
    return notice(err.message, true);
  }
  fillSwitcher(listing);
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  for (const r of listing.runs) {
    const c = r.config || {};
    const from = typeof c.recipe === "string" ? c.recipe.split("/").pop() : null; // "fast", or a file's name
    const recipe = [from, c.optimizer, c.lr && `lr ${c.lr}`, c.batch_size && `batch ${c.batch_size}`, c.activation].filter(Boolean).join(", ");
    const acc = r.test_acc != null ? `${(100 * r.test_acc).toFixed(2)} %` : r.training ? "training…" : "–";
    const row = tr([r.name, recipe, `${r.epochs_done}/${r.epochs ?? "?"}`, acc, ""], "td", (k) => k === 2 || k === 3);
    const button = document.createElement("button");
    button.textContent = "Show curves";
    button.setAttribute("aria-label", `Show the curves of run ${r.name}`);
    button.addEventListener("click", () => chooseRun(r.name));
    row.cells[4].append(button);
    row.classList.toggle("selected", r.name === state.chartRun);
    body.append(row);
  }
  if (!listing.runs.length) body.append(tr([listing.hint || "No runs yet: train one with `mnistcnn train`."]));
  if (!state.chartRun && listing.runs.length) chooseRun((listing.runs.find((r) => r.name === listing.default) || listing.runs.at(-1)).name);
}

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
        else if (r.type === "test") series.tests.push(r);
      }
      series.offset = m.offset;
      if (m.records.length || m.reset || !series.drawn) drawChart(series);
      if (m.records.some((r) => r.type !== "batch")) loadRuns(); // an epoch ended: the table's row changed
    } catch (err) {
      notice(err.message, true);
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
  const ep = s.epochs.map((r) => r.epoch);
  const accs = [{ ys: s.epochs.map((r) => r.train_acc), color: "#1f7a3a", width: 2, label: "train accuracy", dots: true }];
  if (s.epochs.some((r) => r.val_acc != null)) accs.push({ ys: s.epochs.map((r) => r.val_acc), color: "#b7791f", width: 2, label: "validation accuracy", dots: true });
  panel(g, { x: 64, y: split, w: w - 78, h: h - split - 30 }, ep, accs, fg, "accuracy", "epoch", s.tests.at(-1));
  canvas.dataset.points = String(s.batches.length);
  canvas.dataset.epochs = String(s.epochs.length);
  const test = s.tests.at(-1);
  $("chart-caption").textContent = `${s.batches.length.toLocaleString("en")} batch losses, ${s.epochs.length} epoch(s)` +
    (test ? `; test accuracy ${(100 * test.test_acc).toFixed(2)} %` : "; still training or stopped early");
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
  const all = lines.flatMap((l) => l.ys).filter((v) => v != null).concat(test ? [test.test_acc] : []);
  if (!xs.length || !all.length) {
    g.fillText(`no ${name} yet`, box.x + 10, box.y + 20);
    return;
  }
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x0 = xName === "epoch" ? 0 : Math.min(...xs), x1 = Math.max(...xs, x0 + 1); // epoch 0: before training
  // the data inside the frame, clear of its edges (whole dots) and below a band for the legend
  const left = box.x + 6, right = box.x + box.w - 6, top = box.y + 28, bottom = box.y + box.h - 6;
  const X = (x) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const Y = (y) => bottom - ((y - lo) / (hi - lo)) * (bottom - top);
  g.textAlign = "right";
  g.fillText(hi.toPrecision(3), box.x - 6, top + 4);
  g.fillText(lo.toPrecision(3), box.x - 6, bottom + 4);
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
    g.arc(X(x1), Y(test.test_acc), 5, 0, 7);
    g.fill();
    legend("#b42318", `test ${(100 * test.test_acc).toFixed(2)} %`);
  }
}

// ---- Start: the listing fills the switcher and says how to train when there is no checkpoint ----
api("/api/runs").then((listing) => {
  fillSwitcher(listing);
  if (!listing.default) notice(listing.hint || "No checkpoint yet: train one with `mnistcnn train`, then reload.", true);
}).catch((err) => notice(err.message, true));
