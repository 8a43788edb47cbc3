"""Every component id of the app, declared once (kebab-case ``view-thing-kind``).

Pattern-matching ids come from builder functions so that the dict shape is typed in one place; a
job panel's ids are built from its name by ``app.jobs.panel.JobPanel.ids``.
"""
from __future__ import annotations

# -- shell: location, app-wide stores, run picker, status, new run ---------------------------------
URL = "shell-url-location"
STORE_RUN = "shell-run-store"  # run id (str) or None
STORE_CELL = "shell-cell-store"  # cell id (int) or None
STORE_SEL = "shell-selection-store"  # {"ids": [image index, ...], "from": "graph"|"url"|"note"}
STORE_VIEW = "shell-view-store"  # "images" | "concepts"
STORE_VIEWER = "shell-viewer-store"  # {"index": i, "map": "aggregate"|k|None, "pair": j|-1|None} (app.views.viewer), or None
STORE_FILTER = "shell-filter-store"  # the analyst's image filter (app.state.filters), or None = all images
STORE_HIGHLIGHT = "shell-highlight-store"  # {"ids": [image index, ...], "why": text} drawn on the grid
RUN_PICKER = "shell-run-dropdown"
STATUS = "shell-status-div"
FALLBACK_NOTICE = "shell-fallback-alert"
METRICS = "shell-metrics-div"
NEWRUN_TOGGLE = "shell-newrun-button"
NEWRUN_COLLAPSE = "shell-newrun-collapse"
NEWRUN_PATH = "shell-newrun-path-input"
NEWRUN_CATEGORIES = "shell-newrun-categories-input"
NEWRUN_GENERATORS = "shell-newrun-generators-input"
NEWRUN_START = "shell-newrun-start-button"
NEWRUN_CANCEL = "shell-newrun-cancel-button"
NEWRUN_PROGRESS = "shell-newrun-progress"
NEWRUN_PROGRESS_LABEL = "shell-newrun-progress-label-div"
NEWRUN_MESSAGE = "shell-newrun-message-div"
NEWRUN_OPEN = "newrun-open-link"  # "open it" link of a finished new run

# -- data checks ------------------------------------------------------------------------------
CHECKS_PANEL = "checks-panel-details"
CHECKS_SUMMARY = "checks-summary-span"
CHECKS_CONTENT = "checks-content-div"
PROBE_JOB = "probe"  # the bias probe's job panel
PROBE_CONTENT = "checks-probe-div"
PROBE_START = "checks-probe-button"

# -- representation view ----------------------------------------------------------------------
REPR_GRAPH = "representation-cells-graph"
REPR_LEGEND = "representation-legend-div"
REPR_INFO = "representation-info-div"
REPR_SHOWN = "representation-shown-store"  # run id of the figure on screen
REPR_VIEW = "representation-view-store"  # axis ranges on screen (level of detail past GLYPH_CELLS)
REPR_TITLE = "representation-title-span"  # "Representation" / "… · applied set X of run Y"
REPR_APPLIED_NOTE = "representation-applied-legend-div"  # what an applied set's drawing encodes

# -- applied sets: the data switch, "score a folder with this run" (app.views.applied) ------------
REPR_DATA = "applied-data-dropdown"  # run id (training data) or "RUN@SET" (an applied set)
REPR_LAYERS = "applied-layers-radio"  # "set" (its glyphs) | "both" (its images over the run's glyphs)
REPR_LAYERS_WRAP = "applied-layers-div"
APPLY_TOGGLE = "applied-score-button"
APPLY_COLLAPSE = "applied-score-panel-div"
APPLY_SCROLL = "applied-score-scroll-store"  # output of the clientside scroll into view
APPLY_RUN = "applied-score-run-div"  # which run will score the folder
APPLY_PATH = "applied-score-path-input"
APPLY_NAME = "applied-score-name-input"
APPLY_START = "applied-score-start-button"
APPLY_CANCEL = "applied-score-cancel-button"
APPLY_PROGRESS = "applied-score-progress"
APPLY_PROGRESS_LABEL = "applied-score-progress-label-div"
APPLY_MESSAGE = "applied-score-message-div"
APPLY_OPEN = "applied-score-open-link"  # "open it" link of a finished applied set

# -- cross-generator matrix (app.views.matrix) ------------------------------------------------
MATRIX_PANEL = "matrix-panel-details"
MATRIX_SUMMARY = "matrix-summary-span"
MATRIX_JOB = "matrix"  # its job panel
MATRIX_CONTENT = "matrix-content-div"
MATRIX_GRAPH = "matrix-heatmap-graph"
MATRIX_FIGURE = "matrix-figure-radio"  # "auc" | "accuracy"
MATRIX_START = "matrix-compute-button"
MATRIX_ASK = "matrix-ask-store"  # {"run": id}: the button was pressed while this run was open
MATRIX_MESSAGE = "matrix-click-message-div"
MATRIX_OPEN = "matrix-open-store"  # {"run", "cell": "set:<hash>"}: a pair's misclassified images to open

# -- image view -------------------------------------------------------------------------------
IMAGES_JOB = "images"  # the grid's job panel (app.jobs.panel.JobPanel.ids builds its ids)
IMAGES_GRAPH = "images-grid-graph"
IMAGES_TITLE = "images-title-div"
IMAGES_PANEL = "images-panel-div"
IMAGES_TOOLTIP = "images-hover-tooltip"
IMAGES_TOOLTIP_IMG = "images-hover-img"
IMAGES_TOOLTIP_TEXT = "images-hover-text-div"
IMAGES_SHOWN = "images-shown-store"  # {"run", "cell", "sprite"} of the figure on screen
IMAGES_LEGEND_UNLABELLED = "images-legend-unlabelled-span"  # "no label" frame, for applied sets
IMAGES_HIGHLIGHT = "images-highlight-div"  # what the highlighted tiles are, with a clear button
HIGHLIGHT_CLEAR = "images-highlight-clear-button"
VIEW_TOGGLE = "images-view-radio"

# -- image viewer (app.views.viewer) ------------------------------------------------------------
VIEWER_JOB = "viewer"  # the viewer's job panel (the relevance layer of one image)
VIEWER_MODAL = "viewer-image-modal"
VIEWER_TITLE = "viewer-title-div"
VIEWER_POSITION = "viewer-position-span"
VIEWER_PREV = "viewer-previous-button"
VIEWER_NEXT = "viewer-next-button"
VIEWER_CLOSE = "viewer-close-button"
VIEWER_GRAPH = "viewer-image-graph"
VIEWER_PAIR_GRAPH = "viewer-pair-graph"
VIEWER_MAIN_HEAD = "viewer-image-head-div"
VIEWER_PAIR_HEAD = "viewer-pair-head-div"
VIEWER_PAIR_WRAP = "viewer-pair-div"  # the side-by-side picture and its head (hidden when none)
VIEWER_FACTS = "viewer-facts-div"
VIEWER_OVERLAY = "viewer-overlay-checklist"
VIEWER_MAP = "viewer-map-dropdown"
VIEWER_OPACITY = "viewer-opacity-slider"
VIEWER_LEGEND = "viewer-legend-div"
VIEWER_PAIRS = "viewer-pairs-div"
VIEWER_FIT = "viewer-fit-button"
VIEWER_ACTUAL = "viewer-actual-size-button"
VIEWER_ZOOM = "viewer-zoom-span"
VIEWER_KEY = "viewer-key-store"  # {"index", "t"}: Enter on a thumbnail (assets/viewer.js)
VIEWER_SUBJECT = "viewer-subject-checklist"  # ["on"]: the subject mask's outline drawn over the image

# -- attention view ---------------------------------------------------------------------------
ATTN_JOB = "attention"  # its job panel
ATTN_PANEL = "attention-panel-div"
ATTN_CONTENT = "attention-content-div"
ATTN_SCROLL = "attention-scroll-store"  # output of the clientside scroll into view
ATTN_READY = "attention-ready-store"  # {"run": id} once the selection's maps are shown
CHECK_JOB = "deletion"  # the run's deletion check, a job of its own after the first maps
ATTN_CHECKED = "attention-checked-store"  # id of the run whose deletion check is ready
ATTN_PROFILE_JOB = "profiles"  # where each dimension looks on the shown images, a job after their maps
ATTN_PROFILED = "attention-profiled-store"  # {"run", "indices"} once those images' profiles are kept

# -- dimension atlas (app.views.atlas) ----------------------------------------------------------
ATLAS_PANEL = "atlas-panel-details"
ATLAS_SUMMARY = "atlas-summary-span"
ATLAS_CONTENT = "atlas-content-div"
ATLAS_START = "atlas-build-button"
ATLAS_CANCEL = "atlas-cancel-button"
ATLAS_PROGRESS = "atlas-progress"
ATLAS_PROGRESS_LABEL = "atlas-progress-label-span"
ATLAS_MESSAGE = "atlas-message-div"

# -- concept view -----------------------------------------------------------------------------
CONCEPTS_JOB = "concepts"  # its job panel
CONCEPTS_PANEL = "concepts-panel-div"
CONCEPTS_CONTENT = "concepts-content-div"
CONCEPTS_PROFILE_JOB = "cell-profiles"  # where each dimension looks in the open cell (a sample of it)
CONCEPTS_COUNT = "concepts-count-div"  # its count line

# -- cell finder: the image filter bar, the file-name search, the cell table -----------------------
FILTER_GENERATOR = "finder-generator-dropdown"
FILTER_CATEGORY = "finder-category-dropdown"
FILTER_LABEL = "finder-label-dropdown"
FILTER_OUTCOME = "finder-outcome-dropdown"
FILTER_SPLIT = "finder-split-dropdown"
FILTER_P = "finder-p-rangeslider"
FILTER_NAME = "finder-name-input"
FILTER_CLEAR = "finder-clear-button"
FILTER_INFO = "finder-info-div"  # how many images pass the filter
FINDER_HITS = "finder-hits-div"  # files whose name matches the search
FINDER_TABLE = "finder-cells-grid"  # dash-ag-grid table of the cells
FINDER_TABLE_INFO = "finder-table-info-div"

# -- notes ------------------------------------------------------------------------------------
NOTES_TEXT = "notes-text-textarea"
NOTES_TAG = "notes-tag-input"
NOTES_ADD_CELL = "notes-add-cell-button"
NOTES_ADD_IMAGES = "notes-add-images-button"
NOTES_MESSAGE = "notes-message-div"
NOTES_LIST = "notes-list-div"
NOTES_EXPORT = "notes-export-div"
NOTES_VERSION = "notes-version-store"


def note_jump(note_id: str | object) -> dict:
    """Button that jumps back to a note's cell and images (``MATCH``/``ALL`` allowed)."""
    return {"type": "notes-jump-button", "index": note_id}


def note_delete(note_id: str | object) -> dict:
    """Button that deletes a note."""
    return {"type": "notes-delete-button", "index": note_id}


def concept_show(k: int | object) -> dict:
    """Button that highlights the images concept ``k`` came from in the grid."""
    return {"type": "concepts-show-button", "index": k}


def concept_profile(k: int | object) -> dict:
    """Bar chart of concept ``k``'s profile over the 16 dimensions."""
    return {"type": "concepts-profile-graph", "index": k}


def viewer_open(index: int | object, which: str | int | object = "") -> dict:
    """A clickable that opens the image viewer on image ``index`` with map ``which`` as the
    overlay (``"aggregate"``, a dimension ``k``, or ``""`` = the viewer's current choice).
    ``ALL`` in both keys matches every such button (``app.views.viewer.open_button`` builds one)."""
    return {"type": "viewer-open-button", "index": index, "map": which}


def viewer_compare(index: int | object) -> dict:
    """A same-source image in the viewer's strip: shows it side by side (-1 hides the pair)."""
    return {"type": "viewer-compare-button", "index": index}
def finder_hit(index: int | object) -> dict:
    """A file found by the name search: opens its cell and the image (``MATCH``/``ALL`` allowed)."""
    return {"type": "finder-hit-button", "index": index}


# The data checks' "re-run with both classes re-encoded" and the two runs side by side (issue 23.7)
CONFOUND_BOX = "confound-box-div"
CONFOUND_REASON = "confound-reason-div"
CONFOUND_START = "confound-start-button"
CONFOUND_CANCEL = "confound-cancel-button"
CONFOUND_PROGRESS = "confound-progress"
CONFOUND_PROGRESS_LABEL = "confound-progress-label"
CONFOUND_MESSAGE = "confound-message-div"
COMPARE_SHOW = "compare-show-button"
STORE_COMPARE = "compare-store"
COMPARE_PANEL = "compare-panel"
COMPARE_CONTENT = "compare-content-div"
COMPARE_CLOSE = "compare-close-button"
