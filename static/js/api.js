// @ts-check
// Talk to the REST API; every failure becomes an Error whose message is the API's words.

import { authHeaders } from "./apikey.js";

/** @typedef {import("./types.js").AnalyzeResponse} AnalyzeResponse */
/** @typedef {import("./types.js").EvaluateResponse} EvaluateResponse */
/** @typedef {import("./types.js").ErrorResponse} ErrorResponse */
/** @typedef {import("./types.js").Params} Params */
/** @typedef {import("./types.js").PixelResponse} PixelResponse */
/** @typedef {import("./api-types").components["schemas"]["JobStatus"]} JobStatus Where a long analysis (a job, 202) stands. */

/**
 * @typedef {object} JobWatch What the caller sees of an analysis the server runs as a job (202: over its budget for an immediate answer).
 * @property {(status: JobStatus) => void} progress called with every status polled, the last one finished
 * @property {AbortSignal} signal aborting it cancels the job (DELETE) and rejects with an ApiError of code "cancelled"
 */

const JOB_POLL_MS = 300;

export class ApiError extends Error {
  /**
   * @param {string} message what went wrong, in the API's words
   * @param {number} status the HTTP status (0: no response)
   * @param {string} code the API's machine-readable error code
   * @param {string | null} [field] the request field at fault, when the API names one
   */
  constructor(message, status, code, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * @param {Response} response a response that is not ok
 * @returns {Promise<ApiError>}
 */
async function errorFrom(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText || "error"}`;
  /** @type {string | null} */
  let field = null;
  try {
    /** @type {ErrorResponse | null} */
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      field = body.error.field || null;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(message, response.status, code, field);
}

/** How long a request waits, in all, for a model that is still warming up (503 `not_ready`) before it gives up. */
const WARMING_WAIT_MS = 60_000;

/**
 * Send a request; while the model is still warming up (503 `not_ready`, e.g. a page opened as the server starts) wait
 * its `Retry-After` (else 2 s, at most 10 s a time) and send it again, for up to a minute in all.
 * @param {string} url
 * @param {RequestInit} [init]
 * @returns {Promise<Response>} the response, when it is ok
 */
async function send(url, init) {
  for (let waited = 0; ; ) {
    let response;
    try {
      response = await fetch(url, { ...init, headers: { ...authHeaders(), ...(init && init.headers) } });
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") throw err;
      throw new ApiError(`the server could not be reached (${/** @type {Error} */ (err).message})`, 0, "network_error");
    }
    if (response.ok) return response;
    const error = await errorFrom(response);
    if (error.code !== "not_ready" || waited >= WARMING_WAIT_MS) throw error;
    const seconds = Number(response.headers.get("Retry-After"));
    const ms = Math.min(10_000, 1000 * (seconds > 0 ? seconds : 2));
    waited += ms;
    await pause(ms, init ? init.signal || undefined : undefined);
  }
}

/**
 * Wait `ms`, or until `signal` aborts (then reject with its AbortError).
 * @param {number} ms
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<void>}
 */
function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new DOMException("aborted", "AbortError"));
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("aborted", "AbortError")); }, { once: true });
  });
}

/**
 * The JSON answer of an analysis request: at once (200), or, when the server ran it as a job (202), its result once the job
 * finished (polling its status for `watch`; a failed job rejects with the error the request would have got).
 * @param {Response} response an ok response of POST analyze or evaluate
 * @param {JobWatch | undefined} watch
 * @returns {Promise<any>}
 */
async function answerOf(response, watch) {
  if (response.status !== 202) return response.json();
  /** @type {JobStatus} */
  let status = await response.json();
  while (status.state === "queued" || status.state === "running") {
    if (watch) watch.progress(status);
    try {
      await pause(JOB_POLL_MS, watch && watch.signal);
    } catch (_) {
      await send(status.status_url, { method: "DELETE" }).catch(() => null);
      throw new ApiError("the analysis was cancelled", 0, "cancelled");
    }
    status = await (await send(status.status_url)).json();
  }
  if (watch) watch.progress(status);
  if (status.state === "cancelled") throw new ApiError("the analysis was cancelled", 0, "cancelled");
  return (await send(status.result_url)).json();
}

/**
 * @param {File} file
 * @param {Params} params
 * @returns {FormData}
 */
function baseForm(file, params) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", params.model);
  form.append("samples", String(params.samples));
  form.append("seed", String(params.seed));
  form.append("calibrated", params.calibrated ? "true" : "false");
  form.append("resolution", params.resolution);
  form.append("tta", params.tta);
  return form;
}

/**
 * POST one file to the analyze endpoint; the compact JSON answer (after its job, when the server runs it as one).
 * @param {string} url
 * @param {File} file
 * @param {Params} params
 * @param {JobWatch} [watch] progress and cancel of a job
 * @returns {Promise<AnalyzeResponse>}
 */
export async function analyze(url, file, params, watch) {
  const form = baseForm(file, params);
  if (params.adversarial) form.append("adversarial", "true");
  return answerOf(await send(url, { method: "POST", body: form }), watch);
}

/**
 * POST an image and its mask to the evaluate endpoint; the analysis JSON plus metrics, error map and reliability diagram.
 * @param {string} url
 * @param {File} file
 * @param {File} mask
 * @param {Params} params
 * @param {JobWatch} [watch] progress and cancel of a job
 * @returns {Promise<EvaluateResponse>}
 */
export async function evaluate(url, file, mask, params, watch) {
  const form = baseForm(file, params);
  form.append("mask", mask, mask.name);
  form.append("ignore_index", String(params.ignoreIndex));
  if (params.oodLabel !== null) form.append("ood_label", String(params.oodLabel));
  return answerOf(await send(url, { method: "POST", body: form }), watch);
}

/**
 * GET the exact values at one pixel of a kept analysis.
 * @param {string} url the answer's pixel_url
 * @param {number} x
 * @param {number} y
 * @param {AbortSignal} signal
 * @returns {Promise<PixelResponse>}
 */
export async function pixel(url, x, y, signal) {
  return (await send(`${url}?x=${x}&y=${y}`, { signal })).json();
}

/**
 * GET a download of a kept analysis.
 * @param {string} url
 * @returns {Promise<Blob>}
 */
export async function fetchBlob(url) {
  return (await send(url)).blob();
}
