// @ts-check
// Shared JSDoc types of the page's scripts (no code): the config object the server embeds in the page, the API's JSON
// (the Pydantic models of app/web/schemas/analysis.py and app/web/schemas/evaluation.py, as far as the page reads them) and the page's own state.
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
 * @property {string} colourmap Name of its colour table (a key of Config.colourTables).
 * @property {number} displayPower Exponent p of the scale: value v sits at ((v - low) / (high - low)) ** p of the colour table.
 * @property {boolean} panel Drawn as a panel (the answer then carries its quantised PNG).
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
 * @typedef {object} TickInfo One labelled tick of a colour bar.
 * @property {number} value The map value at the tick.
 * @property {number} position Where it sits on the bar, 0 (left) to 1 (right).
 * @property {string} label The value as printed.
 */

/**
 * @typedef {object} ScaleInfo A map's colour bar for one model (its range depends on the model's class count).
 * @property {[number, number]} range Fixed [low, high].
 * @property {string} title The bar's tooltip: its spacing and range in words.
 * @property {TickInfo[]} ticks Labelled ticks, left to right.
 */

/**
 * @typedef {object} ModelPage What the page shows of one served model (config.models, built by model_config in app/web/routes/page.py).
 * @property {string} name The name requests choose it by (form field `model`).
 * @property {ClassInfo[]} classes Its classes in label order.
 * @property {string} domain What it was trained on, in words (may be empty).
 * @property {number | null} workingSize Long side inputs are resized to at resolution "working"; null: none.
 * @property {number} temperature Its fitted temperature τ (1: never calibrated).
 * @property {number} defaultSamples MC samples it uses when a request does not say.
 * @property {string[]} unavailable Maps it cannot compute (all zeros in its answers: feature_distance without a fitted
 *   density); their panels show a note instead of a map.
 * @property {{sites: string[], rate: number, trainedWithDropout: boolean}} dropout Where its MC dropout sits.
 * @property {Record<string, ScaleInfo>} scales Each map's colour bar, by map name.
 */

/**
 * @typedef {object} Config Everything the page's script needs from the server.
 * @property {string} model Name of the model bundle.
 * @property {string} domain What the model was trained on, in words (may be empty).
 * @property {number | null} workingSize Long side inputs are resized to at resolution "working"; null: none.
 * @property {ClassInfo[]} classes The model's classes in label order.
 * @property {Record<string, string>} colourTables Each colour table as 256 entries of rrggbb hex, position 0 first.
 * @property {number} regionRowsShown Region rows shown before "show all".
 * @property {number} pixelDebounceMs Wait after the cursor stops before exact values are fetched.
 * @property {number} rerunDebounceMs Wait after a control changes before the selected image is analysed again.
 * @property {boolean} apiKeyRequired The server requires an API key on /api/* (the page then shows a field for it).
 * @property {MapInfo[]} maps Every map, in display order.
 * @property {string[]} panels The panels drawn (input, prediction, then the panel maps).
 * @property {string[]} detectionMaps Maps scored for error and OOD detection, in display order.
 * @property {ErrorLegendEntry[]} errorLegend Meaning and colour of each error-map code, indexed by the code.
 * @property {number} defaultSamples MC samples the default model uses when the field does not hold a number.
 * @property {string} defaultModel Name of the default model (the first served).
 * @property {ModelPage[]} models Every served model, the default first.
 * @property {number} maxSamples Largest number of MC samples a request may ask for.
 * @property {number} defaultSeed Seed used when the field does not hold a number.
 * @property {number} defaultIgnoreIndex Mask value not scored when the field does not hold a number.
 * @property {number} eceBins Number of equal-width confidence bins of the ECE and the reliability diagram.
 * @property {number} maxBodyBytes Largest accepted request body in bytes.
 * @property {number} temperature The model's fitted temperature τ (1: never calibrated).
 * @property {Endpoints} endpoints The API's URLs.
 * @property {number} noiseZ Two map means differ beyond Monte-Carlo noise when |a − b| > noiseZ · sqrt(se_a² + se_b²).
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
 * @property {number} display_power
 * @property {number} mean Mean of the map over the image.
 * @property {number | null} mean_error Monte-Carlo standard error of `mean` (see AnalyzeResponse.error_method): 0 for maps of
 *   the deterministic pass, null when not estimable (1 sample); an upper bound with error_method "tile_bound".
 * @property {string} colourmap
 * @property {string | null} [quantised] 8-bit greyscale PNG data URL of round(255 * position on the colour scale); panel maps only.
 * @property {string | null} [url] GET URL of the colour PNG; null when the analysis was not kept.
 * @property {string | null} [png] Colour PNG data URL; only with raw=true.
 * @property {RawArray | null} [values] Raw (H, W) values; only with raw=true.
 */

/**
 * @typedef {object} PredictionOut The predicted label map.
 * @property {string} description
 * @property {string | null} [labels_png] 8-bit greyscale PNG data URL of the class indices; null above 256 classes.
 * @property {string | null} [url] GET URL of the labels in class colours as a PNG.
 * @property {string | null} [png] Colour PNG data URL; only with raw=true.
 * @property {RawArray | null} [labels] Raw (H, W) uint8 class indices; only with raw=true.
 */

/**
 * @typedef {object} ImageOod One map's image-level out-of-distribution verdict.
 * @property {string} map
 * @property {number} image_mean
 * @property {number} percentile Percent of validation images less uncertain by this map than this image.
 * @property {boolean} unusual
 * @property {string} message
 */

/**
 * @typedef {object} ClassProbability One class at one pixel.
 * @property {number} index
 * @property {string} name
 * @property {number} probability
 */

/**
 * @typedef {object} PixelResponse Exact values at one pixel of a kept analysis (GET pixel_url?x=&y=).
 * @property {string} analysis_id
 * @property {number} x
 * @property {number} y
 * @property {Record<string, number>} values
 * @property {ClassProbability} prediction
 * @property {ClassProbability[]} top
 * @property {string | null} [error] correct, wrong or not scored when scored against a mask.
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
 * @property {Record<string, number | null>} errors Monte-Carlo standard error of each mean; null when not estimable.
 */

/**
 * @typedef {"jackknife" | "tile_bound" | "exact" | "unavailable"} ErrorMethod How an analysis found its Monte-Carlo errors:
 *   a delete-a-group jackknife over the samples; an upper bound (tiled full-resolution analyses, no region errors);
 *   none needed (0 samples); none possible (1 sample).
 */

/** @typedef {"none" | "flips" | "flips+scales" | "photometric"} Tta Test-time augmentation of an analysis. */

/**
 * @typedef {object} AnalyzeResponse The result of one analysis (POST analyze, format=json).
 * @property {string | null} analysis_id Id under which the server keeps it; null when it was too large to keep.
 * @property {number} expires_in Seconds the id stays valid after its last use.
 * @property {string | null} [npz_url] GET URL of the raw arrays as .npz.
 * @property {string | null} [pixel_url] GET URL (add ?x=&y=) of exact values at one pixel.
 * @property {string} model
 * @property {ClassInfo[]} classes
 * @property {number} width Width of the maps (the analysed size).
 * @property {number} height Height of the maps (the analysed size).
 * @property {number} input_width
 * @property {number} input_height
 * @property {string} resolution "working" when the input was resized to the model's working size, else "full".
 * @property {ImageOod[]} image_ood
 * @property {number} samples MC-dropout samples per pass.
 * @property {string} method What the statistics pool, e.g. "mc_dropout", "tta:flips", "ensemble(3) + mc_dropout".
 * @property {Tta} tta Test-time augmentation.
 * @property {number} passes Ensemble members × augmentations run.
 * @property {ErrorMethod} error_method How the Monte-Carlo standard errors of the means were found.
 * @property {number} seed
 * @property {string} device
 * @property {boolean} calibrated
 * @property {number} temperature τ used in softmax(z / τ).
 * @property {number} model_temperature
 * @property {boolean} dropout_added_at_inference
 * @property {Timings} timings
 * @property {string} image The decoded input at the analysed size as a JPEG data: URL.
 * @property {PredictionOut} prediction
 * @property {MapOut[]} maps
 * @property {RawArray | null} [mean_probs] Raw (C, H, W) MC-mean class probabilities; only with raw=true.
 * @property {Record<string, number>} class_shares
 * @property {RegionRow[]} regions
 * @property {string[]} unavailable Maps the model could not compute (all zeros here: feature_distance without a fitted density).
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
 * @property {string} codes_png 8-bit greyscale PNG data URL of the codes, indices into Config.errorLegend (0 correct, 1 wrong, 2 not scored).
 * @property {string | null} [url] GET URL of the colour PNG.
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
 * @property {string} model The served model to analyse with.
 * @property {number} samples
 * @property {number} seed
 * @property {boolean} calibrated
 * @property {"working" | "full"} resolution
 * @property {Tta} tta
 * @property {number} ignoreIndex
 * @property {number | null} oodLabel
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
