// Talk to the REST API; every failure becomes an Error whose message is the API's words.

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText || "error"}`;
  try {
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

async function send(url, form) {
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form });
  } catch (err) {
    throw new ApiError(`the server could not be reached (${err.message})`, 0, "network_error");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

function baseForm(file, params) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("samples", String(params.samples));
  form.append("seed", String(params.seed));
  form.append("calibrated", params.calibrated ? "true" : "false");
  return form;
}

/** POST one file to the analyze endpoint; JSON result, or a Blob when format is "npz". */
export async function analyze(url, file, params, format = "json") {
  const form = baseForm(file, params);
  form.append("format", format);
  const response = await send(url, form);
  return format === "npz" ? response.blob() : response.json();
}

/** POST an image and its mask to the evaluate endpoint; the analysis JSON plus metrics, error map and reliability diagram. */
export async function evaluate(url, file, mask, params) {
  const form = baseForm(file, params);
  form.append("mask", mask, mask.name);
  form.append("ignore_index", String(params.ignoreIndex));
  if (params.oodLabel !== null) form.append("ood_label", String(params.oodLabel));
  return (await send(url, form)).json();
}
