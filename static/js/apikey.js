// @ts-check
// The API key of a server that requires one (config.apiKeyRequired): typed into #api-key, kept in this tab's
// sessionStorage and sent with every API request as `Authorization: Bearer <key>`. It is never a cookie, so a page of
// another site cannot make the browser send it.

const STORAGE_KEY = "segu-api-key";

/** @returns {string} the key this tab holds ("" when none) */
export function apiKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch (_) {
    return "";
  }
}

/** @returns {Record<string, string>} the Authorization header of the key this tab holds, if any */
export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/**
 * Fill the key field from this tab's storage and keep the storage in step with it.
 * @param {HTMLInputElement} input
 */
export function bindApiKey(input) {
  input.value = apiKey();
  input.addEventListener("input", () => {
    const key = input.value.trim();
    try {
      if (key) sessionStorage.setItem(STORAGE_KEY, key);
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch (_) {
      // storage disabled: the key cannot be kept
    }
    input.removeAttribute("aria-invalid");
  });
}
