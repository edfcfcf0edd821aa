// @ts-check
// Image intake: the file input and drag-and-drop anywhere on the page.

/**
 * Call `addFiles(files)` for files chosen in `input` or dropped on the page; `zone` lights up while dragging.
 * @param {HTMLInputElement} input
 * @param {HTMLElement} zone
 * @param {(files: File[]) => void} addFiles
 */
export function bindDrop(input, zone, addFiles) {
  input.addEventListener("change", () => {
    addFiles(Array.from(/** @type {FileList} */ (input.files)));
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) zone.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(Array.from(event.dataTransfer.files));
  });
}
