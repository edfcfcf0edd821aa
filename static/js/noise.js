// @ts-check
// Is the difference of two map means beyond Monte-Carlo noise? |a − b| ≤ z · sqrt(se_a² + se_b²) says "within",
// with z from the page's config (the server's rule, app/maps/mc_error.py). And which settings two analyses differ in.
// Pure functions, no DOM.

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */

/**
 * @typedef {object} Comparison Two means compared against their combined Monte-Carlo error.
 * @property {number} difference a − b.
 * @property {number | null} error sqrt(se_a² + se_b²); null when either error is not known.
 * @property {number | null} score |a − b| / error, the difference in combined standard errors; null when error is null or 0.
 * @property {"within" | "beyond" | "unknown"} verdict within or beyond MC noise, or unknown when either error is.
 */

/**
 * @param {number | null | undefined} se
 * @returns {se is number} whether the error is known
 */
function known(se) {
  return typeof se === "number" && Number.isFinite(se);
}

/**
 * Compare mean `a` (standard error `seA`) with mean `b` (`seB`), the errors combined as if independent.
 * @param {number} a
 * @param {number | null | undefined} seA
 * @param {number} b
 * @param {number | null | undefined} seB
 * @param {number} z the threshold in combined standard errors (Config.noiseZ)
 * @returns {Comparison}
 */
export function compareMeans(a, seA, b, seB, z) {
  const difference = a - b;
  if (!known(seA) || !known(seB)) return { difference, error: null, score: null, verdict: "unknown" };
  const error = Math.hypot(seA, seB);
  const within = Math.abs(difference) <= z * error;
  return { difference, error, score: error > 0 ? Math.abs(difference) / error : null, verdict: within ? "within" : "beyond" };
}

/**
 * @typedef {object} SettingDifference One setting two analyses differ in.
 * @property {string} name The setting, in words.
 * @property {string} a Its value in the first analysis.
 * @property {string} b Its value in the second.
 */

/** @type {[keyof AnalysisResult, string][]} */
const SETTINGS = [
  ["model", "model"],
  ["samples", "MC samples"],
  ["seed", "seed"],
  ["calibrated", "calibration"],
  ["resolution", "resolution"],
  ["method", "method"],
];

/**
 * @param {keyof AnalysisResult} key
 * @param {AnalysisResult} result
 * @returns {string}
 */
function settingText(key, result) {
  const value = result[key];
  if (key === "calibrated") return value ? "calibrated" : "uncalibrated";
  return String(value);
}

/**
 * The settings (model, samples, seed, calibrated, resolution, method) in which two analyses differ: then they are not like for like.
 * @param {AnalysisResult} a
 * @param {AnalysisResult} b
 * @returns {SettingDifference[]}
 */
export function differingSettings(a, b) {
  return SETTINGS.filter(([key]) => a[key] !== b[key]).map(([key, name]) => ({ name, a: settingText(key, a), b: settingText(key, b) }));
}
