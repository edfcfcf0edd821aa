// @ts-check
// Downloads of the shown analysis, served by id from the server's cache (nothing is analysed again): every map as a
// PNG on its fixed scale, the error map and reliability diagram when scored, and the raw arrays as .npz.

import { fetchBlob } from "./api.js";

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
 * Fetch `url` and save it as `filename`; an expired analysis is reported in words.
 * @param {string} url
 * @param {string} filename
 * @param {string} itemName
 * @param {StatusSink} status
 */
async function save(url, filename, itemName, status) {
  status.busy(`Preparing ${filename}…`);
  try {
    const blob = url.startsWith("data:") ? await (await fetch(url)).blob() : await fetchBlob(url);
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
    status.idle(`Saved ${filename}.`);
  } catch (err) {
    status.error(`${itemName}: ${/** @type {Error} */ (err).message}`);
    status.idle("Download failed.");
  }
}

/**
 * Fill `container` with the PNG links and the NPZ button of an analysed item.
 * @param {HTMLElement} container
 * @param {DoneItem} item
 * @param {StatusSink} status
 */
export function renderDownloads(container, item, status) {
  const r = item.result;
  const base = stem(item.name);
  container.replaceChildren();
  if (!r.analysis_id) {
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = "This analysis was too large for the server to keep, so it cannot be downloaded by id; use the API with raw=true or format=npz.";
    container.append(note);
    return;
  }
  /**
   * @param {string} label
   * @param {string | null | undefined} href
   */
  const add = (label, href) => {
    if (!href) return;
    const a = document.createElement("a");
    a.href = href;
    a.download = `${base}_${label}.png`;
    a.textContent = `${label}.png`;
    a.addEventListener("click", (event) => {
      event.preventDefault();
      save(href, a.download, item.name, status);
    });
    container.append(a);
  };
  add("prediction", r.prediction.url);
  for (const m of r.maps) add(m.name, m.url);
  if (r.error_map) add("error_map", r.error_map.url);
  if (r.reliability_png) add("reliability", r.reliability_png);
  const npz = document.createElement("button");
  npz.type = "button";
  npz.id = "download-npz";
  npz.textContent = "raw maps (.npz)";
  const npzUrl = r.npz_url;
  if (npzUrl) npz.addEventListener("click", () => save(npzUrl, `${base}_maps.npz`, item.name, status));
  container.append(npz);
}
