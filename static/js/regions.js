// @ts-check
// The region table: one row per class and per connected component, sortable by any column.

/** @typedef {import("./types.js").ClassInfo} ClassInfo */
/** @typedef {import("./types.js").RegionRow} RegionRow */

/** @type {{key: string | null, descending: boolean}} */
const state = { key: null, descending: false };

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
 * Fill the table body with `rows`, ordered by the current sort state.
 * @param {HTMLTableElement} table
 * @param {RegionRow[]} rows
 * @param {ClassInfo[]} classes
 * @param {string[]} mapNames the map columns, in order
 */
export function renderRegions(table, rows, classes, mapNames) {
  const body = table.tBodies[0];
  const ordered = rows.map((row, i) => ({ row, i }));
  if (state.key) {
    const dir = state.descending ? -1 : 1;
    ordered.sort((a, b) => {
      const va = sortValue(a.row, /** @type {string} */ (state.key));
      const vb = sortValue(b.row, /** @type {string} */ (state.key));
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return a.i - b.i;
    });
  }
  body.replaceChildren();
  for (const { row } of ordered) {
    const tr = document.createElement("tr");
    tr.className = row.kind;
    const name = cell(label(row));
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classes[row.class_index] ? classes[row.class_index].colour : "#888";
    swatch.style.marginRight = "6px";
    name.prepend(swatch);
    tr.append(name, cell(row.kind), cell(String(row.pixels), "num"), cell(`${(100 * row.share).toFixed(1)} %`, "num"));
    for (const m of mapNames) tr.append(cell(row.means[m].toFixed(4), "num"));
    body.append(tr);
  }
  for (const th of /** @type {HTMLTableSectionElement} */ (table.tHead).rows[0].cells) {
    const sorted = th.dataset.key === state.key;
    th.setAttribute("aria-sort", sorted ? (state.descending ? "descending" : "ascending") : "none");
  }
}

/**
 * Make header clicks sort the table; `redraw` re-renders with the current rows.
 * @param {HTMLTableElement} table
 * @param {() => unknown} redraw
 */
export function bindSorting(table, redraw) {
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
