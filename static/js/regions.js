// @ts-check
// The region table: one row per class and per connected component, sortable by any column (names in natural order:
// "disc #2" before "disc #10"); a long table shows its largest rows until "show all" is pressed.

import { formatMean } from "./errorbars.js";
import { UNAVAILABLE_TITLE } from "./readout.js";

/** @typedef {import("./types.js").ClassInfo} ClassInfo */
/** @typedef {import("./types.js").ErrorMethod} ErrorMethod */
/** @typedef {import("./types.js").RegionRow} RegionRow */

/** @type {{key: string | null, descending: boolean, expanded: boolean}} */
const state = { key: null, descending: false, expanded: false };

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/**
 * Natural order of two labels: runs of digits compare as numbers ("#2" before "#10").
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
export function naturalCompare(a, b) {
  return collator.compare(a, b);
}

/**
 * @param {string | number} a
 * @param {string | number} b
 * @returns {number}
 */
function compareValues(a, b) {
  if (typeof a === "string" && typeof b === "string") return naturalCompare(a, b);
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The rows shown: all of them, or the `limit` largest by area (in their table order).
 * @template {{pixels: number}} T
 * @param {T[]} rows
 * @param {number} limit
 * @returns {Set<T>}
 */
export function largest(rows, limit) {
  return new Set([...rows].sort((a, b) => b.pixels - a.pixels).slice(0, limit));
}

/**
 * @param {RegionRow} row
 * @returns {string} the row's label: the class name, and the component's rank for a component
 */
function label(row) {
  return row.kind === "class" ? `${row.class_name} (all)` : `${row.class_name} #${row.component}`;
}

/**
 * @param {RegionRow} row
 * @param {string} key a column's data-key: label, kind, pixels, share or a map's name
 * @returns {string | number}
 */
function sortValue(row, key) {
  if (key === "label") return label(row);
  if (key === "kind") return row.kind;
  if (key === "pixels" || key === "share") return row[key];
  return row.means[key];
}

/**
 * @param {string} text
 * @param {string} [className]
 * @returns {HTMLTableCellElement}
 */
function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/**
 * A map's cell: the region's mean rounded to its Monte-Carlo error, the error in a smaller muted span (none when exact).
 * @param {number} mean
 * @param {number | null | undefined} se
 * @param {ErrorMethod} method
 * @returns {HTMLTableCellElement}
 */
function meanCell(mean, se, method) {
  const text = formatMean(mean, se, method, true);
  if (text.kind === "exact") return cell(mean.toFixed(4), "num");
  const td = cell(text.kind === "unknown" ? mean.toFixed(4) : text.value, "num");
  const pm = document.createElement("span");
  pm.className = "pm";
  pm.textContent = text.kind === "bound" ? text.error.slice(1, -1) : text.error.replace(" ", "");
  td.append(" ", pm);
  td.title = text.title;
  return td;
}

/** @returns {HTMLTableCellElement} the cell of a map the analysis could not compute */
function unavailableCell() {
  const td = cell("—", "num");
  td.title = UNAVAILABLE_TITLE;
  return td;
}

/**
 * Fill the table body with `rows`, ordered by the current sort state; unless expanded, only the `limit` largest.
 * @param {HTMLTableElement} table
 * @param {RegionRow[]} rows
 * @param {ErrorMethod} method how the rows' errors were found
 * @param {ClassInfo[]} classes
 * @param {string[]} mapNames the map columns, in order
 * @param {number} limit rows shown before "show all"
 * @param {HTMLButtonElement} more the "show all" / "show fewer" button
 * @param {string[]} unavailable maps the analysis could not compute: their cells read "—"
 */
export function renderRegions(table, rows, method, classes, mapNames, limit, more, unavailable) {
  const body = table.tBodies[0];
  const ordered = rows.map((row, i) => ({ row, i }));
  if (state.key) {
    const dir = state.descending ? -1 : 1;
    ordered.sort((a, b) => {
      const va = sortValue(a.row, /** @type {string} */ (state.key));
      const vb = sortValue(b.row, /** @type {string} */ (state.key));
      return dir * compareValues(va, vb) || a.i - b.i;
    });
  }
  body.replaceChildren();
  const shown = state.expanded || rows.length <= limit ? null : largest(rows, limit);
  more.hidden = rows.length <= limit;
  more.textContent = state.expanded ? `Show the largest ${limit}` : `Show all ${rows.length} regions`;
  more.setAttribute("aria-expanded", String(state.expanded));
  table.dataset.rows = String(rows.length);
  for (const { row } of ordered) {
    if (shown && !shown.has(row)) continue;
    const tr = document.createElement("tr");
    tr.className = row.kind;
    const name = cell(label(row));
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classes[row.class_index] ? classes[row.class_index].colour : "#888";
    swatch.style.marginRight = "6px";
    name.prepend(swatch);
    tr.append(name, cell(row.kind), cell(String(row.pixels), "num"), cell(`${(100 * row.share).toFixed(1)} %`, "num"));
    for (const m of mapNames) tr.append(unavailable.includes(m) ? unavailableCell() : meanCell(row.means[m], row.errors ? row.errors[m] : null, method));
    body.append(tr);
  }
  for (const th of /** @type {HTMLTableSectionElement} */ (table.tHead).rows[0].cells) {
    const sorted = th.dataset.key === state.key;
    th.setAttribute("aria-sort", sorted ? (state.descending ? "descending" : "ascending") : "none");
  }
}

/**
 * Make header clicks sort the table and `more` toggle between the largest rows and all; `redraw` re-renders with the current rows.
 * @param {HTMLTableElement} table
 * @param {HTMLButtonElement} more
 * @param {() => unknown} redraw
 */
export function bindSorting(table, more, redraw) {
  more.addEventListener("click", () => {
    state.expanded = !state.expanded;
    redraw();
  });
  /** @type {HTMLTableSectionElement} */ (table.tHead).addEventListener("click", (event) => {
    const th = /** @type {HTMLElement | null} */ (/** @type {Element} */ (event.target).closest("th[data-key]"));
    if (!th) return;
    const key = /** @type {string} */ (th.dataset.key);
    if (state.key === key) state.descending = !state.descending;
    else {
      state.key = key;
      state.descending = !["label", "kind"].includes(key);
    }
    redraw();
  });
}
