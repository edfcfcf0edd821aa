// The region table: one row per class and per connected component, sortable by any column.

const state = { key: null, descending: false };

function label(row) {
  return row.kind === "class" ? `${row.class_name} (all)` : `${row.class_name} #${row.component}`;
}

function sortValue(row, key) {
  if (key === "label") return label(row);
  if (key === "kind") return row.kind;
  if (key === "pixels" || key === "share") return row[key];
  return row.means[key];
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** Fill the table body with `rows`, ordered by the current sort state. */
export function renderRegions(table, rows, classes, mapNames) {
  const body = table.tBodies[0];
  const ordered = rows.map((row, i) => ({ row, i }));
  if (state.key) {
    const dir = state.descending ? -1 : 1;
    ordered.sort((a, b) => {
      const va = sortValue(a.row, state.key);
      const vb = sortValue(b.row, state.key);
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
  for (const th of table.tHead.rows[0].cells) {
    const sorted = th.dataset.key === state.key;
    th.setAttribute("aria-sort", sorted ? (state.descending ? "descending" : "ascending") : "none");
  }
}

/** Make header clicks sort the table; `redraw` re-renders with the current rows. */
export function bindSorting(table, redraw) {
  table.tHead.addEventListener("click", (event) => {
    const th = event.target.closest("th[data-key]");
    if (!th) return;
    const key = th.dataset.key;
    if (state.key === key) state.descending = !state.descending;
    else {
      state.key = key;
      state.descending = !["label", "kind"].includes(key);
    }
    redraw();
  });
}
