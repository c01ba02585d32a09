"""Component ids, defined once; layout and callbacks import them from here."""

# Input
UPLOAD = "upload"
DEMO_BUTTON = "demo-button"
FILE_INFO = "file-info"
ALERT = "alert"
NOTES = "notes"

# Segmentation settings (a change reruns the analysis)
SEGMENTER = "segmenter"
DIAMETER_PX = "diameter-px"
VIEWS = "views"
SPLIT_TOUCHING = "split-touching"
MIN_AREA = "min-area-px"
DATA_BAR_MODE = "data-bar-mode"
DATA_BAR_ROWS = "data-bar-rows"

# Measurement settings (a change re-measures, no segmentation)
NM_PER_PX = "nm-per-px"
SCALE_BAR_LABEL = "scale-bar-label"
CALIBRATION_INFO = "calibration-info"

# View settings (a change redraws only)
QUANTITY = "quantity"
BASIS = "basis"
BIN_WIDTH = "bin-width"
BIN_WIDTH_HINT = "bin-width-hint"
EDGE_MODE = "edge-mode"
MIN_ECD = "min-ecd"
MAX_ECD = "max-ecd"
MIN_CIRCULARITY = "min-circularity"
FILTER_INFO = "filter-info"

# Results
RESULTS_LOADING = "results-loading"
HISTOGRAM = "histogram"
STATS_TABLE = "stats-table"
OVERLAY = "overlay"
OVERLAY_OPACITY = "overlay-opacity"
OVERLAY_MODE = "overlay-mode"
LINE_MODE = "line-mode"
LINE_LENGTH = "line-length"

# Paint canvas
CANVAS = "canvas"
CANVAS_TOOL = "canvas-tool"
CANVAS_BRUSH = "canvas-brush"
CANVAS_COLOUR = "canvas-colour"
UNDO = "undo-button"
REDO = "redo-button"
EDIT_INFO = "edit-info"

# Downloads
DOWNLOAD_CSV_BUTTON = "download-csv-button"
DOWNLOAD_LABELS_BUTTON = "download-labels-button"
DOWNLOAD_SUMMARY_BUTTON = "download-summary-button"
DOWNLOAD = "download"

# Per-session stores
STORE_SOURCE = "store-source"
STORE_ANALYSIS = "store-analysis"
STORE_GRAY = "store-gray"
STORE_EDITS = "store-edits"
STORE_RESULTS = "store-results"
STARTUP_NOTICE = "startup-notice"
BUSY = "busy"

# Samples view (a batch of images on the server; the page keeps only its id)
BATCH_UPLOAD = "batch-upload"
BATCH_DEMO_BUTTON = "batch-demo-button"
SAMPLE_PATTERN = "sample-pattern"
GROUP_BUTTON = "group-button"
BATCH_ALERT = "batch-alert"
BATCH_NOTES = "batch-notes"
BATCH_PROGRESS = "batch-progress"
BATCH_PROGRESS_TEXT = "batch-progress-text"
BATCH_POLL = "batch-poll"
IMAGE_TABLE = "image-table"
OPEN_IMAGE = "open-image"  # pattern-matching type, {"type": OPEN_IMAGE, "index": i}
EXCLUDE_IMAGE = "exclude-image"  # pattern-matching type
IMAGE_SAMPLE = "image-sample"  # pattern-matching type: the sample name typed for one image
POOLED_SAMPLE = "pooled-sample"
POOLED_HISTOGRAM = "pooled-histogram"
POOLED_STATS = "pooled-stats"
POOLED_HINT = "pooled-hint"
COMPARE_FIGURE = "compare-figure"
COMPARE_TABLE = "compare-table"
COMPARE_TESTS = "compare-tests"
DOWNLOAD_BATCH_BUTTON = "download-batch-button"
BATCH_DOWNLOAD = "batch-download"
STORE_BATCH = "store-batch"
STORE_BATCH_REVISION = "store-batch-revision"

# Teach the model on my corrections (samples view)
CHECK_IMAGE = "check-image"  # pattern-matching type: mark one image of a batch fully checked
TEACH_BUTTON = "teach-button"
TEACH_CANCEL = "teach-cancel"
TEACH_KEEP = "teach-keep"
TEACH_DISCARD = "teach-discard"
TEACH_PROGRESS = "teach-progress"
TEACH_TEXT = "teach-text"
TEACH_POLL = "teach-poll"
TEACH_ALERT = "teach-alert"
TEACH_TABLE = "teach-table"
TEACH_OVERLAY_BEFORE = "teach-overlay-before"
TEACH_OVERLAY_AFTER = "teach-overlay-after"
MODEL_IN_USE = "model-in-use"
MODEL_DOWNLOAD_BUTTON = "model-download-button"
MODEL_DOWNLOAD = "model-download"
MODEL_UPLOAD = "model-upload"
# Particle classes (single-image view)
CLASS_NAMES = "class-names"
CLASS_ACTIVE = "class-active"
CLASS_INFO = "class-info"
STORE_CLASSES = "store-classes"
