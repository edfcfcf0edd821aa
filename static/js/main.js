// @ts-check
// The page: upload queue, thumbnails, controls, panels, readout, region table, downloads and the evaluate mode (image + mask).

import { analyze, evaluate } from "./api.js";
import { decodeRaw } from "./arrays.js";
import { renderDownloads } from "./downloads.js";
import { bindDrop } from "./dropzone.js";
import { clearEvaluation, renderEvaluation } from "./evaluation.js";
import { bindMask } from "./mask.js";
import { clearPanels, drawPanel, loadImages, pixelAt, placeCrosshair } from "./panels.js";
import { clearReadout, showPixel } from "./readout.js";
import { bindSorting, renderRegions } from "./regions.js";
import { renderThumb as drawThumb } from "./thumbs.js";

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").Params} Params */
/** @typedef {import("./types.js").RawArray} RawArray */
/** @typedef {import("./types.js").ScoredItem} ScoredItem */

/** @type {Config} */
const config = JSON.parse(/** @type {HTMLScriptElement} */ (document.getElementById("segu-config")).textContent);
/** @param {string} id */
const $ = (id) => document.getElementById(id);
const els = {
  input: /** @type {HTMLInputElement} */ ($("file-input")),
  dropzone: /** @type {HTMLElement} */ ($("dropzone")),
  samples: /** @type {HTMLInputElement} */ ($("samples")),
  seed: /** @type {HTMLInputElement} */ ($("seed")),
  calibrated: /** @type {HTMLInputElement} */ ($("calibrated")),
  temperatureNote: /** @type {HTMLElement} */ ($("temperature-note")),
  opacity: /** @type {HTMLInputElement} */ ($("opacity")),
  rerun: /** @type {HTMLButtonElement} */ ($("rerun")),
  status: /** @type {HTMLElement} */ ($("status")),
  error: /** @type {HTMLElement} */ ($("error")),
  thumbs: /** @type {HTMLUListElement} */ ($("thumbs")),
  panels: /** @type {HTMLElement} */ ($("panels")),
  readout: /** @type {HTMLElement} */ ($("readout")),
  runInfo: /** @type {HTMLElement} */ ($("run-info")),
  regions: /** @type {HTMLTableElement} */ ($("region-table")),
  downloads: /** @type {HTMLElement} */ ($("download-links")),
  inputSize: /** @type {HTMLElement} */ ($("input-size")),
  maskInput: /** @type {HTMLInputElement} */ ($("mask-input")),
  maskClear: /** @type {HTMLButtonElement} */ ($("mask-clear")),
  maskNote: /** @type {HTMLElement} */ ($("mask-note")),
  ignoreIndex: /** @type {HTMLInputElement} */ ($("ignore-index")),
  oodLabel: /** @type {HTMLInputElement} */ ($("ood-label")),
  errorPanel: /** @type {HTMLElement} */ ($("panel-error")),
  evaluation: /** @type {HTMLElement} */ ($("evaluation")),
};
const mapNames = config.maps.map((m) => m.name);
const mapTitles = Object.fromEntries(config.maps.map((m) => [m.name, m.title]));
/** @type {Item[]} */
const items = [];
/** @type {Item | null} */
let current = null;
let running = false;
let nextId = 1;
/** @type {{x: number, y: number} | null} */
let cursor = null;
const masks = bindMask(els, () => current, requeue);

/**
 * @param {HTMLInputElement} input a number field
 * @returns {number} its value rounded to an integer; NaN when it is empty or not a number
 */
function intValue(input) {
  return input.value.trim() === "" ? NaN : Math.round(Number(input.value));
}

/** @returns {Params} the request parameters in the form; an empty field takes the server's default */
function params() {
  const samples = intValue(els.samples);
  const seed = intValue(els.seed);
  const ignoreIndex = intValue(els.ignoreIndex);
  const ood = intValue(els.oodLabel);
  return {
    samples: Number.isFinite(samples) ? samples : config.defaultSamples,
    seed: Number.isFinite(seed) ? seed : config.defaultSeed,
    calibrated: els.calibrated.checked,
    ignoreIndex: Number.isFinite(ignoreIndex) ? ignoreIndex : config.defaultIgnoreIndex,
    oodLabel: Number.isFinite(ood) ? ood : null,
  };
}

/** @param {string} text */
function setBusy(text) {
  document.body.dataset.state = "busy";
  els.panels.setAttribute("aria-busy", "true");
  els.status.textContent = text;
}

/** @param {string} text */
function setIdle(text) {
  document.body.dataset.state = current && current.status === "done" ? "ready" : "idle";
  els.panels.setAttribute("aria-busy", "false");
  els.status.textContent = text;
}

/** @param {string} text */
function showError(text) {
  els.error.textContent = text || "";
  els.error.hidden = !text;
}

function temperatureNote() {
  const t = config.temperature;
  els.temperatureNote.textContent = els.calibrated.checked ? `(τ = ${t} in use)` : t === 1 ? "(τ = 1; no fitted temperature)" : `(off: τ = 1 in use; fitted τ = ${t})`;
}

/** @param {Item} item */
function renderThumb(item) {
  drawThumb(els.thumbs, item, item === current, select);
}

/** @param {File[]} files */
function addFiles(files) {
  const added = [];
  for (const file of files) {
    /** @type {Item} */
    const item = { id: nextId++, file, name: file.name || "image", status: "queued", thumbUrl: URL.createObjectURL(file), mask: masks.take() };
    items.push(item);
    added.push(item);
    renderThumb(item);
  }
  masks.note();
  if (added.length) pump();
}

/** @param {Item} item */
function requeue(item) {
  if (item.status === "busy") item.stale = true;
  else if (item.status !== "queued") {
    item.status = "queued";
    renderThumb(item);
    pump();
  }
}

async function pump() {
  if (running) return;
  running = true;
  let item;
  while ((item = items.find((i) => i.status === "queued"))) await run(item);
  running = false;
  const failed = items.filter((i) => i.status === "error").length;
  const done = items.filter((i) => i.status === "done").length;
  setIdle(`${done} image${done === 1 ? "" : "s"} analysed${failed ? `, ${failed} failed` : ""}.`);
}

/** @param {Item} item */
async function run(item) {
  const p = params();
  item.status = "busy";
  renderThumb(item);
  const mask = item.mask;
  const what = mask ? `Evaluating ${item.name} against ${mask.name}` : `Analysing ${item.name}`;
  setBusy(`${what} with ${p.samples} MC sample${p.samples === 1 ? "" : "s"}…`);
  try {
    /** @type {AnalysisResult} */
    const result = mask ? await evaluate(config.endpoints.evaluate, item.file, mask, p) : await analyze(config.endpoints.analyze, item.file, p);
    const arrays = {
      maps: Object.fromEntries(result.maps.filter((m) => m.values).map((m) => [m.name, decodeRaw(/** @type {RawArray} */ (m.values))])),
      labels: result.prediction.labels ? decodeRaw(result.prediction.labels) : null,
      probs: result.mean_probs ? decodeRaw(result.mean_probs) : null,
      errors: result.error_map ? decodeRaw(result.error_map.values) : null,
    };
    Object.assign(item, { result, arrays, params: p, images: await loadImages(result), status: "done", error: null });
    showError("");
    select(item);
  } catch (err) {
    Object.assign(item, { status: "error", error: /** @type {Error} */ (err).message || String(err) });
    showError(`${item.name}: ${item.error}`);
    if (!current || current === item || current.status !== "done") select(item);
  }
  if (item.stale) {
    item.stale = false;
    item.status = "queued";
  }
  renderThumb(item);
}

/** @param {Item} item */
function select(item) {
  const previous = current;
  current = item;
  if (previous && previous !== item) renderThumb(previous);
  renderThumb(item);
  els.rerun.disabled = !(item.status === "done" || item.status === "error");
  masks.note();
  if (item.status === "done") render(item);
  else {
    clearPanels(els.panels);
    clearEvaluation(els.evaluation);
    els.errorPanel.hidden = true;
    clearReadout(els.readout);
    els.regions.tBodies[0].replaceChildren();
    els.downloads.innerHTML = '<span class="muted">Analyse an image first.</span>';
    if (item.status === "error") showError(`${item.name}: ${item.error}`);
    document.body.dataset.state = running ? "busy" : "idle";
  }
}

/** @param {DoneItem} item */
function drawAll(item) {
  const { width, height } = item.result;
  els.errorPanel.hidden = !item.images.error;
  for (const panel of /** @type {NodeListOf<HTMLElement>} */ (els.panels.querySelectorAll(".panel"))) {
    if (panel.hidden) clearPanels(panel);
    else drawPanel(panel, /** @type {string} */ (panel.dataset.panel), item.images, width, height, Number(els.opacity.value));
  }
}

/** @param {DoneItem} item */
function render(item) {
  const r = item.result;
  drawAll(item);
  els.inputSize.textContent = `${r.width} × ${r.height} px`;
  if (r.metrics) renderEvaluation(els.evaluation, /** @type {ScoredItem} */ (item), mapTitles, config.detectionMaps, config.errorLegend);
  else clearEvaluation(els.evaluation);
  renderRegions(els.regions, r.regions, r.classes, mapNames);
  renderDownloads(els.downloads, item, config.endpoints.analyze, { busy: setBusy, idle: setIdle, error: showError });
  /** @param {number} s seconds */
  const ms = (s) => `${Math.round(1000 * s)} ms`;
  els.runInfo.textContent =
    `${r.samples} MC samples · seed ${r.seed} · τ = ${r.temperature} (${r.calibrated ? "calibrated" : "uncalibrated"}) · ${r.device} · ${r.width}×${r.height} · ` +
    `inference ${ms(r.timings.inference)} · total ${ms(r.timings.total)}` +
    (r.dropout_added_at_inference ? " · dropout added at inference only" : "");
  if (cursor && cursor.x < r.width && cursor.y < r.height) moveTo(cursor.x, cursor.y);
  else {
    cursor = null;
    els.panels.classList.remove("has-cursor");
    clearReadout(els.readout);
  }
  document.body.dataset.state = running ? "busy" : "ready";
}

/**
 * @param {number} x
 * @param {number} y
 */
function moveTo(x, y) {
  if (!current || current.status !== "done") return;
  const { width, height } = current.result;
  cursor = { x: Math.min(width - 1, Math.max(0, x)), y: Math.min(height - 1, Math.max(0, y)) };
  placeCrosshair(els.panels, cursor.x, cursor.y, width, height);
  showPixel(els.readout, current, cursor.x, cursor.y, config.errorLegend);
}

for (const view of /** @type {NodeListOf<HTMLElement>} */ (els.panels.querySelectorAll(".view"))) {
  view.addEventListener("pointermove", (event) => {
    if (!current || current.status !== "done") return;
    const { x, y } = pixelAt(view, event, current.result.width, current.result.height);
    moveTo(x, y);
  });
  view.addEventListener("keydown", (event) => {
    const step = /** @type {Record<string, [number, number] | undefined>} */ ({ ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] })[event.key];
    if (!step || !current || current.status !== "done") return;
    event.preventDefault();
    const k = event.shiftKey ? 10 : 1;
    const start = cursor || { x: current.result.width >> 1, y: current.result.height >> 1 };
    moveTo(start.x + k * step[0], start.y + k * step[1]);
  });
}

bindDrop(els.input, els.dropzone, addFiles);
els.opacity.addEventListener("input", () => {
  if (current && current.status === "done") drawPanel(/** @type {HTMLElement} */ ($("panel-prediction")), "prediction", current.images, current.result.width, current.result.height, Number(els.opacity.value));
});
els.calibrated.addEventListener("change", temperatureNote);
els.rerun.addEventListener("click", () => {
  if (!current || current.status === "busy" || current.status === "queued") return;
  current.status = "queued";
  renderThumb(current);
  pump();
});
els.samples.max = String(config.maxSamples);
bindSorting(els.regions, () => current && current.status === "done" && renderRegions(els.regions, current.result.regions, current.result.classes, mapNames));
temperatureNote();
document.body.dataset.state = "idle";
