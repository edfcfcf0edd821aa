// The thumbnail strip: one button per upload, with its name and state.

const STATES = { queued: "queued", busy: "analysing", done: "done", error: "error" };

/** Create or update the thumbnail of `item` in `list`; a click calls `onSelect(item)`. */
export function renderThumb(list, item, selected, onSelect) {
  let li = list.querySelector(`[data-id="${item.id}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = String(item.id);
    li.innerHTML = '<button type="button"><img alt=""><span class="name"></span><span class="state"></span></button>';
    li.querySelector("button").addEventListener("click", () => onSelect(item));
    const img = li.querySelector("img");
    img.addEventListener("error", () => img.removeAttribute("src"));
    img.src = item.thumbUrl;
    list.append(li);
  }
  const button = li.querySelector("button");
  button.dataset.status = item.status;
  button.title = item.error ? `${item.name}: ${item.error}` : item.mask ? `${item.name} (scored against ${item.mask.name})` : item.name;
  button.setAttribute("aria-current", selected ? "true" : "false");
  li.querySelector(".name").textContent = item.name;
  li.querySelector(".state").textContent = item.mask ? `${STATES[item.status]} · mask` : STATES[item.status];
  if (item.result && li.querySelector("img").src !== item.result.image) li.querySelector("img").src = item.result.image;
}
