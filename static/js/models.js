// @ts-check
// The served models on the page: the model selector (shown when the server holds more than one), the header's facts
// of the chosen model, and a row of panels' class legend, colour-bar ticks (whose ranges depend on a model's class
// count) and notes on the maps the model cannot compute. Changing the model moves the samples field and the test-time augmentation to the new model's defaults when they still held the old one's.

import { applyDataStyles } from "./datastyles.js";

/** @typedef {import("./types.js").ClassInfo} ClassInfo */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").ModelPage} ModelPage */

/**
 * @param {Config} config
 * @param {string} name
 * @returns {ModelPage} the served model `name`, or the default when none has that name
 */
export function modelPage(config, name) {
  return config.models.find((m) => m.name === name) || config.models[0];
}

/**
 * @param {ClassInfo} c
 * @returns {HTMLElement} a legend entry: the class colour's swatch and its name
 */
function legendEntry(c) {
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.dataset.bg = c.colour;
  const entry = document.createElement("span");
  entry.append(swatch, c.name);
  return entry;
}

/**
 * @param {string} tag
 * @param {string} className
 * @param {number} position 0..1 along the bar
 * @returns {HTMLElement}
 */
function placed(tag, className, position) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.dataset.left = `${(100 * position).toFixed(3)}%`;
  return node;
}

/**
 * Write a model's class legend and colour-bar ticks into a row of panels, and mark the panels of maps it cannot compute
 * (`data-unavailable`: a note instead of the view, its mean and colour bar).
 * @param {ParentNode} row
 * @param {ModelPage} model
 */
export function renderScales(row, model) {
  for (const panel of /** @type {NodeListOf<HTMLElement>} */ (row.querySelectorAll(".panel[data-panel]")))
    panel.toggleAttribute("data-unavailable", model.unavailable.includes(/** @type {string} */ (panel.dataset.panel)));
  const legend = row.querySelector('.panel[data-panel="prediction"] .legend');
  if (legend) legend.replaceChildren(...model.classes.map(legendEntry));
  for (const [name, scale] of Object.entries(model.scales)) {
    const bar = /** @type {HTMLElement | null} */ (row.querySelector(`.panel[data-panel="${name}"] .colourbar`));
    const ticks = row.querySelector(`.panel[data-panel="${name}"] .ticks`);
    if (!bar || !ticks) continue;
    bar.title = scale.title;
    bar.replaceChildren(...scale.ticks.map((t) => placed("span", "tick-mark", t.position)));
    ticks.replaceChildren(
      ...scale.ticks.map((t) => {
        const label = placed("span", "", t.position);
        label.dataset.value = String(t.value);
        label.textContent = t.label;
        return label;
      }),
    );
  }
  applyDataStyles(row);
}

/**
 * Show a model's facts in the page header and its working size in the resolution control.
 * @param {ModelPage} model
 * @param {HTMLSelectElement} resolution
 */
function renderFacts(model, resolution) {
  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  $("model-name").textContent = model.name;
  document.title = `seg-uncertainty · ${model.name}`;
  const d = model.dropout;
  $("model-dropout").textContent = `MC dropout at ${d.sites.join(", ")} (rate ${d.rate}${d.trainedWithDropout ? "" : `, ${d.note}`})`;
  $("model-domain").hidden = !model.domain;
  $("model-domain-text").textContent = model.domain;
  const legend = $("class-legend");
  legend.replaceChildren(
    ...model.classes.map((c) => {
      const li = document.createElement("li");
      li.append(...legendEntry(c).childNodes);
      return li;
    }),
  );
  applyDataStyles(legend);
  const working = resolution.querySelector('option[value="working"]');
  if (working)
    working.textContent = model.workingSize ? `working size (${model.workingSize} px long side)` : "working size (this model has none: every pixel)";
}

/**
 * @typedef {object} ModelControls
 * @property {HTMLSelectElement | null} model the model selector (absent with one model)
 * @property {HTMLInputElement} samples
 * @property {HTMLSelectElement} tta
 * @property {HTMLSelectElement} resolution
 * @property {HTMLElement} panels the first row of panels
 */

/**
 * Follow the model selector: header, legends, ticks and the samples default move to the chosen model, then `changed()`.
 * @param {Config} config
 * @param {ModelControls} els
 * @param {() => void} changed
 * @returns {{selected: () => ModelPage}} the chosen model
 */
export function bindModels(config, els, changed) {
  const select = els.model;
  const selected = () => modelPage(config, select ? select.value : config.defaultModel);
  let previous = selected();
  if (select)
    select.addEventListener("change", () => {
      const model = selected();
      if (els.samples.value.trim() === String(previous.defaultSamples)) els.samples.value = String(model.defaultSamples);
      if (els.tta.value === previous.defaultTta) els.tta.value = model.defaultTta;
      previous = model;
      renderFacts(model, els.resolution);
      renderScales(els.panels, model);
      changed();
    });
  return { selected };
}
