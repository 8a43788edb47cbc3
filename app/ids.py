"""Every component id of the app, declared once (kebab-case ``view-thing-kind``).

Pattern-matching ids come from builder functions so that the dict shape is typed in one place; a
job panel's ids are built from its name by ``app.jobpanel.JobPanel.ids``.
"""
from __future__ import annotations

# -- shell: location, app-wide stores, run picker, status, new run ---------------------------------
URL = "shell-url-location"
STORE_RUN = "shell-run-store"  # run id (str) or None
STORE_CELL = "shell-cell-store"  # cell id (int) or None
STORE_SEL = "shell-selection-store"  # {"ids": [image index, ...], "from": "graph"|"url"|"note"}
STORE_VIEW = "shell-view-store"  # "images" | "concepts"
STORE_VIEWER = "shell-viewer-store"  # {"index": image index} open in the image viewer, or None
STORE_FILTER = "shell-filter-store"  # the analyst's image filter (app.filters), or None = all images
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

# -- representation view ----------------------------------------------------------------------
REPR_GRAPH = "representation-cells-graph"
REPR_LEGEND = "representation-legend-div"
REPR_INFO = "representation-info-div"
REPR_SHOWN = "representation-shown-store"  # run id of the figure on screen
REPR_VIEW = "representation-view-store"  # axis ranges on screen (level of detail past GLYPH_CELLS)

# -- image view -------------------------------------------------------------------------------
IMAGES_JOB = "images"  # the grid's job panel (app.jobpanel.JobPanel.ids builds its ids)
IMAGES_GRAPH = "images-grid-graph"
IMAGES_TITLE = "images-title-div"
IMAGES_PANEL = "images-panel-div"
IMAGES_TOOLTIP = "images-hover-tooltip"
IMAGES_TOOLTIP_IMG = "images-hover-img"
IMAGES_TOOLTIP_TEXT = "images-hover-text-div"
IMAGES_SHOWN = "images-shown-store"  # {"run", "cell", "sprite"} of the figure on screen
VIEW_TOGGLE = "images-view-radio"

# -- attention view ---------------------------------------------------------------------------
ATTN_JOB = "attention"  # its job panel
ATTN_CONTENT = "attention-content-div"

# -- concept view -----------------------------------------------------------------------------
CONCEPTS_JOB = "concepts"  # its job panel
CONCEPTS_PANEL = "concepts-panel-div"
CONCEPTS_CONTENT = "concepts-content-div"

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


def concept_profile(k: int | object) -> dict:
    """Bar chart of concept ``k``'s profile over the 16 dimensions."""
    return {"type": "concepts-profile-graph", "index": k}


def finder_hit(index: int | object) -> dict:
    """A file found by the name search: opens its cell and the image (``MATCH``/``ALL`` allowed)."""
    return {"type": "finder-hit-button", "index": index}
