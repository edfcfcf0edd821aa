// @ts-check
// Talk to the REST API; every failure becomes an Error whose message is the API's words.

/** @typedef {import("./types.js").AnalyzeResponse} AnalyzeResponse */
/** @typedef {import("./types.js").EvaluateResponse} EvaluateResponse */
/** @typedef {import("./types.js").ErrorResponse} ErrorResponse */
/** @typedef {import("./types.js").Params} Params */

export class ApiError extends Error {
  /**
   * @param {string} message what went wrong, in the API's words
   * @param {number} status the HTTP status (0: no response)
   * @param {string} code the API's machine-readable error code
   */
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {Response} response a response that is not ok
 * @returns {Promise<ApiError>}
 */
async function errorFrom(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText || "error"}`;
  try {
    /** @type {ErrorResponse | null} */
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(message, response.status, code);
}

/**
 * @param {string} url
 * @param {FormData} form
 * @returns {Promise<Response>} the response, when it is ok
 */
async function send(url, form) {
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form });
  } catch (err) {
    throw new ApiError(`the server could not be reached (${/** @type {Error} */ (err).message})`, 0, "network_error");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/**
 * @param {File} file
 * @param {Params} params
 * @returns {FormData}
 */
function baseForm(file, params) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("samples", String(params.samples));
  form.append("seed", String(params.seed));
  form.append("calibrated", params.calibrated ? "true" : "false");
  return form;
}

/**
 * @overload
 * @param {string} url
 * @param {File} file
 * @param {Params} params
 * @param {"json"} [format]
 * @returns {Promise<AnalyzeResponse>}
 */
/**
 * @overload
 * @param {string} url
 * @param {File} file
 * @param {Params} params
 * @param {"npz"} format
 * @returns {Promise<Blob>}
 */
/**
 * POST one file to the analyze endpoint; JSON result, or a Blob when format is "npz".
 * @param {string} url
 * @param {File} file
 * @param {Params} params
 * @param {"json" | "npz"} [format]
 * @returns {Promise<AnalyzeResponse | Blob>}
 */
export async function analyze(url, file, params, format = "json") {
  const form = baseForm(file, params);
  form.append("format", format);
  const response = await send(url, form);
  return format === "npz" ? response.blob() : response.json();
}

/**
 * POST an image and its mask to the evaluate endpoint; the analysis JSON plus metrics, error map and reliability diagram.
 * @param {string} url
 * @param {File} file
 * @param {File} mask
 * @param {Params} params
 * @returns {Promise<EvaluateResponse>}
 */
export async function evaluate(url, file, mask, params) {
  const form = baseForm(file, params);
  form.append("mask", mask, mask.name);
  form.append("ignore_index", String(params.ignoreIndex));
  if (params.oodLabel !== null) form.append("ood_label", String(params.oodLabel));
  return (await send(url, form)).json();
}
