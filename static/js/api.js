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

/** POST one file to the analyze endpoint; JSON result, or a Blob when format is "npz". */
export async function analyze(url, file, params, format = "json") {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("samples", String(params.samples));
  form.append("seed", String(params.seed));
  form.append("calibrated", params.calibrated ? "true" : "false");
  form.append("format", format);
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form });
  } catch (err) {
    throw new ApiError(`the server could not be reached (${err.message})`, 0, "network_error");
  }
  if (!response.ok) throw await errorFrom(response);
  return format === "npz" ? response.blob() : response.json();
}
