// @ts-check
// Shared JSDoc types of the page's scripts (no code): the config object the server embeds in the page, the API's JSON
// (the Pydantic models of app/web/schemas.py and app/web/schemas_evaluate.py, as far as the page reads them) and the page's own state.
// Import them with `@typedef {import("./types.js").Config} Config`.

// ---- The page's configuration: <script type="application/json" id="segu-config">, built by page_context in app/web/routes/page.py ----

/**
 * @typedef {object} ClassInfo One output class of the model.
 * @property {number} index Label value of the class in the prediction.
 * @property {string} name Class name.
 * @property {string} colour Display colour as #rrggbb.
 */

/**
 * @typedef {object} MapInfo One uncertainty map the server computes.
 * @property {string} name Machine name (confidence, entropy, ...).
 * @property {string} title Human title shown on the page.
 * @property {[number, number]} range Fixed [low, high] of the map's colour scale.
 * @property {string} description One-line definition of the map.
 */

/**
 * @typedef {object} ErrorLegendEntry One code of the error map (index 0 correct, 1 wrong, 2 not scored).
 * @property {string} name What the code means, as shown on the page.
 * @property {string} colour Display colour as #rrggbb.
 */

/**
 * @typedef {object} Endpoints The API's URLs.
 * @property {string} analyze POST an image: maps, prediction, regions.
 * @property {string} evaluate POST an image and its mask: the analysis plus metrics.
 * @property {string} models GET the loaded models.
 */

/**
 * @typedef {object} Config Everything the page's script needs from the server.
 * @property {string} model Name of the model bundle.
 * @property {ClassInfo[]} classes The model's classes in label order.
 * @property {MapInfo[]} maps Every map, in display order.
 * @property {string[]} panels The panels drawn (input, prediction, then the panel maps).
 * @property {string[]} detectionMaps Maps scored for error and OOD detection, in display order.
 * @property {ErrorLegendEntry[]} errorLegend Meaning and colour of each error-map code, indexed by the code.
 * @property {number} defaultSamples MC samples used when the field does not hold a number.
 * @property {number} maxSamples Largest number of MC samples a request may ask for.
 * @property {number} defaultSeed Seed used when the field does not hold a number.
 * @property {number} defaultIgnoreIndex Mask value not scored when the field does not hold a number.
 * @property {number} eceBins Number of equal-width confidence bins of the ECE and the reliability diagram.
 * @property {number} maxBodyBytes Largest accepted request body in bytes.
 * @property {number} temperature The model's fitted temperature τ (1: never calibrated).
 * @property {Endpoints} endpoints The API's URLs.
 */

// ---- The API's JSON ----

/**
 * @typedef {object} ErrorResponse The body of every error response.
 * @property {{code: string, message: string, field?: string | null}} error What went wrong.
 */

/**
 * @typedef {object} RawArray A numeric array as base64 of its raw little-endian bytes, in C (row-major) order.
 * @property {"float32" | "float16" | "uint8"} dtype Element type.
 * @property {number[]} shape Array shape.
 * @property {"little"} [byte_order] Byte order of multi-byte elements.
 * @property {string} data Base64 of the raw bytes.
 */

/**
 * @typedef {object} MapOut One per-pixel uncertainty map of a result.
 * @property {string} name
 * @property {string} description
 * @property {[number, number]} range
 * @property {number} mean
 * @property {string} colourmap
 * @property {string} png data:image/png;base64 URL.
 * @property {RawArray | null} [values] Raw (H, W) values; null when raw=false.
 */

/**
 * @typedef {object} PredictionOut The predicted label map.
 * @property {string} description
 * @property {string} png data:image/png;base64 URL in class colours.
 * @property {RawArray | null} [labels] Raw (H, W) uint8 class indices; null when raw=false.
 */

/**
 * @typedef {object} Timings Seconds spent in each step of the request.
 * @property {number} decode
 * @property {number} inference
 * @property {number} regions
 * @property {number} encode
 * @property {number} total
 */

/**
 * @typedef {object} RegionRow One row of the region table: a predicted class, or one connected component of it.
 * @property {"class" | "component"} kind
 * @property {number} class_index
 * @property {string} class_name
 * @property {number | null} [component] 1-based rank of the component within its class; null for class rows.
 * @property {number} pixels
 * @property {number} share
 * @property {number[]} bbox
 * @property {Record<string, number>} means Mean of every map over the region's pixels.
 */

/**
 * @typedef {object} AnalyzeResponse The result of one analysis (POST analyze, format=json).
 * @property {string} model
 * @property {ClassInfo[]} classes
 * @property {number} width
 * @property {number} height
 * @property {number} samples
 * @property {number} seed
 * @property {string} device
 * @property {boolean} calibrated
 * @property {number} temperature τ used in softmax(z / τ).
 * @property {number} model_temperature
 * @property {boolean} dropout_added_at_inference
 * @property {Timings} timings
 * @property {string} image The decoded input as a data: URL.
 * @property {PredictionOut} prediction
 * @property {MapOut[]} maps
 * @property {RawArray | null} [mean_probs] Raw (C, H, W) MC-mean class probabilities; null when raw=false.
 * @property {Record<string, number>} class_shares
 * @property {RegionRow[]} regions
 */

/**
 * @typedef {object} CalibrationMetrics Top-label calibration of one set of class probabilities (the fields the page reads).
 * @property {number} ece
 * @property {number} mce
 * @property {number} nll
 * @property {number} brier
 * @property {number} accuracy
 * @property {number} pixels
 */

/**
 * @typedef {object} EvaluationMetrics The evaluation of one image against its mask (the fields the page reads).
 * @property {{miou: number | null, pixel_accuracy: number | null, pixels: number}} segmentation
 * @property {{softmax: CalibrationMetrics, softmax_scaled?: CalibrationMetrics, mc_mean: CalibrationMetrics}} calibration
 *   softmax_scaled only when the model has a fitted temperature.
 * @property {Record<string, {auroc: number | null, aurc: number | null}>} error_detection Per map.
 * @property {Record<string, {auroc: number | null}> | null} ood_detection Per map; null without an OOD label.
 * @property {number | null} ood_label
 * @property {number | null} ignore_index
 * @property {number} temperature The model's fitted τ.
 * @property {string} notes
 */

/**
 * @typedef {object} ErrorMapOut Where the prediction disagrees with the mask.
 * @property {string} description
 * @property {string} png data:image/png;base64 URL.
 * @property {RawArray} values Raw (H, W) uint8 codes, indices into Config.errorLegend (0 correct, 1 wrong, 2 not scored).
 * @property {number} correct
 * @property {number} wrong
 * @property {number} ignored
 * @property {number} out_of_range
 */

/**
 * @typedef {object} EvaluationParts What POST evaluate adds to an analysis.
 * @property {EvaluationMetrics} metrics
 * @property {ErrorMapOut} error_map
 * @property {string} reliability_png Reliability diagram as a data:image/png;base64 URL.
 */

/** @typedef {AnalyzeResponse & EvaluationParts} EvaluateResponse The result of POST evaluate. */

/** @typedef {AnalyzeResponse & Partial<EvaluationParts>} AnalysisResult An analysis, scored against a mask or not. */

// ---- The page's state ----

/**
 * @typedef {object} Params The request parameters read from the form.
 * @property {number} samples
 * @property {number} seed
 * @property {boolean} calibrated
 * @property {number} ignoreIndex
 * @property {number | null} oodLabel
 */

/** @typedef {Uint8Array | Float32Array} Values A decoded raw array. */

/**
 * @typedef {object} DecodedArrays The raw arrays of a result, decoded.
 * @property {Record<string, Values>} maps Per map name, (H, W).
 * @property {Values | null} labels (H, W) predicted class indices.
 * @property {Values | null} probs (C, H, W) MC-mean class probabilities.
 * @property {Values | null} errors (H, W) error codes, when scored against a mask.
 */

/** @typedef {Record<string, HTMLImageElement>} Images Decoded images of a result by name: input, prediction, each map, error, reliability. */

/**
 * @typedef {object} ItemBase One upload in the queue.
 * @property {number} id
 * @property {File} file
 * @property {string} name
 * @property {string} thumbUrl Object URL of the upload.
 * @property {File | null} mask The mask it is scored against, if any.
 * @property {boolean} [stale] Changed while it was being analysed: run it again.
 * @property {string | null} [error] Why the last run failed.
 */

/**
 * @typedef {object} Analysed What a successful run leaves on an item.
 * @property {AnalysisResult} result
 * @property {DecodedArrays} arrays
 * @property {Params} params
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
