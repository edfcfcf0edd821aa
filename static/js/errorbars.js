// @ts-check
// Monte-Carlo error bars: a mean rounded to the precision of its standard error, each panel's image mean with its
// error, and the line under the region table that says how the errors were found.

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").ErrorMethod} ErrorMethod */

/**
 * @typedef {object} MeanText A mean and its error as shown.
 * @property {"se" | "bound" | "exact" | "unknown"} kind What the error is: a standard error, an upper bound of one, none (exact) or not known.
 * @property {string} value The mean, rounded to the error's decimal place (3 significant digits when there is no error to round to).
 * @property {string} error The error as shown after the mean ("± 0.004", "(≤ ±0.004)", "(exact)", "± ?").
 * @property {string} title What the error means, for a tooltip.
 */

/** @type {Record<ErrorMethod, string>} */
const METHODS = {
  jackknife:
    "± is the Monte-Carlo standard error of each mean: a delete-a-group jackknife over the MC samples (on the safe side: it tends to overstate the error). Means without ± come from the deterministic pass and are exact.",
  tile_bound:
    "Analysed in sliding windows (tiles): an image mean's error is an upper bound (the largest tile's Monte-Carlo error); region means of sampled maps have no error estimate (± ?).",
  exact:
    "0 MC samples: every map comes from deterministic passes (the model's, or its ensemble members' and test-time augmentations'), so every mean is exact (no Monte-Carlo error).",
  unavailable: "1 MC sample: the Monte-Carlo error of a sampled map cannot be estimated (it needs at least 2 samples): ± ?. Means without ± are exact.",
};

const RAO_BLACKWELLISED =
  "± is the Monte-Carlo standard error of each mean: a delete-a-group jackknife over the draws, widened so that ±1.96 errors is a 95 % interval. Means without ± come from the deterministic pass and are exact.";

/**
 * @param {ErrorMethod} method
 * @param {string} [estimator] the answer's estimator ("sampled" or "rao_blackwellised")
 * @param {number} [enumerated] its enumerated channels
 * @returns {string} how an analysis found its errors, in words
 */
export function methodText(method, estimator = "sampled", enumerated = 0) {
  if (estimator === "rao_blackwellised") {
    const channels = `${enumerated} channel${enumerated === 1 ? "" : "s"}`;
    const how = `Rao–Blackwellised: each pixel's ${channels} summed exactly, draws independent per block of pixels (so the image and region means average the noise out; the maps keep a fine grain), bias-corrected by the jackknife.`;
    return `${method === "jackknife" ? RAO_BLACKWELLISED : methodText(method)} ${how}`;
  }
  return METHODS[method] || `Monte-Carlo errors: ${method}.`;
}

/**
 * Decimal places that show `se` to 2 significant digits when its first digit is 1 or 2, else to 1.
 * @param {number} se a positive standard error
 * @returns {number}
 */
export function errorDecimals(se) {
  const exponent = Math.floor(Math.log10(se));
  const digits = se / 10 ** exponent < 3 ? 2 : 1;
  return Math.max(0, digits - 1 - exponent);
}

/**
 * @param {number} value
 * @returns {string} the value to 3 significant digits (fixed notation from 0.001 up)
 */
export function plain(value) {
  if (value === 0) return "0";
  return Math.abs(value) >= 0.001 ? value.toPrecision(3) : value.toPrecision(2);
}

/**
 * @param {ErrorMethod} method
 * @param {boolean} region whether the error is of a region's mean (tiled analyses estimate none)
 * @returns {string} why an error is not known
 */
function unknownTitle(method, region) {
  if (method === "tile_bound" && region) return "Not estimated: an analysis in sliding windows gives no error for region means.";
  if (method === "unavailable") return "Not estimable: the Monte-Carlo error needs at least 2 MC samples.";
  return "The Monte-Carlo error of this mean is not known.";
}

/**
 * A mean and its Monte-Carlo error, rounded so that the error has 1–2 significant digits and the mean the same decimal place.
 * @param {number} mean
 * @param {number | null | undefined} se its standard error (0: exact; null: not estimable)
 * @param {ErrorMethod} method how `se` was found ("tile_bound": an upper bound)
 * @param {boolean} [region] the mean is a region's, not the image's
 * @returns {MeanText}
 */
export function formatMean(mean, se, method, region = false) {
  if (se === null || se === undefined || !Number.isFinite(se)) return { kind: "unknown", value: plain(mean), error: "± ?", title: unknownTitle(method, region) };
  if (se === 0)
    return { kind: "exact", value: plain(mean), error: "(exact)", title: "Exact: this mean comes from the deterministic pass, so it has no Monte-Carlo error." };
  const d = errorDecimals(se);
  if (method === "tile_bound")
    return {
      kind: "bound",
      value: mean.toFixed(d),
      error: `(≤ ±${se.toFixed(d)})`,
      title: "Upper bound of the Monte-Carlo standard error: the largest tile's error (an analysis in sliding windows).",
    };
  return { kind: "se", value: mean.toFixed(d), error: `± ${se.toFixed(d)}`, title: "Monte-Carlo standard error of the mean (jackknife over the MC samples)." };
}

/**
 * Write each panel map's image mean and error under its view (elements `.map-mean[data-map]`); without a result, a dash.
 * @param {ParentNode} container
 * @param {AnalysisResult | null} result
 */
export function renderPanelMeans(container, result) {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (container.querySelectorAll(".map-mean[data-map]"))) {
    const out = result && result.maps.find((m) => m.name === el.dataset.map);
    const value = /** @type {HTMLElement} */ (el.querySelector(".mean-value"));
    const error = /** @type {HTMLElement} */ (el.querySelector(".mean-error"));
    if (!result || !out) {
      value.textContent = "—";
      error.textContent = "";
      el.title = "";
      delete el.dataset.kind;
      continue;
    }
    const text = formatMean(out.mean, out.mean_error, result.error_method);
    value.textContent = text.value;
    error.textContent = text.error;
    el.title = text.title;
    el.dataset.kind = text.kind;
  }
}
