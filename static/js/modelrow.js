// @ts-check
// "Compare with model …": the selected image analysed by a second served model, with the settings of the shown
// result, its panels in a row under the first (the same panels and sizes, its own class colours and colour scales),
// each row named by its model. Each item keeps its compared run until the model or the settings change.

import { analyze } from "./api.js";
import { decodeResult } from "./compact.js";
import { renderPanelMeans } from "./errorbars.js";
import { modelPage, renderScales } from "./models.js";
import { clearPanels, drawPanel, drawRow } from "./panels.js";

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").Images} Images */
/** @typedef {import("./types.js").Item} Item */

/**
 * @typedef {object} OtherRun The selected image analysed by the compared model.
 * @property {string} key The model and the settings it was asked with (JSON).
 * @property {string} model
 * @property {AnalysisResult | null} result
 * @property {Images | null} images
 * @property {string | null} error Why it failed.
 */

/**
 * @typedef {object} RowElements
 * @property {HTMLElement} panels the first row
 * @property {HTMLElement} other the second row (#panels-other, filled with copies of the first's panels)
 * @property {HTMLElement} label the first row's name (#row-label)
 * @property {HTMLElement} otherLabel the second row's name (#other-label)
 * @property {HTMLElement} otherStatus progress and errors of the second row (#other-status)
 * @property {HTMLSelectElement | null} select "compare with" (#compare-model; absent with one model)
 */

/**
 * @param {HTMLElement} panels the first row
 * @returns {RowElements}
 */
function rowElements(panels) {
  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const select = /** @type {HTMLSelectElement | null} */ (document.getElementById("compare-model"));
  return { panels, other: $("panels-other"), label: $("row-label"), otherLabel: $("other-label"), otherStatus: $("other-status"), select };
}

/**
 * Copies of the first row's panels, without ids, focus stops or crosshairs (the second row is drawn, not pointed at).
 * @param {HTMLElement} panels
 * @returns {HTMLElement[]}
 */
function copyPanels(panels) {
  return [.../** @type {NodeListOf<HTMLElement>} */ (panels.querySelectorAll(":scope > .panel"))].map((panel) => {
    const copy = /** @type {HTMLElement} */ (panel.cloneNode(true));
    for (const node of copy.querySelectorAll("[id]")) node.removeAttribute("id");
    for (const node of copy.querySelectorAll("[tabindex]")) node.removeAttribute("tabindex");
    for (const node of copy.querySelectorAll(".cross-h, .cross-v")) node.remove();
    copy.id = `other-${panel.id}`;
    return copy;
  });
}

/**
 * @param {Config} config
 * @param {HTMLElement} panels the first row
 * @param {() => Item | null} current the item on screen
 * @param {() => number} opacity the prediction overlay's opacity
 * @returns {{show: (item: Item | null) => void, redraw: () => void}}
 */
export function bindModelRow(config, panels, current, opacity) {
  const els = rowElements(panels);
  if (els.select) els.other.replaceChildren(...copyPanels(els.panels));
  const chosen = () => (els.select ? els.select.value : "");
  /** @param {string} text */
  const note = (text) => {
    els.otherStatus.textContent = text;
    els.otherStatus.hidden = !text;
  };

  /** @param {OtherRun} run */
  function draw(run) {
    renderScales(els.other, modelPage(config, run.model));
    if (!run.result || !run.images) {
      clearPanels(els.other);
      renderPanelMeans(els.other, null);
      note(run.error ? `Model ${run.model}: ${run.error}` : `Analysing with model ${run.model}…`);
      return;
    }
    const { width, height } = run.result;
    drawRow(els.other, run.images, width, height, opacity());
    renderPanelMeans(els.other, run.result);
    const size = els.other.querySelector('.panel[data-panel="input"] .scale span');
    if (size) size.textContent = `analysed at ${width}×${height}`;
    els.other.dataset.analysisId = run.result.analysis_id || "";
    note("");
  }

  /**
   * @param {DoneItem} item
   * @param {OtherRun} run
   */
  async function analyse(item, run) {
    try {
      const result = await analyze(config.endpoints.analyze, item.file, { ...item.params, model: run.model });
      Object.assign(run, { result, images: (await decodeResult(result, config)).images });
    } catch (err) {
      run.error = /** @type {Error} */ (err).message || String(err);
    }
    if (current() === item && item.other === run) show(item);
  }

  /** @param {Item | null} item */
  function show(item) {
    const model = chosen();
    const on = Boolean(item && item.status === "done" && model);
    els.other.hidden = els.otherLabel.hidden = !on;
    els.label.hidden = !(item && item.status === "done" && config.models.length > 1);
    if (item && item.status === "done") els.label.textContent = `Model ${item.result.model}`;
    if (!on || !item || item.status !== "done") {
      note("");
      delete els.other.dataset.model;
      return;
    }
    const key = JSON.stringify({ model, params: item.params });
    if (!item.other || item.other.key !== key) {
      item.other = { key, model, result: null, images: null, error: null };
      analyse(item, item.other);
    }
    els.otherLabel.textContent = `Model ${model}`;
    els.other.dataset.model = model;
    els.other.dataset.state = item.other.result ? "ready" : item.other.error ? "error" : "busy";
    draw(item.other);
  }

  if (els.select) els.select.addEventListener("change", () => show(current()));
  return {
    show,
    redraw: () => {
      const item = current();
      const run = item && item.status === "done" && chosen() ? item.other : null;
      if (item && run && run.images && run.result && item.other === run) {
        const panel = /** @type {HTMLElement} */ (els.other.querySelector('.panel[data-panel="prediction"]'));
        drawPanel(panel, "prediction", run.images, run.result.width, run.result.height, opacity());
      }
    },
  };
}
