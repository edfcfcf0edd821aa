// The evaluation view of an image scored against its mask: metrics tables and the reliability diagram.

const DETECTION_MAPS = ["confidence", "entropy", "variance", "mutual_information"];

function fmt(value, digits = 4) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function cell(tag, text, attrs = {}) {
  const el = document.createElement(tag);
  el.textContent = text;
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "className") el.className = v;
    else el.setAttribute(k, v);
  }
  return el;
}

function summaryRows(result) {
  const m = result.metrics;
  const cal = m.calibration;
  const rows = [
    ["miou", "mIoU", fmt(m.segmentation.miou)],
    ["pixel_accuracy", "Pixel accuracy", fmt(m.segmentation.pixel_accuracy)],
    ["pixels", "Labelled pixels", String(m.segmentation.pixels)],
    ["wrong", "Wrong / not scored", `${result.error_map.wrong} / ${result.error_map.ignored}`],
    ["ece_softmax", "ECE softmax (τ = 1)", fmt(cal.softmax.ece)],
  ];
  if (cal.softmax_scaled) rows.push(["ece_softmax_scaled", `ECE τ-scaled (τ = ${m.temperature})`, fmt(cal.softmax_scaled.ece)]);
  rows.push(["ece_mc_mean", `ECE MC mean (τ = ${result.temperature})`, fmt(cal.mc_mean.ece)]);
  return rows;
}

function detectionTable(table, result, titles) {
  const { error_detection: errors, ood_detection: ood } = result.metrics;
  const head = ["Map", "Error AUROC", "AURC"];
  if (ood) head.push(`OOD AUROC (label ${result.metrics.ood_label})`);
  table.tHead.rows[0].replaceChildren(...head.map((h, i) => cell("th", h, { scope: "col", className: i ? "num" : "" })));
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const name of DETECTION_MAPS) {
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

function drawReliability(figure, image) {
  const canvas = figure.querySelector("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  canvas.getContext("2d").drawImage(image, 0, 0);
  canvas.dataset.drawn = "1";
}

/** Show the metrics and reliability diagram of an item scored against `item.mask`. */
export function renderEvaluation(root, item, titles) {
  const r = item.result;
  root.querySelector("#eval-mask-name").textContent = item.mask ? item.mask.name : "the mask";
  const summary = root.querySelector("#metrics-table").tBodies[0];
  summary.replaceChildren(
    ...summaryRows(r).map(([key, label, value]) => {
      const tr = document.createElement("tr");
      tr.append(cell("th", label, { scope: "row" }), cell("td", value, { className: "num", "data-metric": key }));
      return tr;
    }),
  );
  detectionTable(root.querySelector("#detection-table"), r, titles);
  const scaled = r.metrics.calibration.softmax_scaled ? " τ-scaled: the deterministic softmax at the model's fitted temperature." : "";
  root.querySelector("#metrics-notes").textContent = `${r.metrics.notes}.${scaled}`;
  drawReliability(root.querySelector("#reliability"), item.images.reliability);
  root.hidden = false;
}

/** Hide the evaluation view (an item without a mask, or not analysed yet). */
export function clearEvaluation(root) {
  root.hidden = true;
  const canvas = root.querySelector("#reliability canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.drawn;
  root.querySelector("#metrics-table").tBodies[0].replaceChildren();
  root.querySelector("#detection-table").tBodies[0].replaceChildren();
}
