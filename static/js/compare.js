// @ts-check
// "Compared with another image": per map, the selected image's mean ± its Monte-Carlo error, the other image's, the
// difference and whether it is beyond MC noise (noise.js); a selector of the other analysed images, by default the one
// shown before; a warning when the two analyses used different settings.

import { errorDecimals, formatMean, plain } from "./errorbars.js";
import { compareMeans, differingSettings } from "./noise.js";

/** @typedef {import("./types.js").DoneItem} DoneItem */
/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").MapInfo} MapInfo */
/** @typedef {import("./noise.js").Comparison} Comparison */

/**
 * @param {string} tag
 * @param {string} text
 * @param {string} [className]
 * @returns {HTMLElement}
 */
function el(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

/**
 * A table cell holding a mean and its error, the error in a smaller muted span.
 * @param {import("./errorbars.js").MeanText} text
 * @returns {HTMLElement}
 */
function meanCell(text) {
  const td = el("td", text.value, "num");
  td.append(" ", el("span", text.error, "pm"));
  td.title = text.title;
  return td;
}

/**
 * @param {Comparison} c
 * @returns {string} the signed difference, rounded to its combined error, with that error
 */
function differenceText(c) {
  const sign = c.difference > 0 ? "+" : c.difference < 0 ? "−" : "";
  const size = Math.abs(c.difference);
  if (!c.error) return sign + plain(size);
  const d = errorDecimals(c.error);
  return `${sign}${size.toFixed(d)} ± ${c.error.toFixed(d)}`;
}

/**
 * @param {Comparison} c
 * @returns {string} the verdict in words
 */
function verdictText(c) {
  if (c.verdict === "unknown") return "cannot be judged (no error estimate)";
  if (c.score === null) return c.verdict === "within" ? "within MC noise (equal, both exact)" : "beyond MC noise (both exact)";
  return `${c.verdict} MC noise (z = ${c.score.toFixed(1)})`;
}

/**
 * @param {DoneItem} item
 * @param {DoneItem[]} all
 * @returns {string} the item's name, with its number when another image has the same name
 */
function label(item, all) {
  return all.some((i) => i !== item && i.name === item.name) ? `${item.name} (#${item.id})` : item.name;
}

/**
 * Bind the comparison section; `show` draws it for the selected item (hidden unless it and another image are analysed).
 * @param {HTMLElement} root the section (#compare)
 * @param {MapInfo[]} maps every map, in display order
 * @param {number} z a difference is within MC noise when at most z combined standard errors (Config.noiseZ)
 * @returns {{prefer: (item: Item) => void, show: (item: Item | null, items: Item[]) => void}}
 */
export function bindComparison(root, maps, z) {
  const select = /** @type {HTMLSelectElement} */ (root.querySelector("#compare-with"));
  const body = /** @type {HTMLTableElement} */ (root.querySelector("#compare-table")).tBodies[0];
  const settings = /** @type {HTMLElement} */ (root.querySelector("#compare-settings"));
  const note = /** @type {HTMLElement} */ (root.querySelector("#compare-note"));
  /** @type {number | null} */
  let otherId = null;
  /** @type {[Item | null, Item[]]} */
  let shown = [null, []];

  /**
   * @param {Item | null} item
   * @param {Item[]} items
   */
  function show(item, items) {
    shown = [item, items];
    const done = /** @type {DoneItem[]} */ (items.filter((i) => i.status === "done"));
    const others = done.filter((i) => i !== item);
    if (!item || item.status !== "done" || !others.length) {
      root.hidden = true;
      body.replaceChildren();
      return;
    }
    const other = others.find((i) => i.id === otherId) || others[others.length - 1];
    otherId = other.id;
    select.replaceChildren(...others.map((i) => new Option(label(i, done), String(i.id), false, i === other)));
    /** @type {HTMLElement} */ (root.querySelector("#compare-this")).textContent = label(item, done);
    /** @type {HTMLElement} */ (root.querySelector("#compare-other")).textContent = label(other, done);
    const a = item.result;
    const b = other.result;
    body.replaceChildren();
    for (const map of maps) {
      const ma = a.maps.find((m) => m.name === map.name);
      const mb = b.maps.find((m) => m.name === map.name);
      if (!ma || !mb) continue;
      const c = compareMeans(ma.mean, ma.mean_error, mb.mean, mb.mean_error, z);
      const tr = document.createElement("tr");
      tr.dataset.map = map.name;
      const th = el("th", map.title);
      th.setAttribute("scope", "row");
      const verdict = el("td", verdictText(c), `noise-verdict ${c.verdict}`);
      verdict.dataset.verdict = c.verdict;
      tr.append(th, meanCell(formatMean(ma.mean, ma.mean_error, a.error_method)), meanCell(formatMean(mb.mean, mb.mean_error, b.error_method)));
      tr.append(el("td", differenceText(c), "num"), verdict);
      body.append(tr);
    }
    const diffs = differingSettings(a, b);
    settings.hidden = diffs.length === 0;
    settings.textContent = diffs.length
      ? `Not like for like: the two analyses used different settings (${diffs.map((d) => `${d.name} ${d.a} here, ${d.b} there`).join("; ")}), ` +
        "so a difference may come from the settings rather than the images."
      : "";
    const bound = a.error_method === "tile_bound" || b.error_method === "tile_bound";
    note.textContent =
      `Within MC noise: |a − b| ≤ ${z} · √(se_a² + se_b²), the errors combined as if independent; z is the difference in those combined standard errors. ` +
      (bound ? "A tiled analysis only bounds its errors, so \u201cwithin\u201d may hide a real difference. " : "") +
      (a.seed === b.seed ? `Both used seed ${a.seed} and may share dropout masks, which makes the difference less noisy than this: \u201cbeyond\u201d holds all the more.` : "");
    root.hidden = false;
  }

  select.addEventListener("change", () => {
    otherId = Number(select.value);
    show(...shown);
  });
  return {
    prefer(item) {
      if (item.status === "done") otherId = item.id;
    },
    show,
  };
}
