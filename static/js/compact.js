// @ts-check
// The compact answer: decode its 8-bit greyscale PNGs (quantised maps, labels, error codes) to bytes, paint them with
// the exact colour tables of the config, and read approximate values back from the quantised positions.

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {import("./types.js").Config} Config */
/** @typedef {import("./types.js").Images} Images */
/** @typedef {import("./types.js").Layers} Layers */

const LEVELS = 255;

/**
 * @param {string} hex rrggbb entries back to back (a colour table of the config)
 * @returns {Uint8Array} r, g, b of every entry
 */
export function tableFromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * @param {string[]} colours #rrggbb per index
 * @returns {Uint8Array} a 256-entry table: the colours, then black
 */
export function paletteTable(colours) {
  return tableFromHex(colours.map((c) => c.replace("#", "")).join("").padEnd(6 * 256, "0").slice(0, 6 * 256));
}

/**
 * The value a quantised position stands for: low + (high - low) * (q / 255) ** (1 / p), the inverse of the server's quantisation.
 * @param {number} q 0..255
 * @param {[number, number]} range the map's fixed [low, high]
 * @param {number} power the map's display exponent p
 * @returns {number}
 */
export function valueAt(q, range, power) {
  const t = q / LEVELS;
  return range[0] + (range[1] - range[0]) * (power === 1 ? t : t ** (1 / power));
}

/**
 * @param {string} url a data:image/png;base64 URL
 * @returns {Blob}
 */
function dataUrlBlob(url) {
  const comma = url.indexOf(",");
  const binary = atob(url.slice(comma + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type: url.slice(5, url.indexOf(";")) });
}

/**
 * The bytes of an 8-bit greyscale PNG, row-major (read back exactly: no colour-space conversion).
 * @param {string} url its data URL
 * @returns {Promise<{width: number, height: number, values: Uint8Array}>}
 */
export async function decodeGrey(url) {
  const bitmap = await createImageBitmap(dataUrlBlob(url), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d", { willReadFrequently: true }));
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const values = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < values.length; i++) values[i] = rgba[4 * i];
  return { width: canvas.width, height: canvas.height, values };
}

/**
 * Paint indices with a colour table into a new canvas.
 * @param {Uint8Array} values (H, W) indices
 * @param {number} width
 * @param {number} height
 * @param {Uint8Array} table r, g, b per index
 * @returns {HTMLCanvasElement}
 */
export function paint(values, width, height, table) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const image = ctx.createImageData(width, height);
  const rgba = image.data;
  for (let i = 0; i < values.length; i++) {
    const k = 3 * values[i];
    rgba[4 * i] = table[k];
    rgba[4 * i + 1] = table[k + 1];
    rgba[4 * i + 2] = table[k + 2];
    rgba[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

/**
 * @param {string} src
 * @returns {Promise<HTMLImageElement>} the image, decoded
 */
export function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img);
}

/**
 * Decode a compact result: the quantised maps, labels and error codes as bytes, and what each panel draws.
 * @param {AnalysisResult} result
 * @param {Config} config
 * @returns {Promise<{layers: Layers, images: Images}>}
 */
export async function decodeResult(result, config) {
  const { width, height } = result;
  const classColours = paletteTable(result.classes.map((c) => c.colour));
  const jobs = result.maps.filter((m) => m.quantised).map(async (m) => ({ map: m, grey: await decodeGrey(/** @type {string} */ (m.quantised)) }));
  const [maps, labels, errors, input, reliability, predictionImage] = await Promise.all([
    Promise.all(jobs),
    result.prediction.labels_png ? decodeGrey(result.prediction.labels_png) : null,
    result.error_map ? decodeGrey(result.error_map.codes_png) : null,
    loadImage(result.image),
    result.reliability_png ? loadImage(result.reliability_png) : null,
    !result.prediction.labels_png && result.prediction.url ? loadImage(result.prediction.url) : null,
  ]);
  /** @type {Layers} */
  const layers = { maps: {}, labels: labels ? labels.values : null, errors: errors ? errors.values : null };
  /** @type {Images} */
  const images = { input };
  for (const { map, grey } of maps) {
    layers.maps[map.name] = grey.values;
    images[map.name] = paint(grey.values, width, height, tableFromHex(config.colourTables[map.colourmap]));
  }
  if (labels) images.prediction = paint(labels.values, width, height, classColours);
  else if (predictionImage) images.prediction = predictionImage;
  if (errors) images.error = paint(errors.values, width, height, paletteTable(config.errorLegend.map((e) => e.colour)));
  if (reliability) images.reliability = reliability;
  if (result.conformal) {
    const table = setTable(config.setLegend.map((e) => e.colour));
    const levels = await Promise.all(result.conformal.levels.map(async (level) => ({ level, grey: await decodeGrey(level.set_size_png) })));
    for (const { level, grey } of levels) images[setImageName(level.alpha)] = paint(grey.values, width, height, table);
    images.sets = images[setImageName(result.conformal.default_alpha)];
  }
  return { layers, images };
}

/**
 * The name under which a level's set-size image is kept in `Images`.
 * @param {number} alpha
 * @returns {string}
 */
export function setImageName(alpha) {
  return `sets:${alpha}`;
}

/**
 * A 256-entry colour table for set sizes: 0, 1, 2 in the first three colours, every larger size in the last.
 * @param {string[]} colours `#rrggbb` for sizes 0, 1, 2 and 3 or more
 * @returns {Uint8Array}
 */
function setTable(colours) {
  const base = paletteTable(colours);
  const table = new Uint8Array(256 * 3);
  for (let v = 0; v < 256; v++) table.set(base.subarray(3 * Math.min(v, colours.length - 1), 3 * Math.min(v, colours.length - 1) + 3), 3 * v);
  return table;
}
