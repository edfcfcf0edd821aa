// @ts-check
// Evaluate mode: the optional mask input. A mask scores the selected image (which is re-run against it),
// or, when no image is selected yet, the next image added.

/** @typedef {import("./types.js").Item} Item */

/**
 * Bind the mask controls.
 * @param {{maskInput: HTMLInputElement, maskClear: HTMLElement, maskNote: HTMLElement}} els the page's elements (maskInput, maskClear, maskNote)
 * @param {() => Item | null} selected the selected item, if any
 * @param {(item: Item) => void} requeue re-run an item
 * @returns {{take: () => File|null, note: () => void}} take the mask waiting for the next image; refresh the note
 */
export function bindMask(els, selected, requeue) {
  const fallback = els.maskNote.textContent;
  /** @type {File | null} */
  let pending = null;

  function note() {
    const item = selected();
    const scored = item && item.mask ? item : null;
    if (pending) els.maskNote.textContent = `Mask ${pending.name} will score the next image you add.`;
    else if (scored) els.maskNote.textContent = `Scoring ${scored.name} against ${/** @type {File} */ (scored.mask).name}.`;
    else els.maskNote.textContent = fallback;
    els.maskClear.hidden = !(pending || scored);
  }

  els.maskInput.addEventListener("change", () => {
    const file = /** @type {FileList} */ (els.maskInput.files)[0];
    els.maskInput.value = "";
    if (!file) return;
    const item = selected();
    if (item) {
      item.mask = file;
      pending = null;
      requeue(item);
    } else pending = file;
    note();
  });
  els.maskClear.addEventListener("click", () => {
    pending = null;
    const item = selected();
    if (item && item.mask) {
      item.mask = null;
      requeue(item);
    }
    note();
  });

  return {
    take() {
      const mask = pending;
      pending = null;
      return mask;
    },
    note,
  };
}
