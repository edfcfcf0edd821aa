// @ts-check
// Styles the template cannot write as style attributes (the Content-Security-Policy allows no inline styles): class
// colours, colour-bar gradients and tick positions come as data-bg and data-left and are set here through the CSSOM.

/** @param {ParentNode} root */
export function applyDataStyles(root) {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll("[data-bg]"))) el.style.background = el.dataset.bg || "";
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll("[data-left]"))) el.style.left = el.dataset.left || "";
}
