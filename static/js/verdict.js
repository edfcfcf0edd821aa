// @ts-check
// The image-level verdict (the API's image_check): one conformal test with a stated false-alarm rate, shown for every
// analysis — unusual, not flagged (never "like the training data": absence of evidence is not evidence), or not checked
// with the reason in words — and the per-map percentiles behind it.

/** @typedef {import("./types.js").ImageOod} ImageOod */
/** @typedef {import("./types.js").ImageCheck} ImageCheck */

/** @param {number} p */
function pText(p) {
  return p < 0.001 ? p.toExponential(1) : p.toPrecision(2);
}

/**
 * The verdict's headline.
 * @param {ImageCheck} check
 * @returns {string}
 */
export function verdictTitle(check) {
  const p = check.p_value ?? NaN;
  const alpha = check.alpha ?? NaN;
  if (check.status === "unusual") return `Unusual image (p = ${pText(p)} ≤ ${alpha}): treat every label and confidence below as a guess.`;
  if (check.status === "not_flagged")
    return `Image-level check: not flagged (p = ${pText(p)} > ${alpha}). That does not mean the model knows this kind of image.`;
  return "Image-level check: this image was not checked.";
}

/**
 * @param {HTMLElement} root the verdict section (#ood-verdict)
 * @param {ImageCheck | null} check the analysis's image_check; null: no analysis shown (the section is hidden)
 * @param {ImageOod[]} verdicts the per-map percentiles (empty without a reference)
 */
export function renderVerdict(root, check, verdicts) {
  const title = /** @type {HTMLElement} */ (root.querySelector("#ood-title"));
  const message = /** @type {HTMLElement} */ (root.querySelector("#ood-message"));
  const list = /** @type {HTMLElement} */ (root.querySelector("#ood-list"));
  list.replaceChildren();
  root.hidden = check === null;
  if (check === null) {
    delete root.dataset.unusual;
    delete root.dataset.status;
    title.textContent = message.textContent = "";
    return;
  }
  const unusual = check.status === "unusual";
  root.dataset.status = check.status;
  root.dataset.unusual = String(unusual);
  if (check.p_value !== null) root.dataset.pValue = String(check.p_value);
  else delete root.dataset.pValue;
  root.classList.toggle("unusual", unusual);
  root.classList.toggle("not-checked", check.status === "not_checked");
  title.textContent = verdictTitle(check);
  message.textContent = check.message;
  for (const v of [...verdicts].sort((a, b) => Number(b.unusual) - Number(a.unusual))) {
    const li = document.createElement("li");
    li.dataset.map = v.map;
    li.dataset.percentile = String(v.percentile);
    li.textContent = `${v.message} (image mean ${v.image_mean.toPrecision(3)})`;
    list.append(li);
  }
}
