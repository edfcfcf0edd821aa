// @ts-check
// The progress bar and cancel button of an analysis the server runs as a job (202: over its budget for an immediate answer).

/** @typedef {import("./api.js").JobWatch} JobWatch */
/** @typedef {import("./api.js").JobStatus} JobStatus */

/**
 * @param {JobStatus} status
 * @returns {string} where the job stands, in words
 */
export function jobText(status) {
  if (status.state === "queued") return "waiting for the server (other analyses run first)…";
  if (status.state !== "running") return status.state;
  if (!status.total) return "starting…";
  if (status.progress >= 1) return "finishing (region table and images)…";
  const unit = status.unit || "step";
  return `${Math.round(100 * status.progress)} % (${Math.floor(status.done)} of ${status.total} ${unit}${status.total === 1 ? "" : "s"})`;
}

/**
 * Bind the job bar: `watch()` gives the JobWatch of one request (its bar appears with the first status), `hide()` ends it.
 * @param {HTMLElement} bar the bar's box (hidden while no job runs)
 * @returns {{watch: () => JobWatch, hide: () => void}}
 */
export function bindJobBar(bar) {
  const progress = /** @type {HTMLProgressElement} */ (bar.querySelector("progress"));
  const text = /** @type {HTMLElement} */ (bar.querySelector("#job-text"));
  const cancel = /** @type {HTMLButtonElement} */ (bar.querySelector("#job-cancel"));
  /** @type {AbortController | null} */
  let controller = null;
  cancel.addEventListener("click", () => {
    if (!controller) return;
    controller.abort();
    cancel.disabled = true;
    text.textContent = "cancelling…";
  });
  return {
    watch() {
      const own = new AbortController();
      controller = own;
      return {
        signal: own.signal,
        progress(status) {
          if (controller !== own || own.signal.aborted) return;
          bar.hidden = false;
          cancel.disabled = false;
          progress.value = status.progress;
          bar.dataset.state = status.state;
          text.textContent = jobText(status);
        },
      };
    },
    hide() {
      controller = null;
      bar.hidden = true;
      progress.value = 0;
      text.textContent = "";
    },
  };
}
