// @ts-check
// The settings controls: reading the request parameters, errors shown beside the control the API names, and the
// calibrated note (which describes the maps on screen, not the checkbox).

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").Params} Params */

import { modelPage } from "./models.js";

/**
 * @typedef {object} ControlElements The form's controls.
 * @property {HTMLSelectElement | null} model The model selector (absent when one model is served).
 * @property {HTMLInputElement} samples
 * @property {HTMLInputElement} seed
 * @property {HTMLInputElement} calibrated
 * @property {HTMLSelectElement} resolution
 * @property {HTMLSelectElement} tta
 * @property {HTMLInputElement} ignoreIndex
 * @property {HTMLInputElement} oodLabel
 * @property {HTMLInputElement} adversarial
 */

/**
 * @param {HTMLInputElement} input a number field
 * @returns {number} its value rounded to an integer; NaN when it is empty or not a number
 */
function intValue(input) {
  return input.value.trim() === "" ? NaN : Math.round(Number(input.value));
}

/**
 * @param {string} value the test-time augmentation control's value
 * @returns {import("./types.js").Tta}
 */
function ttaValue(value) {
  return value === "flips" || value === "flips+scales" || value === "photometric" ? value : "none";
}

/**
 * The request parameters in the form; an empty field takes the server's default (for samples: the chosen model's).
 * @param {ControlElements} els
 * @param {Config} config
 * @returns {Params}
 */
export function readParams(els, config) {
  const samples = intValue(els.samples);
  const seed = intValue(els.seed);
  const ignoreIndex = intValue(els.ignoreIndex);
  const ood = intValue(els.oodLabel);
  const model = els.model ? els.model.value : config.defaultModel;
  return {
    model,
    samples: Number.isFinite(samples) ? samples : modelPage(config, model).defaultSamples,
    seed: Number.isFinite(seed) ? seed : config.defaultSeed,
    calibrated: els.calibrated.checked,
    resolution: els.resolution.value === "full" ? "full" : "working",
    tta: ttaValue(els.tta.value),
    ignoreIndex: Number.isFinite(ignoreIndex) ? ignoreIndex : config.defaultIgnoreIndex,
    oodLabel: Number.isFinite(ood) ? ood : null,
    adversarial: els.adversarial.checked,
  };
}

/**
 * Show an API error beside the control it names (the element #error-<field>); false when the page has no such control.
 * @param {string | null} field the API's error.field
 * @param {string} message
 * @returns {boolean}
 */
export function showFieldError(field, message) {
  const slot = field ? document.getElementById(`error-${field}`) : null;
  if (!slot) return false;
  slot.textContent = message;
  slot.hidden = false;
  const control = document.querySelector(`[aria-describedby="error-${field}"]`);
  if (control) control.setAttribute("aria-invalid", "true");
  return true;
}

/** Hide every error shown beside a control. */
export function clearFieldErrors() {
  for (const slot of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".field-error"))) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const control of document.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/**
 * @param {number} t a temperature
 * @returns {string} it to four significant digits
 */
export function tau(t) {
  return String(Number(t.toPrecision(4)));
}

/**
 * Say which temperature the maps on screen used, whatever the checkbox now says.
 * @param {HTMLElement} note
 * @param {number} fittedTemperature the model's fitted τ (1: never calibrated)
 * @param {AnalysisResult | null} shown the result on screen, if any
 */
export function temperatureNote(note, fittedTemperature, shown) {
  const fitted = tau(fittedTemperature);
  if (!shown) note.textContent = fitted === "1" ? "(no fitted temperature: τ = 1)" : `(fitted τ = ${fitted})`;
  else if (shown.calibrated) note.textContent = `(maps shown: calibrated, τ = ${tau(shown.temperature)}${fitted === "1" ? ", no fitted temperature" : ""})`;
  else note.textContent = `(maps shown: τ = 1${fitted === "1" ? "" : `; fitted τ = ${fitted}`})`;
}
