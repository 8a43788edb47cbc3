"""Real photographs for the demo data set, from what package registries and the user provide.

Three kinds of source, in this order (only the first is always there):

1. photos that ship inside installed Python packages: scikit-image (astronaut, chelsea, coffee,
   rocket, the motorcycle stereo pair), scikit-learn (china, flower) and, when installed,
   matplotlib (grace_hopper). Their licences are the ones the packages document.
2. Debian wallpaper packages, fetched with ``apt-get download`` (no root needed) and unpacked with
   ``dpkg-deb -x`` into ``<cache_dir>/demo_sources/<package>/``: ``mate-backgrounds`` (12 nature
   photos, GPL-2+) and ``lomiri-wallpapers-16.04`` (14 photos, CC-BY / CC-BY-SA / CC0; its 15th
   wallpaper is digital art and is left out). Each photo's credit and licence are read from the
   package's DEP-5 ``copyright`` file. When apt is missing or offline the reason is logged and the
   build goes on without them.
3. any folders of the user's own photos.

A :class:`SourcePhoto` is one *scene*: the unit that the train/held-out split keeps on one side.
The stereo pair is one scene with two views. Every message about a source that is left out
contains ``" skipped: "`` and the reason (the builder lists those in the data set's README).
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from pipeline.data.scan import IMAGE_EXTENSIONS, BadImageError, load_image_rgb, probe_image
from pipeline.config import DataConfig

Log = Callable[[str], None]


@dataclass(frozen=True)
class SourcePhoto:
    """One real scene: one or more image files of it, with where it came from and its licence."""

    id: str  # stable scene id, e.g. "python-packages/skimage-astronaut"; the split unit
    collection: str  # data-set category: python-packages | mate-backgrounds | lomiri-wallpapers-16.04 | user-photos
    files: tuple[Path, ...]  # views of the scene (two for a stereo pair)
    title: str
    credit: str  # author / copyright holder as the source states it
    licence: str
    origin: str  # package and path, or folder
    version: str  # changes whenever the file may have changed (package version, size and mtime)
    licence_file: Path | None = field(default=None, compare=False)  # e.g. a Debian copyright file

    def sizes(self, max_pixels: int = DataConfig.max_image_pixels) -> list[tuple[int, int]]:
        """(width, height) of each view, read from the headers only."""
        return [probe_image(f, max_pixels)[:2] for f in self.files]

    def load(self, max_pixels: int = DataConfig.max_image_pixels) -> list[Image.Image]:
        """Decode every view into upright 8-bit sRGB."""
        return [to_srgb(load_image_rgb(f, max_pixels)) for f in self.files]


def to_srgb(im: Image.Image) -> Image.Image:
    """Convert an RGB image with an embedded non-sRGB ICC profile (e.g. Display P3) to sRGB."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im
    try:
        from PIL import ImageCms
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return im
        return ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # a broken profile: keep the pixels as they are
        return im


def _noop(_: str) -> None:
    pass


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _package_dir(package: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


# ---------------------------------------------------------------------------------------------
# 1. Photos inside Python packages
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PackagePhoto:
    key: str
    package: str  # importable package name
    dist: str  # distribution name (for the version)
    subdir: str
    files: tuple[str, ...]
    title: str
    credit: str
    licence: str


# Credits and licences as the packages document them (skimage.data docstrings, sklearn's
# datasets/images/README.txt, matplotlib's sample_data).
PACKAGE_PHOTOS: tuple[_PackagePhoto, ...] = (
    _PackagePhoto("skimage-astronaut", "skimage", "scikit-image", "data", ("astronaut.png",),
                  "Astronaut Eileen Collins", "NASA (Great Images database, https://flic.kr/p/r9qvLn)",
                  "public domain (no known copyright restrictions)"),
    _PackagePhoto("skimage-chelsea", "skimage", "scikit-image", "data", ("chelsea.png",),
                  "Chelsea the cat", "Stefan van der Walt", "CC0"),
    _PackagePhoto("skimage-coffee", "skimage", "scikit-image", "data", ("coffee.png",),
                  "Coffee cup (courtesy of Pikolo Espresso Bar)", "Rachel Michetti", "CC0"),
    _PackagePhoto("skimage-rocket", "skimage", "scikit-image", "data", ("rocket.jpg",),
                  "Launch of DSCOVR on Falcon 9",
                  "SpaceX (https://www.flickr.com/photos/spacexphotos/16511594820)",
                  "public domain (released by SpaceX)"),
    _PackagePhoto("skimage-motorcycle", "skimage", "scikit-image", "data",
                  ("motorcycle_left.png", "motorcycle_right.png"),
                  "Motorcycle, rectified stereo pair (one scene, two views)",
                  "Middlebury 2014 stereo benchmark: N. Nesic, P. Westling, X. Wang, Y. Kitajima, "
                  "G. Krathwohl, D. Scharstein (Scharstein et al., GCPR 2014); down-sampled 4x by scikit-image",
                  "distributed with scikit-image (BSD-3-Clause package); cite Scharstein et al. 2014"),
    _PackagePhoto("sklearn-china", "sklearn", "scikit-learn", "datasets/images", ("china.jpg",),
                  "Summer Palace, China",
                  "danielbuechele (https://www.flickr.com/photos/danielbuechele/6061409035)", "CC-BY-2.0"),
    _PackagePhoto("sklearn-flower", "sklearn", "scikit-learn", "datasets/images", ("flower.jpg",),
                  "Flower", "vultilion (https://www.flickr.com/photos/vultilion/6056698931)", "CC-BY-2.0"),
    _PackagePhoto("matplotlib-grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data",
                  ("grace_hopper.jpg",), "Rear Admiral Grace Hopper",
                  "U.S. Navy (official portrait)", "public domain (work of the U.S. federal government)"),
)


def package_photos(log: Log = _noop) -> list[SourcePhoto]:
    """Photos shipped inside installed Python packages; a missing package or file is logged."""
    out = []
    for p in PACKAGE_PHOTOS:
        root = _package_dir(p.package)
        if root is None:
            log(f"demo data: {p.key} skipped: Python package {p.dist} is not installed")
            continue
        files = tuple(root / p.subdir / f for f in p.files)
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            log(f"demo data: {p.key} skipped: {', '.join(missing)} not found in {p.dist}")
            continue
        version = f"{p.dist}=={_dist_version(p.dist)}:" + ",".join(str(f.stat().st_size) for f in files)
        out.append(SourcePhoto(id=f"python-packages/{p.key}", collection="python-packages", files=files,
                               title=p.title, credit=p.credit, licence=p.licence,
                               origin=f"Python package {p.dist} {_dist_version(p.dist)}: "
                                      + ", ".join(f"{p.package}/{p.subdir}/{f}" for f in p.files),
                               version=version))
    return out


# ---------------------------------------------------------------------------------------------
# 2. Debian wallpaper packages
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DebianWallpapers:
    package: str
    photo_glob: str  # relative to the unpacked package root
    exclude: tuple[str, ...] = ()  # file names that are not photographs
    note: str = ""


DEBIAN_SOURCES: tuple[DebianWallpapers, ...] = (
    DebianWallpapers("mate-backgrounds", "usr/share/backgrounds/mate/nature/*.jpg",
                     note="the 12 photos of the 'nature' folder (the other folders hold artwork)"),
    DebianWallpapers("lomiri-wallpapers-16.04", "usr/share/backgrounds/*.jpg",
                     exclude=("umang_by_Abhishek_Mudgal.jpg",),
                     note="14 of its 15 wallpapers; umang_by_Abhishek_Mudgal.jpg is a digital gradient, not a photo"),
)

_MARKER = ".complete.json"


def parse_dep5(text: str) -> list[dict]:
    """Parse a machine-readable Debian ``copyright`` file (DEP-5) into its ``Files`` paragraphs.

    Returns
    -------
    list of dict
        ``{"files": [patterns], "copyright": str, "license": str}`` in file order (DEP-5: the
        last paragraph matching a file wins).
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line:
                current, value = line.split(":", 1)
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields:
            paragraphs.append({"files": fields["files"].split(),
                               "copyright": " ".join(fields.get("copyright", "").split()),
                               "license": fields.get("license", "").split("\n")[0].strip()})
    return paragraphs


def dep5_lookup(paragraphs: list[dict], file_name: str) -> dict | None:
    """The paragraph that governs ``file_name`` (last match wins, as DEP-5 says).

    Installed paths differ from the upstream paths the file speaks of (``nature/Aqua.jpg`` is
    installed as ``usr/share/backgrounds/mate/nature/Aqua.jpg``), so patterns are matched on the
    base name; a pattern that names no file, only a folder (``debian/*``), applies to that folder
    alone and is skipped. ``*`` matches everything.
    """
    hit = None
    for para in paragraphs:
        for pattern in para["files"]:
            base = Path(pattern).name
            if pattern == "*" or (base.strip("*?") and fnmatch.fnmatchcase(file_name, base)):
                hit = para
    return hit


def _run(cmd: list[str], cwd: Path, timeout: float) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    except OSError as e:
        return False, f"could not run {cmd[0]}: {e}"
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("E:")] or lines
        return False, f"exit code {proc.returncode}: {errors[-1] if errors else 'no message'}"
    return True, proc.stdout


def fetch_debian_package(package: str, cache_dir: Path, log: Log = _noop, apt_get: str = "apt-get",
                         dpkg_deb: str = "dpkg-deb", timeout: float = 300.0) -> Path | None:
    """Download and unpack a Debian package into ``<cache_dir>/demo_sources/<package>/`` (once).

    Needs no root: ``apt-get download`` writes the ``.deb`` into the working folder and
    ``dpkg-deb -x`` unpacks it anywhere. The folder is filled under a temporary name and renamed
    when complete, so an interrupted fetch leaves nothing half-done.

    Returns
    -------
    Path or None
        The unpacked package root, or None (with the reason logged) when apt is missing,
        offline, or the package is unknown.
    """
    base = Path(cache_dir) / "demo_sources"
    root = base / package
    if (root / _MARKER).is_file():
        return root
    for tool in (apt_get, dpkg_deb):
        if shutil.which(tool) is None:
            log(f"demo data: Debian package {package} skipped: {tool} not found "
                f"(not a Debian/Ubuntu system?)")
            return None
    base.mkdir(parents=True, exist_ok=True)
    log(f"demo data: fetching Debian package {package} with apt-get download ...")
    with tempfile.TemporaryDirectory(dir=base, prefix=f".{package}.") as tmp:
        tmp = Path(tmp)
        ok, msg = _run([apt_get, "download", "-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=30",
                        "-o", "Acquire::https::Timeout=30", package], tmp, timeout)
        debs = sorted(tmp.glob("*.deb"))
        if not ok or not debs:
            log(f"demo data: Debian package {package} skipped: apt-get download failed "
                f"({msg if not ok else 'no .deb written'})")
            return None
        deb = debs[0]
        unpacked = tmp / "root"
        ok, msg = _run([dpkg_deb, "-x", str(deb), str(unpacked)], tmp, timeout)
        if not ok:
            log(f"demo data: Debian package {package} skipped: dpkg-deb -x failed ({msg})")
            return None
        ok, version = _run([dpkg_deb, "-f", str(deb), "Version"], tmp, 60)
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        (unpacked / _MARKER).write_text(json.dumps({"package": package, "deb": deb.name,
                                                    "version": version.strip() if ok else "unknown",
                                                    "sha256": digest}, indent=1))
        if root.exists():  # a leftover without marker, from an older interrupted layout
            shutil.rmtree(root)
        try:
            os.replace(unpacked, root)
        except OSError:
            if not (root / _MARKER).is_file():  # another process did not finish it either
                raise
    log(f"demo data: Debian package {package} unpacked into {root}")
    return root


def debian_wallpapers(cache_dir: Path, log: Log = _noop, apt_get: str = "apt-get",
                      dpkg_deb: str = "dpkg-deb") -> list[SourcePhoto]:
    """Photos from the Debian wallpaper packages in :data:`DEBIAN_SOURCES` (empty when apt fails)."""
    out = []
    for spec in DEBIAN_SOURCES:
        root = fetch_debian_package(spec.package, cache_dir, log, apt_get=apt_get, dpkg_deb=dpkg_deb)
        if root is None:
            continue
        info = json.loads((root / _MARKER).read_text())
        copyright_file = root / "usr/share/doc" / spec.package / "copyright"
        paragraphs = parse_dep5(copyright_file.read_text(encoding="utf-8", errors="replace")) \
            if copyright_file.is_file() else []
        files = sorted(f for f in root.glob(spec.photo_glob) if f.name not in spec.exclude)
        if not files:
            log(f"demo data: Debian package {spec.package} skipped: no photos match {spec.photo_glob}")
        for f in files:
            para = dep5_lookup(paragraphs, f.name)
            out.append(SourcePhoto(
                id=f"{spec.package}/{f.name}", collection=spec.package, files=(f,),
                title=f.stem.replace("_", " "),
                credit=para["copyright"] if para else "see the package's copyright file",
                licence=para["license"] if para else "see the package's copyright file",
                origin=f"Debian package {spec.package} {info['version']}: /{f.relative_to(root).as_posix()}",
                version=f"{spec.package}={info['version']}:{info['sha256'][:16]}",
                licence_file=copyright_file if copyright_file.is_file() else None))
    return out


# ---------------------------------------------------------------------------------------------
# 3. The user's own photos
# ---------------------------------------------------------------------------------------------
def user_photos(dirs: list[Path] | tuple[Path, ...], log: Log = _noop,
                max_pixels: int = DataConfig.max_image_pixels) -> list[SourcePhoto]:
    """Every readable image under the given folders (recursively), one scene per file.

    Unreadable files are logged with the reason and skipped.
    """
    out = []
    for i, d in enumerate(dirs):
        d = Path(d).expanduser()
        if not d.is_dir():
            raise NotADirectoryError(f"--real-dir {d}: not a folder")
        prefix = "user-photos" if len(dirs) == 1 else f"user-photos/{i}"
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            log(f"demo data: folder {d} skipped: it holds no image files "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        for f in files:
            try:
                probe_image(f, max_pixels)
            except BadImageError as e:
                log(f"demo data: user photo skipped: {e}")
                continue
            st = f.stat()
            rel = f.relative_to(d).as_posix()
            out.append(SourcePhoto(id=f"{prefix}/{rel}", collection="user-photos", files=(f,), title=rel,
                                   credit="the user's own photo", licence="the user's own",
                                   origin=f"folder {d}: {rel}", version=f"{st.st_size}:{st.st_mtime_ns}"))
    return out


def user_photos_state(dirs: list[Path] | tuple[Path, ...]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every candidate file: cheap key for "did the user's photos change"."""
    state = []
    for d in dirs:
        d = Path(d).expanduser()
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                    st = p.stat()
                    state.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return state
