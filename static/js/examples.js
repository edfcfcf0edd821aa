// @ts-check
// The row of example images (#examples): a click fetches the example from the server and analyses it like an upload,
// with the served model that knows it chosen first (the synthetic scene: default; the photos: person).

/**
 * @param {HTMLElement | null} row #examples (absent when no example's model is served)
 * @param {HTMLSelectElement | null} select the model selector (absent with one model)
 * @param {(files: File[]) => void} addFiles the upload path (queue, thumbnail, analysis)
 * @param {(text: string) => void} showError
 */
export function bindExamples(row, select, addFiles, showError) {
  if (!row) return;
  for (const button of /** @type {NodeListOf<HTMLButtonElement>} */ (row.querySelectorAll("button[data-src]"))) {
    button.addEventListener("click", async () => {
      const { src, file, model } = button.dataset;
      if (!src || !file) return;
      button.disabled = true;
      try {
        const response = await fetch(src);
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        const blob = await response.blob();
        if (select && model && select.value !== model && [...select.options].some((o) => o.value === model)) {
          select.value = model;
          select.dispatchEvent(new Event("change"));
        }
        addFiles([new File([blob], file, { type: blob.type || "application/octet-stream" })]);
      } catch (error) {
        showError(`Could not load the example ${file}: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        button.disabled = false;
      }
    });
  }
}
