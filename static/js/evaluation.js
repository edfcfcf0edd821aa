// @ts-check
// The evaluation view of an image scored against its mask: metrics tables and the reliability diagram.

/** @typedef {import("./types.js").ScoredItem} ScoredItem */
/** @typedef {import("./types.js").EvaluateResponse} EvaluateResponse */
/** @typedef {import("./types.js").ErrorLegendEntry} ErrorLegendEntry */

/**
 * @param {number | null | undefined} value
 * @param {number} [digits]
 * @returns {string} the value with `digits` decimals, or a dash when it is not a finite number
 */
function fmt(value, digits = 4) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/**
 * @param {string} tag
 * @param {string} text
 * @param {Record<string, string>} [attrs] attributes; className sets the class
 * @returns {HTMLElement}
 */
function cell(tag, text, attrs = {}) {
  const el = document.createElement(tag);
  el.textContent = text;
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "className") el.className = v;
    else el.setAttribute(k, v);
  }
  return el;
}

/**
 * @param {string} text
 * @returns {string} the text with its first letter upper-case
 */
function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * @param {EvaluateResponse} result
 * @param {ErrorLegendEntry[]} errorLegend what each error-map code means (1 wrong, 2 not scored)
 * @returns {[key: string, label: string, value: string][]}
 */
function summaryRows(result, errorLegend) {
  const m = result.metrics;
  const cal = m.calibration;
  /** @type {[key: string, label: string, value: string][]} */
  const rows = [
    ["miou", "mIoU", fmt(m.segmentation.miou)],
    ["pixel_accuracy", "Pixel accuracy", fmt(m.segmentation.pixel_accuracy)],
    ["pixels", "Labelled pixels", String(m.segmentation.pixels)],
    ["wrong", `${capitalise(errorLegend[1].name)} / ${errorLegend[2].name}`, `${result.error_map.wrong} / ${result.error_map.ignored}`],
    ["ece_softmax", "ECE softmax (τ = 1)", fmt(cal.softmax.ece)],
  ];
  if (cal.softmax_scaled) rows.push(["ece_softmax_scaled", `ECE τ-scaled (τ = ${m.temperature})`, fmt(cal.softmax_scaled.ece)]);
  rows.push(["ece_mc_mean", `ECE MC mean (τ = ${result.temperature})`, fmt(cal.mc_mean.ece)]);
  return rows;
}

/**
 * @param {HTMLTableElement} table
 * @param {EvaluateResponse} result
 * @param {Record<string, string>} titles map titles by name
 * @param {string[]} detectionMaps the maps to list, in order
 */
function detectionTable(table, result, titles, detectionMaps) {
  const { error_detection: errors, ood_detection: ood } = result.metrics;
  const head = ["Map", "Error AUROC", "AURC"];
  if (ood) head.push(`OOD AUROC (label ${result.metrics.ood_label})`);
  /** @type {HTMLTableSectionElement} */ (table.tHead).rows[0].replaceChildren(...head.map((h, i) => cell("th", h, { scope: "col", className: i ? "num" : "" })));
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const name of detectionMaps) {
    if (!errors[name]) continue;
    const tr = document.createElement("tr");
    tr.dataset.map = name;
    tr.append(cell("th", titles[name] || name, { scope: "row" }));
    tr.append(cell("td", fmt(errors[name].auroc, 3), { className: "num", "data-metric": "error_auroc" }));
    tr.append(cell("td", fmt(errors[name].aurc, 3), { className: "num", "data-metric": "aurc" }));
    if (ood) {
      const value = ood[name] ? ood[name].auroc : null;
      const td = cell("td", fmt(value, 3), { className: "num", "data-metric": "ood_auroc" });
      if (value === null) td.title = "no OOD pixels (or no in-distribution pixels) in this mask";
      tr.append(td);
    }
    body.append(tr);
  }
}

/**
 * @param {HTMLElement} figure
 * @param {HTMLImageElement} image
 */
function drawReliability(figure, image) {
  const canvas = /** @type {HTMLCanvasElement} */ (figure.querySelector("canvas"));
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")).drawImage(image, 0, 0);
  canvas.dataset.drawn = "1";
}

/**
 * Show the metrics and reliability diagram of an item scored against `item.mask`.
 * @param {HTMLElement} root
 * @param {ScoredItem} item
 * @param {Record<string, string>} titles map titles by name
 * @param {string[]} detectionMaps the maps of the detection table, in order (the config's detectionMaps)
 * @param {ErrorLegendEntry[]} errorLegend what each error-map code means, indexed by the code (the config's errorLegend)
 */
export function renderEvaluation(root, item, titles, detectionMaps, errorLegend) {
  const r = item.result;
  /** @type {HTMLElement} */ (root.querySelector("#eval-mask-name")).textContent = item.mask ? item.mask.name : "the mask";
  const summary = /** @type {HTMLTableElement} */ (root.querySelector("#metrics-table")).tBodies[0];
  summary.replaceChildren(
    ...summaryRows(r, errorLegend).map(([key, label, value]) => {
      const tr = document.createElement("tr");
      tr.append(cell("th", label, { scope: "row" }), cell("td", value, { className: "num", "data-metric": key }));
      return tr;
    }),
  );
  detectionTable(/** @type {HTMLTableElement} */ (root.querySelector("#detection-table")), r, titles, detectionMaps);
  const scaled = r.metrics.calibration.softmax_scaled ? " τ-scaled: the deterministic softmax at the model's fitted temperature." : "";
  /** @type {HTMLElement} */ (root.querySelector("#metrics-notes")).textContent = `${r.metrics.notes}.${scaled}`;
  drawReliability(/** @type {HTMLElement} */ (root.querySelector("#reliability")), /** @type {HTMLImageElement} */ (item.images.reliability));
  root.hidden = false;
}

/**
 * Hide the evaluation view (an item without a mask, or not analysed yet).
 * @param {HTMLElement} root
 */
export function clearEvaluation(root) {
  root.hidden = true;
  const canvas = /** @type {HTMLCanvasElement} */ (root.querySelector("#reliability canvas"));
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")).clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.drawn;
  /** @type {HTMLTableElement} */ (root.querySelector("#metrics-table")).tBodies[0].replaceChildren();
  /** @type {HTMLTableElement} */ (root.querySelector("#detection-table")).tBodies[0].replaceChildren();
}
