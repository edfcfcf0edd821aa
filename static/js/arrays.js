// @ts-check
// Decode the API's raw arrays: base64 of little-endian float32 / float16 / uint8 in C order.

/** @typedef {import("./types.js").RawArray} RawArray */
/** @typedef {import("./types.js").Values} Values */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * @param {string} text base64
 * @returns {Uint8Array}
 */
function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * @param {number} h the bits of an IEEE 754 half
 * @returns {number}
 */
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/**
 * Decode {dtype, shape, data} into a typed array (float16 becomes Float32Array).
 * @param {RawArray} raw
 * @returns {Values}
 */
export function decodeRaw(raw) {
  const bytes = base64Bytes(raw.data);
  const count = raw.shape.reduce((a, b) => a * b, 1);
  if (raw.dtype === "uint8") return bytes;
  const view = new DataView(bytes.buffer);
  if (raw.dtype === "float32") {
    if (LITTLE_ENDIAN) return new Float32Array(bytes.buffer, 0, count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  if (raw.dtype === "float16") {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
    return out;
  }
  throw new Error(`unknown dtype ${raw.dtype}`);
}

/**
 * The k most probable classes at pixel index `idx` of a (C, H, W) array.
 * @param {ArrayLike<number>} probs
 * @param {number} numClasses C
 * @param {number} pixels H * W
 * @param {number} idx
 * @param {number} [k]
 * @returns {{index: number, p: number}[]}
 */
export function topClasses(probs, numClasses, pixels, idx, k = 3) {
  /** @type {{index: number, p: number}[]} */
  const ranked = [];
  for (let c = 0; c < numClasses; c++) ranked.push({ index: c, p: probs[c * pixels + idx] });
  ranked.sort((a, b) => b.p - a.p);
  return ranked.slice(0, k);
}
