// @ts-check
// The run line and the input size under the input panel: how the shown analysis was made, in words.

import { tau } from "./controls.js";

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */

/**
 * @param {number} s seconds
 * @returns {string}
 */
const ms = (s) => `${Math.round(1000 * s)} ms`;

/**
 * @param {AnalysisResult} r
 * @returns {string} the analysed size, and the input's when it was resized
 */
export function inputSizeText(r) {
  const [width, height] = r.analysed_size;
  const resized = width !== r.input_width || height !== r.input_height;
  const preview = r.preview_factor > 1 ? `; shown as ${r.width}×${r.height} previews` : "";
  return `analysed at ${width}×${height} ${resized ? `(input ${r.input_width}×${r.input_height})` : "(the input's own size)"}${preview}`;
}

/**
 * @param {AnalysisResult} r
 * @param {boolean} named start with the model's name (when several are served)
 * @returns {string} samples, seed, temperature, device, size and timings of the analysis
 */
export function runInfoText(r, named) {
  return (
    (named ? `model ${r.model} · ` : "") +
    `${r.samples} MC sample${r.samples === 1 ? "" : "s"}${r.passes > 1 ? ` per pass × ${r.passes} passes (${r.method})` : ""} · seed ${r.seed} · τ = ${tau(r.temperature)} (${r.calibrated ? "calibrated" : "uncalibrated"}) · ${r.device} · ` +
    `${r.analysed_size[0]}×${r.analysed_size[1]} (${r.resolution === "working" ? "resized to the working size" : "every input pixel"}) · ` +
    `inference ${ms(r.timings.inference)} · total ${ms(r.timings.total)}` +
    (r.dropout_added_at_inference && r.samples > 0 ? ` · MC dropout ${r.dropout_note}` : "")
  );
}
