// @ts-check
// The pixel readout: at once, every panel map's value read back from its quantised colour position (≈) and the predicted
// class; moments later the exact values and the top-3 classes from the server (pixel endpoint of the kept analysis).

import { pixel } from "./api.js";
import { valueAt } from "./compact.js";

/** @typedef {import("./api.js").ApiError} ApiError */
/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").ErrorLegendEntry} ErrorLegendEntry */
/** @typedef {import("./types.js").PixelResponse} PixelResponse */
/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */

const HINT = "Hover or tap a panel (or focus it and use the arrow keys).";
export const UNAVAILABLE_TITLE = "not available for this model: no fitted feature density";

/**
 * @param {number} value
 * @returns {string} four decimals, or two significant digits in exponent form when tiny
 */
export function format(value) {
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toFixed(4);
}

/**
 * @param {HTMLElement} root
 * @param {string} text
 */
function setPixelLine(root, text) {
  /** @type {HTMLElement} */ (root.querySelector("#readout-pixel")).textContent = text;
}

/**
 * @param {HTMLElement} root
 * @param {string} text empty to hide
 */
export function readoutNote(root, text) {
  const note = /** @type {HTMLElement} */ (root.querySelector("#readout-note"));
  note.textContent = text;
  note.hidden = !text;
}

/**
 * Mark the readout cells of maps the shown analysis could not compute: they read "—" instead of their zeros.
 * @param {HTMLElement} root
 * @param {string[]} unavailable map names
 */
export function markUnavailable(root, unavailable) {
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    const off = unavailable.includes(/** @type {string} */ (td.dataset.map));
    td.toggleAttribute("data-unavailable", off);
    if (off) td.title = UNAVAILABLE_TITLE;
    else td.removeAttribute("title");
  }
}

/**
 * The analysed image's pixel under pixel (x, y) of the shown maps: itself, or for previews f times smaller (a streamed
 * analysis, `preview_factor` f) the centre of its f×f block, inside the image.
 * @param {AnalysisResult} result
 * @param {number} x
 * @param {number} y
 * @returns {[number, number]}
 */
export function analysedPixel(result, x, y) {
  const f = result.preview_factor || 1;
  const [width, height] = result.analysed_size;
  return [Math.min(width - 1, x * f + (f >> 1)), Math.min(height - 1, y * f + (f >> 1))];
}

/**
 * Show pixel (x, y) of an analysed item from its quantised layers: values marked ≈ until the exact ones arrive.
 * @param {HTMLElement} root
 * @param {DoneItem} item
 * @param {number} x
 * @param {number} y
 * @param {ErrorLegendEntry[]} errorLegend what each error-map code means, indexed by the code (the config's errorLegend)
 */
export function showApprox(root, item, x, y, errorLegend) {
  const { result, layers } = item;
  const idx = y * result.width + x;
  const label = layers.labels ? layers.labels[idx] : null;
  const cls = label !== null && label !== undefined ? result.classes[label] : null;
  const code = layers.errors ? layers.errors[idx] : null;
  const scored = code !== null && code !== undefined ? ` · ${errorLegend[code] ? errorLegend[code].name : `code ${code}`} against the mask` : "";
  const [fx, fy] = analysedPixel(result, x, y);
  setPixelLine(root, `x ${fx}, y ${fy}` + (cls ? ` · predicted ${cls.name}` : "") + scored);
  root.dataset.pixel = `${x},${y}`;
  delete root.dataset.exact;
  const specs = Object.fromEntries(result.maps.map((m) => [m.name, m]));
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    const name = /** @type {string} */ (td.dataset.map);
    const q = layers.maps[name];
    delete td.dataset.value;
    if (td.hasAttribute("data-unavailable")) {
      td.textContent = "—";
      delete td.dataset.approx;
    } else if (q && specs[name]) {
      const value = valueAt(q[idx], specs[name].range, specs[name].display_power);
      td.textContent = `≈ ${format(value)}`;
      td.dataset.approx = String(value);
    } else {
      td.textContent = "…";
      delete td.dataset.approx;
    }
  }
  /** @type {HTMLElement} */ (root.querySelector("#readout-top")).replaceChildren();
}

/**
 * Show the exact values of a pixel (the pixel endpoint's answer).
 * @param {HTMLElement} root
 * @param {DoneItem} item
 * @param {PixelResponse} pixel
 */
export function showExact(root, item, pixel) {
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    const value = pixel.values[/** @type {string} */ (td.dataset.map)];
    if (value === undefined || td.hasAttribute("data-unavailable")) continue;
    td.textContent = format(value);
    td.dataset.value = String(value);
  }
  const setsLine = /** @type {HTMLElement} */ (root.querySelector("#readout-sets"));
  setsLine.hidden = !pixel.sets;
  if (pixel.sets) {
    const classes = item.result.classes;
    const named = (/** @type {number[]} */ members) => (members.length ? members.map((k) => (classes[k] ? classes[k].name : String(k))).join(", ") : "none");
    setsLine.textContent = `Prediction sets: ${Object.entries(pixel.sets)
      .map(([alpha, members]) => `α ${alpha}: {${named(members)}}`)
      .join(" · ")}`;
  }
  const list = /** @type {HTMLElement} */ (root.querySelector("#readout-top"));
  list.replaceChildren();
  for (const { index, name, probability } of pixel.top) {
    const li = document.createElement("li");
    li.dataset.class = name;
    li.dataset.p = String(probability);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = item.result.classes[index] ? item.result.classes[index].colour : "#888";
    const label = document.createElement("span");
    label.textContent = name;
    const prob = document.createElement("span");
    prob.className = "p";
    prob.textContent = `${(100 * probability).toFixed(1)} %`;
    li.append(swatch, label, prob);
    list.append(li);
  }
  root.dataset.exact = `${pixel.x},${pixel.y}`;
  readoutNote(root, "");
}

/**
 * Blank the readout.
 * @param {HTMLElement} root
 */
export function clearReadout(root) {
  setPixelLine(root, HINT);
  delete root.dataset.pixel;
  delete root.dataset.exact;
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    td.textContent = "—";
    delete td.dataset.value;
    delete td.dataset.approx;
  }
  /** @type {HTMLElement} */ (root.querySelector("#readout-top")).replaceChildren();
  /** @type {HTMLElement} */ (root.querySelector("#readout-sets")).hidden = true;
  readoutNote(root, "");
}

/**
 * A function that fetches the exact values of a pixel once the cursor has rested for `delayMs`, cancelling the
 * previous request, and shows them if the cursor is still there (`stillThere(x, y)`).
 * @param {HTMLElement} root
 * @param {number} delayMs
 * @returns {(item: DoneItem, x: number, y: number, stillThere: (x: number, y: number) => boolean) => void}
 */
export function exactReader(root, delayMs) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  /** @type {AbortController | null} */
  let inFlight = null;
  return (item, x, y, stillThere) => {
    clearTimeout(timer);
    if (inFlight) inFlight.abort();
    inFlight = null;
    const url = item.result.pixel_url;
    if (!url) {
      readoutNote(root, "Exact values are not available: the server could not keep this (large) analysis.");
      return;
    }
    timer = setTimeout(async () => {
      const request = new AbortController();
      inFlight = request;
      try {
        const [fx, fy] = analysedPixel(item.result, x, y);
        const exact = await pixel(url, fx, fy, request.signal);
        if (stillThere(x, y)) showExact(root, item, exact);
      } catch (err) {
        if (request.signal.aborted) return;
        const e = /** @type {ApiError} */ (err);
        readoutNote(root, e.status === 404 ? "Exact values have expired on the server; change a setting or press “Analyse again”." : `Exact values failed: ${e.message}`);
      } finally {
        if (inFlight === request) inFlight = null;
      }
    }, delayMs);
  };
}
