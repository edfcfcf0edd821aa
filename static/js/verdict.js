// @ts-check
// The image-level out-of-distribution verdict: where this image's map means fall among the model's validation images.
// Shown prominently when any map calls the image unusual, as one quiet line otherwise, hidden when the model has no reference.

/** @typedef {import("./types.js").ImageOod} ImageOod */

/**
 * @param {HTMLElement} root the verdict section (#ood-verdict)
 * @param {ImageOod[]} verdicts one per detection map; empty when the model has no image reference
 */
export function renderVerdict(root, verdicts) {
  const title = /** @type {HTMLElement} */ (root.querySelector("#ood-title"));
  const list = /** @type {HTMLElement} */ (root.querySelector("#ood-list"));
  list.replaceChildren();
  root.hidden = verdicts.length === 0;
  if (!verdicts.length) {
    delete root.dataset.unusual;
    return;
  }
  const unusual = verdicts.filter((v) => v.unusual);
  root.dataset.unusual = String(unusual.length > 0);
  root.classList.toggle("unusual", unusual.length > 0);
  title.textContent = unusual.length
    ? "This image is unlike anything the model was trained on: treat every label and confidence below as a guess."
    : "Image-level check: this image is within what the model saw in validation.";
  for (const v of unusual.length ? unusual : verdicts) {
    const li = document.createElement("li");
    li.dataset.map = v.map;
    li.dataset.percentile = String(v.percentile);
    li.textContent = `${v.message} (image mean ${v.image_mean.toPrecision(3)})`;
    list.append(li);
  }
}
