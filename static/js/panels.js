// @ts-check
// The aligned panels (input, prediction and the map panels, plus the error map when scored against a mask): drawing at
// the analysed size, the prediction overlay and the shared crosshair.

/** @typedef {import("./types.js").Images} Images */

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
    ctx.drawImage(images.input, 0, 0, width, height);
    ctx.globalAlpha = opacity;
    if (images.prediction) ctx.drawImage(images.prediction, 0, 0, width, height);
    ctx.globalAlpha = 1;
  } else if (images[name]) {
    ctx.drawImage(images[name], 0, 0, width, height);
  }
  canvas.classList.add("drawn");
  canvas.dataset.drawn = "1";
}

/**
 * Draw every shown panel of a row of panels; hidden ones, and those of maps the model cannot compute, are emptied.
 * @param {Element} row
 * @param {Images} images
 * @param {number} width
 * @param {number} height
 * @param {number} opacity
 */
export function drawRow(row, images, width, height, opacity) {
  for (const panel of /** @type {NodeListOf<HTMLElement>} */ (row.querySelectorAll(".panel"))) {
    if (panel.hidden || panel.hasAttribute("data-unavailable")) clearPanels(panel);
    else drawPanel(panel, /** @type {string} */ (panel.dataset.panel), images, width, height, opacity);
  }
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
 * Pixel under a pointer (mouse, pen or touch) on a panel's view, clamped to the image.
 * @param {Element} view
 * @param {{clientX: number, clientY: number}} event
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

/**
 * Follow the pointer (mouse, pen, or a finger's tap) and the arrow keys (Shift: 10 pixels) on every panel.
 * @param {Element} container
 * @param {() => ({width: number, height: number, cursor: {x: number, y: number} | null} | null)} shown the analysed size and the cursor, when something is shown
 * @param {(x: number, y: number) => void} moveTo
 */
export function bindPointer(container, shown, moveTo) {
  /** @type {Record<string, [number, number]>} */
  const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  for (const view of /** @type {NodeListOf<HTMLElement>} */ (container.querySelectorAll(".view"))) {
    /** @param {PointerEvent} event */
    const follow = (event) => {
      const now = shown();
      if (!now) return;
      const { x, y } = pixelAt(view, event, now.width, now.height);
      moveTo(x, y);
    };
    view.addEventListener("pointermove", follow);
    view.addEventListener("pointerdown", follow);
    view.addEventListener("keydown", (event) => {
      const step = steps[event.key];
      const now = shown();
      if (!step || !now) return;
      event.preventDefault();
      const k = event.shiftKey ? 10 : 1;
      const start = now.cursor || { x: now.width >> 1, y: now.height >> 1 };
      moveTo(start.x + k * step[0], start.y + k * step[1]);
    });
  }
}
