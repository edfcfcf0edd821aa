// @ts-check
// The aligned panels (six, plus the error map when scored against a mask): drawing, the prediction overlay and the shared crosshair.

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Images} Images */

/**
 * @param {string} src
 * @returns {Promise<HTMLImageElement>} the image, decoded
 */
function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img);
}

/**
 * Decode every image of a result once: input, prediction, each map PNG and, when scored against a mask, the error map and reliability diagram.
 * @param {AnalysisResult} result
 * @returns {Promise<Images>}
 */
export async function loadImages(result) {
  /** @type {[name: string, src: string][]} */
  const entries = [["input", result.image], ["prediction", result.prediction.png], ...result.maps.map((m) => /** @type {[string, string]} */ ([m.name, m.png]))];
  if (result.error_map) entries.push(["error", result.error_map.png]);
  if (result.reliability_png) entries.push(["reliability", result.reliability_png]);
  const images = await Promise.all(entries.map(([, src]) => loadImage(src)));
  return Object.fromEntries(entries.map(([name], i) => [name, images[i]]));
}

/**
 * @param {HTMLCanvasElement} canvas
 * @param {number} width
 * @param {number} height
 * @returns {CanvasRenderingContext2D} its context, cleared, at full opacity, without smoothing
 */
function prepare(canvas, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  ctx.imageSmoothingEnabled = false;
  ctx.globalAlpha = 1;
  ctx.clearRect(0, 0, width, height);
  return ctx;
}

/**
 * Draw one panel; the prediction is blended over the input with `opacity`.
 * @param {Element} panel
 * @param {string} name the panel's name: input, prediction, error or a map's name
 * @param {Images} images
 * @param {number} width
 * @param {number} height
 * @param {number} opacity
 */
export function drawPanel(panel, name, images, width, height, opacity) {
  const canvas = /** @type {HTMLCanvasElement} */ (panel.querySelector("canvas"));
  const ctx = prepare(canvas, width, height);
  if (name === "prediction") {
    ctx.drawImage(images.input, 0, 0);
    ctx.globalAlpha = opacity;
    ctx.drawImage(images.prediction, 0, 0);
    ctx.globalAlpha = 1;
  } else {
    ctx.drawImage(images[name], 0, 0);
  }
  canvas.classList.add("drawn");
  canvas.dataset.drawn = "1";
}

/**
 * Empty every panel (before a new image is shown, or after an error).
 * @param {Element} container
 */
export function clearPanels(container) {
  for (const canvas of /** @type {NodeListOf<HTMLCanvasElement>} */ (container.querySelectorAll(".view canvas"))) {
    /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")).clearRect(0, 0, canvas.width, canvas.height);
    canvas.classList.remove("drawn");
    delete canvas.dataset.drawn;
  }
  container.classList.remove("has-cursor");
}

/**
 * Put the crosshair on pixel (x, y) of a width x height image on every panel.
 * @param {Element} container
 * @param {number} x
 * @param {number} y
 * @param {number} width
 * @param {number} height
 */
export function placeCrosshair(container, x, y, width, height) {
  const left = `${(100 * (x + 0.5)) / width}%`;
  const top = `${(100 * (y + 0.5)) / height}%`;
  for (const view of container.querySelectorAll(".view")) {
    /** @type {HTMLElement} */ (view.querySelector(".cross-v")).style.left = left;
    /** @type {HTMLElement} */ (view.querySelector(".cross-h")).style.top = top;
  }
  container.classList.add("has-cursor");
}

/**
 * Pixel under a pointer event on a panel's view, clamped to the image.
 * @param {Element} view
 * @param {MouseEvent} event
 * @param {number} width
 * @param {number} height
 * @returns {{x: number, y: number}}
 */
export function pixelAt(view, event, width, height) {
  const rect = view.getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
  return { x: Math.min(width - 1, Math.max(0, x)), y: Math.min(height - 1, Math.max(0, y)) };
}
