// @ts-check
// Downloads: every map as the PNG the API sent (plus error map and reliability diagram when scored), and the raw maps as .npz (fetched on demand).

import { analyze } from "./api.js";

/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").StatusSink} StatusSink */

/**
 * A file-name-safe stem of an upload's name.
 * @param {string} name
 * @returns {string}
 */
export function stem(name) {
  return name.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9._-]+/g, "_") || "image";
}

/**
 * @param {DoneItem} item
 * @param {string} url the analyze endpoint
 * @param {StatusSink} status
 */
async function downloadNpz(item, url, status) {
  status.busy(`Preparing ${stem(item.name)}_maps.npz…`);
  try {
    const blob = await analyze(url, item.file, item.params, "npz");
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = `${stem(item.name)}_maps.npz`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
    status.idle(`Saved ${a.download}.`);
  } catch (err) {
    status.error(`${item.name}: ${/** @type {Error} */ (err).message}`);
    status.idle("Download failed.");
  }
}

/**
 * Fill `container` with PNG links and the NPZ button of an analysed item.
 * @param {HTMLElement} container
 * @param {DoneItem} item
 * @param {string} url the analyze endpoint
 * @param {StatusSink} status
 */
export function renderDownloads(container, item, url, status) {
  const r = item.result;
  const base = stem(item.name);
  container.replaceChildren();
  /**
   * @param {string} name
   * @param {string} href
   */
  const add = (name, href) => {
    const a = document.createElement("a");
    a.href = href;
    a.download = `${base}_${name}.png`;
    a.textContent = `${name}.png`;
    container.append(a);
  };
  add("prediction", r.prediction.png);
  for (const m of r.maps) add(m.name, m.png);
  if (r.error_map) add("error_map", r.error_map.png);
  if (r.reliability_png) add("reliability", r.reliability_png);
  const npz = document.createElement("button");
  npz.type = "button";
  npz.id = "download-npz";
  npz.textContent = "raw maps (.npz)";
  npz.addEventListener("click", () => downloadNpz(item, url, status));
  container.append(npz);
}
