// @ts-check
// The thumbnail strip: one button per upload, with its name and state.

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").ItemStatus} ItemStatus */

/** @type {Record<ItemStatus, string>} */
const STATES = { queued: "queued", busy: "analysing", done: "done", error: "error" };

/**
 * Create or update the thumbnail of `item` in `list`; a click calls `onSelect(item)`.
 * @param {HTMLElement} list
 * @param {Item} item
 * @param {boolean} selected
 * @param {(item: Item) => void} onSelect
 */
export function renderThumb(list, item, selected, onSelect) {
  let li = /** @type {HTMLLIElement | null} */ (list.querySelector(`[data-id="${item.id}"]`));
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = String(item.id);
    li.innerHTML = '<button type="button"><img alt=""><span class="name"></span><span class="state"></span><span class="score" hidden></span></button>';
    /** @type {HTMLButtonElement} */ (li.querySelector("button")).addEventListener("click", () => onSelect(item));
    const img = /** @type {HTMLImageElement} */ (li.querySelector("img"));
    img.addEventListener("error", () => img.removeAttribute("src"));
    img.src = item.thumbUrl;
    list.append(li);
  }
  const button = /** @type {HTMLButtonElement} */ (li.querySelector("button"));
  button.dataset.status = item.status;
  button.title = item.error ? `${item.name}: ${item.error}` : item.mask ? `${item.name} (scored against ${item.mask.name})` : item.name;
  button.setAttribute("aria-current", selected ? "true" : "false");
  /** @type {HTMLElement} */ (li.querySelector(".name")).textContent = item.name;
  /** @type {HTMLElement} */ (li.querySelector(".state")).textContent = item.mask ? `${STATES[item.status]} · mask` : STATES[item.status];
  if (item.result && /** @type {HTMLImageElement} */ (li.querySelector("img")).src !== item.result.image)
    /** @type {HTMLImageElement} */ (li.querySelector("img")).src = item.result.image;
}
