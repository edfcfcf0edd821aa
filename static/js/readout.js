// The pixel readout: every map's value and the top-3 class probabilities under the cursor.

import { topClasses } from "./arrays.js";

function format(value) {
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toFixed(4);
}

/** Show pixel (x, y) of an analysed item. */
export function showPixel(root, item, x, y) {
  const { result, arrays } = item;
  const idx = y * result.width + x;
  const label = arrays.labels ? arrays.labels[idx] : null;
  const cls = label !== null ? result.classes[label] : null;
  const scored = arrays.errors ? ` · ${["correct", "wrong", "not scored"][arrays.errors[idx]]} against the mask` : "";
  root.querySelector("#readout-pixel").textContent = `x ${x}, y ${y}` + (cls ? ` · predicted ${cls.name}` : "") + scored;
  for (const td of root.querySelectorAll("td[data-map]")) {
    const values = arrays.maps[td.dataset.map];
    if (!values) continue;
    const value = values[idx];
    td.textContent = format(value);
    td.dataset.value = String(value);
  }
  const list = root.querySelector("#readout-top");
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

/** Blank the readout. */
export function clearReadout(root) {
  root.querySelector("#readout-pixel").textContent = "Hover a panel (or focus it and use the arrow keys).";
  for (const td of root.querySelectorAll("td[data-map]")) {
    td.textContent = "—";
    delete td.dataset.value;
  }
  root.querySelector("#readout-top").replaceChildren();
}
