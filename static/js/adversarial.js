// @ts-check
// "How little it takes to fool it": the answer's adversarial block (asked with the Adversarial sensitivity box) — per
// radius the share of pixels an imperceptible attack flips, the flip-ε map, and the attacked image with its prediction.

import { decodeGrey, loadImage, paint, paletteTable } from "./compact.js";

/** @typedef {import("./types.js").AnalysisResult} AnalysisResult */
/** @typedef {NonNullable<AnalysisResult["adversarial"]>} Adversarial */

const FRAGILE = [127, 0, 0];
const STURDY = [255, 237, 160];
const NEVER = "#c8ccd2";
const HEADLINE_EPSILON = 2;

/** @type {WeakMap<HTMLElement, {adv: Adversarial, table: Uint8Array, stillShown: () => boolean}>} What each section shows now. */
const shownIn = new WeakMap();

/**
 * @param {number} share 0..1
 * @returns {string}
 */
function percent(share) {
  return `${(100 * share).toFixed(share < 0.1 ? 1 : 0)} %`;
}

/**
 * The colour of radius k of n: the smallest (most fragile pixels) dark red, the largest pale yellow.
 * @param {number} k
 * @param {number} n
 * @returns {string}
 */
export function radiusColour(k, n) {
  const t = n > 1 ? k / (n - 1) : 0;
  return `#${FRAGILE.map((a, i) => Math.round(a + t * (STURDY[i] - a)).toString(16).padStart(2, "0")).join("")}`;
}

/**
 * The sentence the panel leads with: the radius 2/255 when it was attacked, else the smallest.
 * @param {Adversarial} adv
 * @returns {string}
 */
export function headline(adv) {
  const level = adv.levels.find((l) => l.epsilon === HEADLINE_EPSILON) || adv.levels[0];
  return `Fooled at ε = ${level.epsilon_text}: ${percent(level.flip_share)} of pixels change class.`;
}

/**
 * @param {HTMLCanvasElement} canvas
 * @param {CanvasImageSource & {width: number, height: number}} source
 * @param {number} [alpha]
 */
function drawInto(canvas, source, alpha = 1) {
  if (alpha === 1) {
    canvas.width = source.width;
    canvas.height = source.height;
  }
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  ctx.globalAlpha = alpha;
  ctx.drawImage(source, 0, 0);
  ctx.globalAlpha = 1;
  canvas.dataset.drawn = "1";
}

/**
 * Draw the attacked image of the selected radius and its prediction (class colours over it).
 * @param {HTMLElement} section
 * @param {Adversarial} adv
 * @param {Uint8Array} classTable
 * @param {() => boolean} stillShown
 */
async function drawLevel(section, adv, classTable, stillShown) {
  const select = /** @type {HTMLSelectElement} */ (section.querySelector("#adv-level"));
  const chosen = select.value;
  const level = adv.levels[Number(chosen) || 0];
  const image = await loadImage(level.image);
  const labels = level.labels_png ? await decodeGrey(level.labels_png) : null;
  if (!stillShown() || select.value !== chosen) return;
  drawInto(/** @type {HTMLCanvasElement} */ (section.querySelector("#adv-image")), image);
  const prediction = /** @type {HTMLCanvasElement} */ (section.querySelector("#adv-prediction"));
  drawInto(prediction, image);
  if (labels) drawInto(prediction, paint(labels.values, labels.width, labels.height, classTable), 0.6);
}

/**
 * Show (or hide, without an attack) the adversarial section for `result`.
 * @param {HTMLElement} section
 * @param {AnalysisResult | null} result
 * @param {string[]} classColours #rrggbb per class
 * @param {() => boolean} stillShown false once another result is on screen (a late decode then draws nothing)
 * @param {boolean} [asked] the attack was asked for (without an answer: evaluate mode, which does not run it)
 */
export async function renderAdversarial(section, result, classColours, stillShown, asked = false) {
  const adv = result ? result.adversarial : null;
  const parts = /** @type {NodeListOf<HTMLElement>} */ (section.querySelectorAll(".table-wrap, .adv-grid, #adv-note"));
  section.hidden = !adv && !(asked && result);
  for (const part of parts) part.hidden = !adv;
  if (!adv) {
    /** @type {HTMLElement} */ (section.querySelector("#adv-summary")).textContent =
      "Not attacked: the attack runs on analyses without a mask (evaluate mode scores the maps against it instead). Remove the mask to attack this image.";
    return;
  }
  const n = adv.levels.length;
  /** @type {HTMLElement} */ (section.querySelector("#adv-summary")).textContent = headline(adv);
  const body = /** @type {HTMLElement} */ (section.querySelector("#adv-table tbody"));
  body.replaceChildren(
    ...adv.levels.map((l, k) => {
      const tr = document.createElement("tr");
      tr.innerHTML = '<th scope="row"><span class="swatch"></span> </th><td class="num"></td><td class="num"></td><td class="num"></td>';
      /** @type {HTMLElement} */ (tr.querySelector(".swatch")).style.background = radiusColour(k, n);
      /** @type {HTMLElement} */ (tr.querySelector("th")).append(`ε = ${l.epsilon_text}`);
      const cells = tr.querySelectorAll("td");
      cells[0].textContent = percent(l.flip_share);
      cells[1].textContent = percent(l.flippable_share);
      cells[2].textContent = percent(l.rounded_flip_share);
      return tr;
    }),
  );
  const never = document.createElement("tr");
  never.innerHTML = '<th scope="row"><span class="swatch"></span> </th><td class="num"></td><td></td><td></td>';
  /** @type {HTMLElement} */ (never.querySelector(".swatch")).style.background = NEVER;
  /** @type {HTMLElement} */ (never.querySelector("th")).append(`never (up to ε = ${adv.levels[n - 1].epsilon_text})`);
  /** @type {HTMLElement} */ (never.querySelector("td")).textContent = percent(adv.never_flipped_share);
  body.append(never);
  /** @type {HTMLElement} */ (section.querySelector("#adv-note")).textContent =
    `${adv.description} ${adv.passes} passes in ${adv.seconds.toFixed(2)} s.`;
  const select = /** @type {HTMLSelectElement} */ (section.querySelector("#adv-level"));
  const kept = select.selectedIndex;
  select.replaceChildren(...adv.levels.map((l, k) => new Option(l.epsilon_text, String(k))));
  const headlineIndex = Math.max(0, adv.levels.findIndex((l) => l.epsilon === HEADLINE_EPSILON));
  select.value = String(kept >= 0 && kept < n && select.dataset.bound ? kept : headlineIndex);
  const colours = adv.levels.map((_, k) => radiusColour(k, n));
  const mapTable = paletteTable([...colours, ...Array(255 - n).fill("#000000"), NEVER]);
  const classTable = paletteTable(classColours);
  if (!select.dataset.bound) {
    select.dataset.bound = "1";
    select.addEventListener("change", () => {
      const shown = shownIn.get(section);
      if (shown) drawLevel(section, shown.adv, shown.table, shown.stillShown);
    });
  }
  shownIn.set(section, { adv, table: classTable, stillShown });
  const flips = await decodeGrey(adv.flip_epsilon_png);
  if (!stillShown()) return;
  drawInto(/** @type {HTMLCanvasElement} */ (section.querySelector("#adv-map")), paint(flips.values, flips.width, flips.height, mapTable));
  await drawLevel(section, adv, classTable, stillShown);
}
