// @ts-check
// The pixel readout: every map's value and the top-3 class probabilities under the cursor.

import { topClasses } from "./arrays.js";

/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").ErrorLegendEntry} ErrorLegendEntry */

/**
 * @param {number} value
 * @returns {string} four decimals, or two significant digits in exponent form when tiny
 */
function format(value) {
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toFixed(4);
}

/**
 * Show pixel (x, y) of an analysed item.
 * @param {HTMLElement} root
 * @param {DoneItem} item
 * @param {number} x
 * @param {number} y
 * @param {ErrorLegendEntry[]} errorLegend what each error-map code means, indexed by the code (the config's errorLegend)
 */
export function showPixel(root, item, x, y, errorLegend) {
  const { result, arrays } = item;
  const idx = y * result.width + x;
  const label = arrays.labels ? arrays.labels[idx] : null;
  const cls = label !== null ? result.classes[label] : null;
  const code = arrays.errors ? arrays.errors[idx] : null;
  const scored = code !== null ? ` · ${errorLegend[code] ? errorLegend[code].name : `code ${code}`} against the mask` : "";
  /** @type {HTMLElement} */ (root.querySelector("#readout-pixel")).textContent = `x ${x}, y ${y}` + (cls ? ` · predicted ${cls.name}` : "") + scored;
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    const values = arrays.maps[/** @type {string} */ (td.dataset.map)];
    if (!values) continue;
    const value = values[idx];
    td.textContent = format(value);
    td.dataset.value = String(value);
  }
  const list = /** @type {HTMLElement} */ (root.querySelector("#readout-top"));
  list.replaceChildren();
  if (!arrays.probs) return;
  const pixels = result.width * result.height;
  for (const { index, p } of topClasses(arrays.probs, result.classes.length, pixels, idx, 3)) {
    const li = document.createElement("li");
    li.dataset.class = result.classes[index].name;
    li.dataset.p = String(p);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = result.classes[index].colour;
    const name = document.createElement("span");
    name.textContent = result.classes[index].name;
    const prob = document.createElement("span");
    prob.className = "p";
    prob.textContent = `${(100 * p).toFixed(1)} %`;
    li.append(swatch, name, prob);
    list.append(li);
  }
}

/**
 * Blank the readout.
 * @param {HTMLElement} root
 */
export function clearReadout(root) {
  /** @type {HTMLElement} */ (root.querySelector("#readout-pixel")).textContent = "Hover a panel (or focus it and use the arrow keys).";
  for (const td of /** @type {NodeListOf<HTMLTableCellElement>} */ (root.querySelectorAll("td[data-map]"))) {
    td.textContent = "—";
    delete td.dataset.value;
  }
  /** @type {HTMLElement} */ (root.querySelector("#readout-top")).replaceChildren();
}
