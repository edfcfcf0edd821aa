// @ts-check
// Many images at once: the thumbnails as a gallery sorted by an image-level score (a map's image mean, its less
// trustworthy end first) with each score and its Monte-Carlo error, and how far the queue has come.

import { formatMean } from "./errorbars.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").MapInfo} MapInfo */

/**
 * @param {string[]} suffixes the file endings analysed (config.imageSuffixes)
 * @returns {(file: File) => boolean} whether a file found in a folder is an image to analyse
 */
export function imageFilter(suffixes) {
  return (file) => {
    const name = file.name.toLowerCase();
    return suffixes.some((suffix) => name.endsWith(suffix));
  };
}

/**
 * Fill the sort choice: upload order, then every map, named by which end comes first.
 * @param {HTMLSelectElement} select
 * @param {MapInfo[]} maps
 */
export function fillSortChoice(select, maps) {
  select.replaceChildren(new Option("upload order", ""));
  for (const m of maps) select.append(new Option(`${m.title} (${m.uncertainWhen === "low" ? "lowest" : "highest"} first)`, m.name));
}

/**
 * The score an item is sorted by (larger first) and its text, or null when it has none (not analysed, failed, or the
 * map is unavailable for its model).
 * @param {Item} item
 * @param {MapInfo} spec
 * @returns {{key: number, text: string, title: string} | null}
 */
function scoreOf(item, spec) {
  if (item.status !== "done" || !item.result || (item.result.unavailable || []).includes(spec.name)) return null;
  const m = item.result.maps.find((x) => x.name === spec.name);
  if (!m) return null;
  const shown = formatMean(m.mean, m.mean_error, item.result.error_method);
  return { key: spec.uncertainWhen === "low" ? -m.mean : m.mean, text: `${shown.value} ${shown.error}`, title: `${spec.title}, image mean: ${shown.title}` };
}

/**
 * Put the thumbnails of `list` in the order of `by` (a map name; "" keeps the upload order) and write each one's score.
 * Items without a score follow the scored ones, in upload order.
 * @param {HTMLElement} list the thumbnail list (`li[data-id]` per item)
 * @param {Item[]} items
 * @param {string} by
 * @param {MapInfo[]} maps
 */
export function arrangeGallery(list, items, by, maps) {
  const spec = maps.find((m) => m.name === by) || null;
  const scored = items.map((item) => ({ item, score: spec ? scoreOf(item, spec) : null }));
  scored.sort((a, b) => {
    if (a.score && b.score && a.score.key !== b.score.key) return b.score.key - a.score.key;
    if (a.score && !b.score) return -1;
    if (b.score && !a.score) return 1;
    return a.item.id - b.item.id;
  });
  /** @type {Map<string, HTMLLIElement>} */
  const byId = new Map();
  for (const li of /** @type {HTMLCollectionOf<HTMLLIElement>} */ (list.children)) byId.set(li.dataset.id || "", li);
  const focused = document.activeElement;
  scored.forEach(({ item, score }, index) => {
    const li = byId.get(String(item.id));
    if (!li) return;
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    const label = /** @type {HTMLElement} */ (li.querySelector(".score"));
    label.textContent = score ? score.text : "";
    label.title = score ? score.title : "";
    label.hidden = !score;
    if (score) li.dataset.score = String(score.key);
    else delete li.dataset.score;
  });
  if (focused instanceof HTMLElement && focused !== document.activeElement && list.contains(focused)) focused.focus();
}

/**
 * Show the gallery bar once there are several images, with how many of them are finished.
 * @param {HTMLElement} bar
 * @param {Item[]} items
 */
export function galleryProgress(bar, items) {
  bar.hidden = items.length < 2;
  const finished = items.filter((i) => i.status === "done" || i.status === "error").length;
  const failed = items.filter((i) => i.status === "error").length;
  const progress = /** @type {HTMLProgressElement} */ (bar.querySelector("progress"));
  progress.max = Math.max(1, items.length);
  progress.value = finished;
  /** @type {HTMLElement} */ (bar.querySelector(".gallery-count")).textContent =
    `${finished} of ${items.length} analysed${failed ? ` (${failed} failed)` : ""}`;
}
