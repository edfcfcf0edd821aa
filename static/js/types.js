// @ts-check
// Shared JSDoc types of the page's scripts (no code). The config object the server embeds in the page and the API's JSON are
// aliases of ./api-types.d.ts, which `make jslint` generates from the app's OpenAPI schema (openapi-typescript; the Pydantic
// models of app/web/schemas/): never write them by hand here. The page's own state is typed below.
// Import them with `@typedef {import("./types.js").Config} Config`.

/** @typedef {import("./api-types").components["schemas"]} Schemas */

// ---- The page's configuration: <script type="application/json" id="segu-config">, PageConfig (app/web/schemas/page_config.py) ----

/** @typedef {Schemas["PageConfig"]} Config Everything the page's script needs from the server. */
/** @typedef {Schemas["PageClass"]} ClassInfo One output class of the model. */
/** @typedef {Schemas["PageMap"]} MapInfo One uncertainty map the server computes. */
/** @typedef {Schemas["PageErrorLegendEntry"]} ErrorLegendEntry One code of the error map (index 0 correct, 1 wrong, 2 not scored). */
/** @typedef {Schemas["PageEndpoints"]} Endpoints The API's URLs. */
/** @typedef {Schemas["PageTick"]} TickInfo One labelled tick of a colour bar. */
/** @typedef {Schemas["PageScale"]} ScaleInfo A map's colour bar for one model. */
/** @typedef {Schemas["PageModel"]} ModelPage What the page shows of one served model (config.models). */

// ---- The API's JSON (app/web/schemas/analysis.py, evaluation.py) ----

/** @typedef {Schemas["ErrorResponse"]} ErrorResponse The body of every error response. */
/** @typedef {Schemas["RawArray"]} RawArray A numeric array as base64 of its raw little-endian bytes, in C (row-major) order. */
/** @typedef {Schemas["MapOut"]} MapOut One per-pixel uncertainty map of a result. */
/** @typedef {Schemas["PredictionOut"]} PredictionOut The predicted label map. */
/** @typedef {Schemas["ImageOodOut"]} ImageOod One map's percentile among the model's validation images (details behind the verdict). */
/** @typedef {Schemas["ImageCheckOut"]} ImageCheck The image-level verdict: unusual, not flagged or not checked. */
/** @typedef {Schemas["ClassProbability"]} ClassProbability One class at one pixel. */
/** @typedef {Schemas["PixelResponse"]} PixelResponse Exact values at one pixel of a kept analysis (GET pixel_url?x=&y=). */
/** @typedef {Schemas["Timings"]} Timings Seconds spent in each step of the request. */
/** @typedef {Schemas["RegionOut"]} RegionRow One row of the region table: a predicted class, or one connected component of it. */
/** @typedef {Schemas["AnalyzeResponse"]} AnalyzeResponse The result of one analysis (POST analyze, format=json). */
/** @typedef {AnalyzeResponse["error_method"]} ErrorMethod How an analysis found its Monte-Carlo errors. */
/** @typedef {AnalyzeResponse["tta"]} Tta Test-time augmentation of an analysis. */
/** @typedef {Schemas["CalibrationMetrics"]} CalibrationMetrics Top-label calibration of one set of class probabilities. */
/** @typedef {Schemas["EvaluationMetrics"]} EvaluationMetrics The evaluation of one image against its mask. */
/** @typedef {Schemas["ErrorMapOut"]} ErrorMapOut Where the prediction disagrees with the mask. */
/** @typedef {Schemas["EvaluateResponse"]} EvaluateResponse The result of POST evaluate. */
/** @typedef {Pick<EvaluateResponse, "metrics" | "error_map" | "reliability_png">} EvaluationParts What POST evaluate adds to an analysis. */
/** @typedef {AnalyzeResponse & Partial<EvaluationParts>} AnalysisResult An analysis, scored against a mask or not. */

// ---- The page's state ----

/**
 * @typedef {object} Params The request parameters read from the form.
 * @property {string} model The served model to analyse with.
 * @property {number} samples
 * @property {number} seed
 * @property {boolean} calibrated
 * @property {"working" | "full"} resolution
 * @property {Tta} tta
 * @property {number} ignoreIndex
 * @property {number | null} oodLabel
 * @property {boolean} adversarial Also attack the image (the answer's `adversarial` block).
 */

/**
 * @typedef {object} Layers The quantised data of a result, decoded from its PNGs (each (H, W), row-major).
 * @property {Record<string, Uint8Array>} maps Per panel map, round(255 * position on its colour scale).
 * @property {Uint8Array | null} labels Predicted class indices.
 * @property {Uint8Array | null} errors Error codes, when scored against a mask.
 */

/** @typedef {Record<string, CanvasImageSource>} Images What the panels draw, by name: input, prediction, each panel map, error, reliability. */

/**
 * @typedef {object} ItemBase One upload in the queue.
 * @property {number} id
 * @property {File} file
 * @property {string} name
 * @property {string} thumbUrl Object URL of the upload.
 * @property {File | null} mask The mask it is scored against, if any.
 * @property {boolean} [rerun] Run again once the current run ends (a control changed meanwhile).
 * @property {Params} [requested] The parameters of its last (or current) request.
 * @property {import("./modelrow.js").OtherRun} [other] The same image analysed by the compared model (modelrow.js).
 * @property {string | null} [error] Why the last run failed.
 */

/**
 * @typedef {object} Analysed What a successful run leaves on an item.
 * @property {AnalysisResult} result
 * @property {Layers} layers
 * @property {Params} params
 * @property {File | null} resultMask The mask the shown result was scored against.
 * @property {Images} images
 */

/** @typedef {ItemBase & Analysed & {status: "done"}} DoneItem An item whose last run succeeded. */

/** @typedef {ItemBase & Partial<Analysed> & {status: "queued" | "busy" | "error"}} PendingItem An item not (yet, or no longer) shown. */

/** @typedef {DoneItem & {result: EvaluateResponse}} ScoredItem An item whose last run scored it against a mask. */

/** @typedef {DoneItem | PendingItem} Item */

/** @typedef {Item["status"]} ItemStatus */

/**
 * @typedef {object} StatusSink Where long actions report.
 * @property {(text: string) => void} busy
 * @property {(text: string) => void} idle
 * @property {(text: string) => void} error
 */

export {};
