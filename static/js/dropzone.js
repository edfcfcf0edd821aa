// @ts-check
// Image intake: the file input, the folder input and drag-and-drop (files or whole folders) anywhere on the page.

/**
 * Call `addFiles(files)` for files chosen in `input`, the image files of a folder chosen in `folderInput`, or what is
 * dropped on the page (dropped folders: their image files, recursively, by path); `zone` lights up while dragging.
 * @param {HTMLInputElement} input
 * @param {HTMLInputElement | null} folderInput
 * @param {HTMLElement} zone
 * @param {(files: File[]) => void} addFiles
 * @param {(file: File) => boolean} isImage which files of a folder to take
 */
export function bindDrop(input, folderInput, zone, addFiles, isImage) {
  input.addEventListener("change", () => {
    addFiles(Array.from(/** @type {FileList} */ (input.files)));
    input.value = "";
  });
  if (folderInput)
    folderInput.addEventListener("change", () => {
      addFiles(byPath(Array.from(/** @type {FileList} */ (folderInput.files)).filter(isImage)));
      folderInput.value = "";
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
    const transfer = event.dataTransfer;
    if (!transfer) return;
    const entries = Array.from(transfer.items || []).map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (!entries.some((entry) => entry && entry.isDirectory)) {
      if (transfer.files.length) addFiles(Array.from(transfer.files));
      return;
    }
    droppedFiles(entries, isImage).then(addFiles);
  });
}

/**
 * The files of a drop that holds folders: dropped files as they are, the image files inside dropped folders
 * (recursively), all sorted by their path.
 * @param {(FileSystemEntry | null)[]} entries the drop's entries (`DataTransferItem.webkitGetAsEntry()`)
 * @param {(file: File) => boolean} isImage which files inside a folder to take
 * @returns {Promise<File[]>}
 */
export async function droppedFiles(entries, isImage) {
  /** @type {{file: File, path: string}[]} */
  const found = [];
  for (const entry of entries) if (entry) await collect(entry, found, false, isImage);
  return found.sort((a, b) => a.path.localeCompare(b.path)).map((f) => f.file);
}

/**
 * Read one entry (a file, or a folder's entries), passing over what cannot be read (a broken link, no permission).
 * @param {FileSystemEntry} entry
 * @param {{file: File, path: string}[]} out
 * @param {boolean} inFolder
 * @param {(file: File) => boolean} isImage
 * @returns {Promise<void>}
 */
async function collect(entry, out, inFolder, isImage) {
  try {
    await collectEntry(entry, out, inFolder, isImage);
  } catch (_) {
    // unreadable: skipped, the rest of the drop still comes
  }
}

/**
 * @param {File[]} files files of a chosen folder
 * @returns {File[]} sorted by their path in it
 */
function byPath(files) {
  return files.sort((a, b) => (a.webkitRelativePath || a.name).localeCompare(b.webkitRelativePath || b.name));
}

/**
 * Add the files under `entry` to `out`: a dropped file always, a file inside a dropped folder when it is an image.
 * @param {FileSystemEntry} entry
 * @param {{file: File, path: string}[]} out
 * @param {boolean} inFolder
 * @param {(file: File) => boolean} isImage
 * @returns {Promise<void>}
 */
async function collectEntry(entry, out, inFolder, isImage) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => /** @type {FileSystemFileEntry} */ (entry).file(resolve, reject));
    if (!inFolder || isImage(file)) out.push({ file, path: entry.fullPath });
    return;
  }
  const reader = /** @type {FileSystemDirectoryEntry} */ (entry).createReader();
  for (;;) {
    /** @type {FileSystemEntry[]} */
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return;
    for (const child of batch) await collect(child, out, true, isImage);
  }
}
