// @ts-check
// The page: upload queue, thumbnails, controls (changes re-run the selected image), panels with their image means ± MC
// error, readout, region table, comparison with another image, downloads by id, the image-level OOD verdict, the
// evaluate mode (image + mask) and, with several models served, the model selector and a compared model's row.

import { analyze, evaluate, fetchBlob } from "./api.js";
import { bindApiKey } from "./apikey.js";
import { bindComparison } from "./compare.js";
import { decodeResult, setImageName } from "./compact.js";
import { clearFieldErrors, readParams, showFieldError, temperatureNote } from "./controls.js";
import { applyDataStyles } from "./datastyles.js";
import { renderDownloads } from "./downloads.js";
import { bindDrop } from "./dropzone.js";
import { bindExamples } from "./examples.js";
import { methodText, renderPanelMeans } from "./errorbars.js";
import { bindJobBar } from "./jobbar.js";
import { clearEvaluation, renderEvaluation } from "./evaluation.js";
import { bindMask } from "./mask.js";
import { bindModelRow } from "./modelrow.js";
import { bindModels, modelPage, renderScales } from "./models.js";
import { bindPointer, clearPanels, drawPanel, drawRow, placeCrosshair } from "./panels.js";
import { clearReadout, exactReader, markUnavailable, showApprox } from "./readout.js";
import { bindSorting, renderRegions } from "./regions.js";
import { inputSizeText, runInfoText } from "./runinfo.js";
import { renderThumb as drawThumb } from "./thumbs.js";
import { arrangeGallery, fillSortChoice, galleryProgress, imageFilter } from "./gallery.js";
import { renderAdversarial } from "./adversarial.js";
import { renderVerdict } from "./verdict.js";

/** @typedef {import("./api.js").ApiError} ApiError */
/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").ScoredItem} ScoredItem */

/** @type {Config} */
const config = JSON.parse(/** @type {HTMLScriptElement} */ (document.getElementById("segu-config")).textContent);
/** @param {string} id */
const $ = (id) => document.getElementById(id);
const els = {
  input: /** @type {HTMLInputElement} */ ($("file-input")),
  model: /** @type {HTMLSelectElement | null} */ ($("model")),
  dropzone: /** @type {HTMLElement} */ ($("dropzone")),
  samples: /** @type {HTMLInputElement} */ ($("samples")),
  seed: /** @type {HTMLInputElement} */ ($("seed")),
  calibrated: /** @type {HTMLInputElement} */ ($("calibrated")),
  resolution: /** @type {HTMLSelectElement} */ ($("resolution")),
  tta: /** @type {HTMLSelectElement} */ ($("tta")),
  temperatureNote: /** @type {HTMLElement} */ ($("temperature-note")),
  opacity: /** @type {HTMLInputElement} */ ($("opacity")),
  rerun: /** @type {HTMLButtonElement} */ ($("rerun")),
  status: /** @type {HTMLElement} */ ($("status")),
  error: /** @type {HTMLElement} */ ($("error")),
  thumbs: /** @type {HTMLUListElement} */ ($("thumbs")),
  sortBy: /** @type {HTMLSelectElement} */ ($("sort-by")),
  galleryBar: /** @type {HTMLElement} */ ($("gallery-bar")),
  panels: /** @type {HTMLElement} */ ($("panels")),
  readout: /** @type {HTMLElement} */ ($("readout")),
  runInfo: /** @type {HTMLElement} */ ($("run-info")),
  regions: /** @type {HTMLTableElement} */ ($("region-table")),
  regionsMore: /** @type {HTMLButtonElement} */ ($("regions-more")),
  errorMethod: /** @type {HTMLElement} */ ($("error-method")),
  downloads: /** @type {HTMLElement} */ ($("download-links")),
  inputSize: /** @type {HTMLElement} */ ($("input-size")),
  verdict: /** @type {HTMLElement} */ ($("ood-verdict")),
  maskInput: /** @type {HTMLInputElement} */ ($("mask-input")),
  maskClear: /** @type {HTMLButtonElement} */ ($("mask-clear")),
  maskNote: /** @type {HTMLElement} */ ($("mask-note")),
  ignoreIndex: /** @type {HTMLInputElement} */ ($("ignore-index")),
  oodLabel: /** @type {HTMLInputElement} */ ($("ood-label")),
  adversarial: /** @type {HTMLInputElement} */ ($("adversarial")),
  adversarialSection: /** @type {HTMLElement} */ ($("adversarial-section")),
  errorPanel: /** @type {HTMLElement} */ ($("panel-error")),
  setsPanel: /** @type {HTMLElement} */ ($("panel-sets")),
  setsLevel: /** @type {HTMLSelectElement} */ ($("sets-level")),
  setsMask: /** @type {HTMLSelectElement} */ ($("sets-mask")),
  setsSummary: /** @type {HTMLElement} */ ($("sets-summary")),
  setsGuarantee: /** @type {HTMLElement} */ ($("sets-guarantee")),
  evaluation: /** @type {HTMLElement} */ ($("evaluation")),
};
const mapNames = config.maps.map((m) => m.name);
const mapTitles = Object.fromEntries(config.maps.map((m) => [m.name, m.title]));
const status = { busy: setBusy, idle: setIdle, error: showError };
/** @type {Item[]} */
const items = [];
/** @type {HTMLElement | null} The map view last read (focused or pointed at): Close gives it the focus back. */
let lastView = null;
/** @type {Item | null} */
let current = null;
let running = false;
let nextId = 1;
/** @type {{x: number, y: number} | null} */
let cursor = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let rerunTimer;
const requestExact = exactReader(els.readout, config.pixelDebounceMs);
const masks = bindMask(els, () => current, requeue);
const comparison = bindComparison(/** @type {HTMLElement} */ ($("compare")), config.maps, config.noiseZ);
const models = bindModels(config, els, scheduleRerun);
const others = bindModelRow(config, els.panels, () => current, () => Number(els.opacity.value));
const jobBar = bindJobBar(/** @type {HTMLElement} */ ($("job")));

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

/** The calibrated note, for the result on screen. */
function noteTemperature() {
  const shown = current && current.status === "done" ? current.result : null;
  temperatureNote(els.temperatureNote, shown ? shown.model_temperature : models.selected().temperature, shown);
}

/** @param {Item} item */
function renderThumb(item) {
  drawThumb(els.thumbs, item, item === current, select);
  arrangeGallery(els.thumbs, items, els.sortBy.value, config.maps);
  galleryProgress(els.galleryBar, items);
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
  if (item.status === "busy") item.rerun = true;
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
  const rejected = items.find((i) => i.status === "done" && i.error);
  setIdle(
    rejected
      ? `The last request for ${rejected.name} was rejected; its previous result is still shown.`
      : `${done} image${done === 1 ? "" : "s"} analysed${failed ? `, ${failed} failed` : ""}.`,
  );
}

/** @param {Item} item */
async function run(item) {
  const p = readParams(els, config);
  item.requested = p;
  const mask = item.mask;
  const hadResult = item.result !== undefined;
  item.status = "busy";
  renderThumb(item);
  const what = mask ? `Evaluating ${item.name} against ${mask.name}` : `Analysing ${item.name}`;
  setBusy(`${what} with ${p.samples} MC sample${p.samples === 1 ? "" : "s"}…`);
  try {
    const watch = jobBar.watch(); // a request over the server's budget runs as a job: progress bar and cancel button
    /** @type {AnalysisResult} */
    const result = mask ? await evaluate(config.endpoints.evaluate, item.file, mask, p, watch) : await analyze(config.endpoints.analyze, item.file, p, watch);
    const { layers, images } = await decodeResult(result, config);
    Object.assign(item, { result, layers, images, params: p, resultMask: mask, status: "done", error: null });
    clearFieldErrors();
    showError("");
    select(item);
  } catch (err) {
    const e = /** @type {ApiError} */ (err);
    const message = e.message || String(err);
    const beside = showFieldError(e.field || null, message);
    if (hadResult) {
      item.status = "done";
      item.error = message;
      if (e.field === "mask") item.mask = /** @type {DoneItem} */ (item).resultMask;
      if (!beside) showError(`${item.name}: ${message} (the previous result is still shown)`);
      if (current === item) masks.note();
    } else {
      Object.assign(item, { status: "error", error: message });
      if (!beside || e.field === "mask") showError(`${item.name}: ${message}`);
      if (!current || current === item || current.status !== "done") select(item);
    }
  }
  jobBar.hide();
  if (item.rerun) {
    item.rerun = false;
    item.status = "queued";
  }
  renderThumb(item);
  if (current === item) noteTemperature();
}

/** @param {Item} item */
function select(item) {
  const previous = current;
  current = item;
  if (previous && previous !== item) {
    renderThumb(previous);
    comparison.prefer(previous);
  }
  renderThumb(item);
  els.rerun.disabled = !(item.status === "done" || item.status === "error");
  masks.note();
  others.show(item);
  if (item.status === "done") render(item);
  else {
    clearPanels(els.panels);
    clearEvaluation(els.evaluation);
    renderAdversarial(els.adversarialSection, null, [], () => false);
    renderVerdict(els.verdict, null, []);
    els.errorPanel.hidden = true;
    els.setsPanel.hidden = true;
    clearReadout(els.readout);
    els.regions.tBodies[0].replaceChildren();
    els.regionsMore.hidden = true;
    els.errorMethod.textContent = "";
    renderPanelMeans(els.panels, null);
    comparison.show(item, items);
    els.downloads.innerHTML = '<span class="muted">Analyse an image first.</span>';
    if (item.status === "error") showError(`${item.name}: ${item.error}`);
    document.body.dataset.state = running ? "busy" : "idle";
  }
  noteTemperature();
}

/** @param {DoneItem} item */
function drawAll(item) {
  els.errorPanel.hidden = !item.images.error;
  showSets(item);
  drawRow(els.panels, item.images, item.result.width, item.result.height, Number(els.opacity.value));
}

/**
 * Show the prediction-set panel when the answer has sets: its level choices, the level's summary and the guarantee.
 * @param {DoneItem} item
 */
function showSets(item) {
  const conformal = item.result.conformal;
  els.setsPanel.hidden = !conformal;
  if (!conformal) return;
  const chosen = Number(els.setsLevel.value) || conformal.default_alpha;
  const alphas = conformal.levels.map((l) => l.alpha);
  const alpha = alphas.includes(chosen) ? chosen : conformal.default_alpha;
  els.setsLevel.replaceChildren(...alphas.map((a) => new Option(String(a), String(a), false, a === alpha)));
  const masks = conformal.class_masks.filter((m) => m.alpha === alpha && m.url);
  const wanted = els.setsMask.value;
  els.setsMask.replaceChildren(new Option("none", ""), ...masks.map((m) => new Option(m.class_name, m.class_name, false, m.class_name === wanted)));
  const mask = masks.find((m) => m.class_name === els.setsMask.value);
  const level = /** @type {NonNullable<typeof conformal>["levels"][number]} */ (conformal.levels.find((l) => l.alpha === alpha));
  if (mask) {
    const overlay = item.images[maskImageName(mask.class_name, alpha)];
    item.images.sets = overlay || item.images.input;
    if (!overlay) loadMaskOverlay(item, mask, alpha);
    els.setsSummary.textContent = `${mask.class_name} mask: p ≥ ${mask.threshold.toFixed(3)}, ${(100 * mask.share).toFixed(1)} % of pixels; misses ≤ ${alpha} of the class's pixels in expectation`;
  } else {
    item.images.sets = item.images[setImageName(alpha)];
    els.setsSummary.textContent = `t = ${level.threshold.toFixed(3)} · one class at ${(100 * level.singleton_share).toFixed(1)} % of pixels · mean size ${level.mean_set_size.toFixed(2)}`;
  }
  els.setsGuarantee.textContent = conformal.guarantee + (conformal.approximate ? ` Approximate here: ${conformal.approximate}.` : "");
}

/**
 * The name under which a class mask's overlay is kept in `Images`.
 * @param {string} name
 * @param {number} alpha
 * @returns {string}
 */
function maskImageName(name, alpha) {
  return `mask:${name}:${alpha}`;
}

/**
 * Fetch a calibrated class mask (white inside) and keep it as an overlay: the input, the mask in the class's colour over
 * it at half opacity; then redraw the set panel if the item is still shown.
 * @param {DoneItem} item
 * @param {{class_name: string, url?: string | null}} mask
 * @param {number} alpha
 */
async function loadMaskOverlay(item, mask, alpha) {
  if (!mask.url) return;
  const { width, height } = item.result;
  const bitmap = await createImageBitmap(await fetchBlob(mask.url));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d", { willReadFrequently: true }));
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const pixels = ctx.getImageData(0, 0, width, height);
  const cls = item.result.classes.find((c) => c.name === mask.class_name);
  const hex = cls ? cls.colour : "#ffffff";
  const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  for (let i = 0; i < pixels.data.length; i += 4) {
    const inside = pixels.data[i] > 127;
    pixels.data[i] = rgb[0];
    pixels.data[i + 1] = rgb[1];
    pixels.data[i + 2] = rgb[2];
    pixels.data[i + 3] = inside ? 150 : 0;
  }
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(item.images.input, 0, 0, width, height);
  const tint = document.createElement("canvas");
  tint.width = width;
  tint.height = height;
  /** @type {CanvasRenderingContext2D} */ (tint.getContext("2d")).putImageData(pixels, 0, 0);
  ctx.drawImage(tint, 0, 0);
  item.images[maskImageName(mask.class_name, alpha)] = canvas;
  if (current === item && item.status === "done") drawAll(item);
}

/** @param {DoneItem} item */
function redrawRegions(item) {
  const r = item.result;
  renderRegions(els.regions, r.regions, r.error_method, r.classes, mapNames, config.regionRowsShown, els.regionsMore, r.unavailable);
}

/** @param {DoneItem} item */
function render(item) {
  const r = item.result;
  renderScales(els.panels, modelPage(config, r.model));
  markUnavailable(els.readout, r.unavailable);
  drawAll(item);
  renderPanelMeans(els.panels, r);
  els.errorMethod.textContent = methodText(r.error_method, r.estimator, r.enumerated_channels);
  comparison.show(item, items);
  els.inputSize.textContent = inputSizeText(r);
  renderVerdict(els.verdict, r.image_check, r.image_ood);
  if (r.metrics) renderEvaluation(els.evaluation, /** @type {ScoredItem} */ (item), mapTitles, config.detectionMaps, config.errorLegend);
  else clearEvaluation(els.evaluation);
  renderAdversarial(els.adversarialSection, r, r.classes.map((c) => c.colour), () => current === item && item.result === r, item.params.adversarial);
  redrawRegions(item);
  renderDownloads(els.downloads, item, status);
  els.runInfo.textContent = runInfoText(r, config.models.length > 1);
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
  const item = current;
  const { width, height } = item.result;
  cursor = { x: Math.min(width - 1, Math.max(0, x)), y: Math.min(height - 1, Math.max(0, y)) };
  placeCrosshair(els.panels, cursor.x, cursor.y, width, height);
  showApprox(els.readout, item, cursor.x, cursor.y, config.errorLegend);
  requestExact(item, cursor.x, cursor.y, (x, y) => current === item && cursor !== null && cursor.x === x && cursor.y === y);
}

/** Re-run the selected image once the controls have been still for a moment, if they now ask for something else than it got. */
function scheduleRerun() {
  clearTimeout(rerunTimer);
  rerunTimer = setTimeout(() => {
    if (!current || current.status === "queued") return;
    if (current.requested && JSON.stringify(current.requested) === JSON.stringify(readParams(els, config))) return;
    requeue(current);
  }, config.rerunDebounceMs);
}

bindPointer(
  els.panels,
  () => (current && current.status === "done" ? { width: current.result.width, height: current.result.height, cursor } : null),
  moveTo,
);
bindDrop(els.input, /** @type {HTMLInputElement | null} */ ($("folder-input")), els.dropzone, addFiles, imageFilter(config.imageSuffixes));
fillSortChoice(els.sortBy, config.maps);
els.sortBy.addEventListener("change", () => arrangeGallery(els.thumbs, items, els.sortBy.value, config.maps));
bindExamples($("examples"), els.model, addFiles, showError);
els.opacity.addEventListener("input", () => {
  if (current && current.status === "done") drawPanel(/** @type {HTMLElement} */ ($("panel-prediction")), "prediction", current.images, current.result.width, current.result.height, Number(els.opacity.value));
  others.redraw();
});
for (const control of [els.setsLevel, els.setsMask]) {
  control.addEventListener("change", () => {
    if (current && current.status === "done") drawAll(current);
  });
}
for (const control of [els.samples, els.seed]) control.addEventListener("input", scheduleRerun);
for (const control of [els.calibrated, els.resolution, els.tta, els.adversarial]) control.addEventListener("change", scheduleRerun);
/** @type {HTMLElement} */ ($("readout-close")).addEventListener("click", () => {
  cursor = null;
  els.panels.classList.remove("has-cursor");
  clearReadout(els.readout);
  if (lastView) lastView.focus({ preventScroll: true });
});
els.panels.addEventListener("focusin", (event) => {
  if (event.target instanceof HTMLElement && event.target.classList.contains("view")) lastView = event.target;
});
els.panels.addEventListener("pointerdown", (event) => {
  const view = event.target instanceof Element ? event.target.closest(".view") : null;
  if (view instanceof HTMLElement) lastView = view;
});
els.rerun.addEventListener("click", () => {
  if (!current || current.status === "busy" || current.status === "queued") return;
  requeue(current);
});
els.samples.max = String(config.maxSamples);
bindSorting(els.regions, els.regionsMore, () => current && current.status === "done" && redrawRegions(current));
noteTemperature();
applyDataStyles(document);
const keyInput = $("api-key");
if (keyInput) bindApiKey(/** @type {HTMLInputElement} */ (keyInput));
document.body.dataset.state = "idle";
