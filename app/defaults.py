"""The one place every default and shared constant is written.

Everything else imports these names; a default that appears as a literal in two modules is a bug.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

DEFAULT_MODEL = "default"
# What `make run` (Settings() with neither SEGU_MODEL nor SEGU_MODELS) serves: the synthetic demo first, then the person model.
DEFAULT_MODELS: Final[tuple[str, ...]] = ("default", "person")
DEFAULT_SAMPLES = 20
# How MC-dropout masks relate across the T samples: "stratified" (balanced blocks, less noise) or "iid"; see
# app/engine/dropout_masks.py.
DEFAULT_MASK_SCHEME = "stratified"
MAX_SAMPLES = 64
# MC standard errors: the T samples form this many jackknife groups (app/maps/mc_error.py); a difference of two map
# means is "within noise" when it is under NOISE_Z combined standard errors.
MC_GROUPS = 10
NOISE_Z = 2.0
# How the sampled maps are estimated (app/engine/options.py): "sampled" (plug-in statistics of T textbook samples, the
# reference), "rao_blackwellised" (channel dropout before a linear head: each pixel's ENUMERATED_CHANNELS widest channels
# summed over exactly in every draw, draws independent per block of pixels, jackknife bias-corrected;
# app/engine/rb_head.py), "propagated" (the same channels exact, the others to second order, nothing sampled;
# app/maps/propagation.py) or "auto" (rao_blackwellised where it applies, else sampled). The engine's own default is
# "sampled"; analyses at the working size (API, CLI, page) use DEFAULT_ESTIMATOR; sliding-window analyses sample.
Estimator = Literal["auto", "sampled", "rao_blackwellised", "propagated"]
ESTIMATORS: Final[tuple[Estimator, ...]] = get_args(Estimator)
DEFAULT_ESTIMATOR: Final[Estimator] = "auto"
# The Rao–Blackwellised estimator spends `samples` head evaluations per pixel as samples // 2^k draws of 2^k branches.
ENUMERATED_CHANNELS = 2
# The order α of the entropy's residual bias that the Rao–Blackwellised estimator's jackknife removes (bias ∝ T^-α after
# the second-order term; α = 1 is the textbook jackknife). Fitted on images disjoint from the noise benchmark's by
# benchmarks/jackknife_order.py (docs/results.md "The jackknife's order").
JACKKNIFE_ORDER = 1.1
# Test-time augmentation modes (app/engine/augment.py); "none" is the default.
TtaMode = Literal["none", "flips", "flips+scales", "photometric"]
TTA_MODES: Final[tuple[TtaMode, ...]] = get_args(TtaMode)
DEFAULT_TTA: Final[TtaMode] = "none"
DEFAULT_SEED = 0
MAX_PIXELS = 40_000_000
# A tiled TIFF is read tile by tile (app.io.pixel_source): its limit bounds time and disk, not memory.
MAX_TILED_PIXELS = 2**30
# A full-resolution analysis of more pixels streams to maps.zarr (analyze --format auto, the server's SEGU_STREAM_PIXELS).
STREAM_PIXELS = 2048 * 2048
MAX_BODY_BYTES = 50 * 2**20
MEMORY_BUDGET = 512 * 2**20
MIN_AREA = 64
IGNORE_INDEX = 255
ECE_BINS = 15
# Detection metrics (AUROC/AURC): most distinct score values kept exactly per metric table (32 bytes each) before
# neighbouring values are merged into log-spaced bins; see app/metrics/detection.py.
DETECTION_MAX_DISTINCT = 2**18
TEMPERATURE_FIT_MAX_PIXELS = 20_000_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
# Pillow formats opened (the decoders behind IMAGE_SUFFIXES and MASK_SUFFIXES); every other format is refused unread.
IMAGE_FORMATS: Final = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")
MASK_FORMATS: Final = ("PNG", "TIFF", "BMP")
MAX_SEED = 2**32 - 1
MAX_LABEL = 2**16 - 1
JPEG_QUALITY = 85
CACHE_ENTRIES = 64
CACHE_BYTES = 512 * 2**20
CACHE_TTL_SECONDS = 900.0
TOP_CLASSES = 3
REGION_ROWS_SHOWN = 10
# "working": the card's working size; "full": every input pixel (sliding windows bound memory).
Resolution = Literal["working", "full"]
RESOLUTIONS: Final[tuple[Resolution, ...]] = get_args(Resolution)
DEFAULT_RESOLUTION: Final[Resolution] = "working"
PIXEL_DEBOUNCE_MS = 120
RERUN_DEBOUNCE_MS = 400

# Deployment safety (web app): hosts accepted in the Host header by default, and the shortest API key accepted.
ALLOWED_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
API_KEY_MIN_LENGTH = 16

# Admission control, deadlines and slow clients (web app). Work = analysed pixels x (samples + 1); the work admitted at
# once (running and waiting) is capped at MAX_WORK. An analysis's results, its raw JSON answer included, take at most
# BYTES_PER_WORK_UNIT per analysed pixel (default model: 255 B/px measured), so MAX_WORK bounds them all together to
# 4 x MEMORY_BUDGET (2 GiB), on top of each running analysis's engine memory (MEMORY_BUDGET).
MAX_QUEUE = 8
BYTES_PER_WORK_UNIT = 256
MAX_WORK = 4 * MEMORY_BUDGET // BYTES_PER_WORK_UNIT
REQUEST_TIMEOUT = 120.0
# Long analyses as jobs (app/web/jobs.py): a request over MAX_WORK but within MAX_JOB_WORK is answered 202 and runs in
# the background. 2**31 units hold a 12 MP photo at full resolution with 20 samples and 4 test-time passes (1.0e9 units;
# ~50 s per pass on two CPU cores). A job's results take up to BYTES_PER_WORK_UNIT per analysed pixel (a 4000x3000
# person analysis peaked at 2.0 GB resident), so MAX_JOB_PIXELS bounds a job's memory whatever its samples.
MAX_JOB_WORK = 2**31
MAX_JOB_PIXELS = 16_000_000
JOB_TIMEOUT = 900.0
MAX_JOBS = 8
JOB_TTL_SECONDS = 900.0
BODY_TIMEOUT = 60.0
KEEP_ALIVE_TIMEOUT = 5
HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 16 * 1024

# Dynamic batching (web app, app/workflows/batching.py): running analyses of the same analysed size share one pass of the
# deterministic prefix, up to MAX_BATCH_SIZE images (1: off), the first waiting at most MAX_WAIT_MS for the others. Off by
# default: on CPU it gains little, a lone request waits MAX_WAIT_MS, and a batched result equals the unbatched one to
# ~1e-6 only (it depends on its batch-mates in the last bits); on a GPU, turn it on with SEGU_MAX_CONCURRENT.
MAX_BATCH_SIZE = 1
MAX_WAIT_MS = 10.0

# Decoding is charged to the work budget as well (app/io/decode_cost.py estimates it from the header, app/web/work_estimate.py
# converts it): one work unit stands for DECODE_NS_PER_WORK_UNIT ns of CPU (an analysis unit took 0.84 µs with the person
# model on two shared cores, 6.6 µs with the default model) and for BYTES_PER_WORK_UNIT of memory; a decode costs the
# larger of its estimated time and peak memory in units.
DECODE_NS_PER_WORK_UNIT = 1000

# Adversarial sensitivity (app/engine/adversarial.py, issue 23): off unless asked. Radii in pixel levels of [0, 255]
# (2 is 2/255), FGSM then ADVERSARIAL_STEPS PGD steps per radius. The attack runs whole (no sliding windows: gradients
# of a tiled pass would need every tile's activations), so its image is bounded by ADVERSARIAL_MAX_PIXELS; its work is
# counted as ADVERSARIAL_PASS_UNITS deterministic passes per forward-and-backward pass (a backward costs about two forwards).
DEFAULT_ADVERSARIAL_EPSILONS: Final[tuple[float, ...]] = (1.0, 2.0, 4.0, 8.0)
ADVERSARIAL_STEPS = 3
MAX_ADVERSARIAL_STEPS = 20
MAX_ADVERSARIAL_EPSILONS = 8
ADVERSARIAL_MAX_PIXELS = 512 * 512
ADVERSARIAL_PASS_UNITS = 3
