"""``dsconv.load``: the built-in networks as objects with ``predict`` and ``classify``."""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _dsconv

#: What ``classify`` accepts as one image.
ImageLike = Union[str, "os.PathLike[str]", Any]


class Model:
    """A built-in network (``dsconv.load``): ``predict`` on preprocessed batches,
    ``classify`` on photos, ``cost`` tables. Immutable and safe to share between threads;
    every call releases the GIL.

    >>> import numpy as np, dsconv
    >>> net = dsconv.load("mobilenet-v2", seed=7)          # random weights
    >>> net.predict(np.zeros((2, 3, 224, 224), np.float32)).shape
    (2, 1000)
    """

    def __init__(self, network: "_dsconv.Network") -> None:
        self._net = network

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``"mobilenet-v2"``."""
        return self._net.name

    @property
    def resolution(self) -> int:
        """Input height = width of its ImageNet weights (MobileNetV1: what it is built for)."""
        return self._net.resolution

    @property
    def width(self) -> float:
        """The width multiplier α."""
        return self._net.width

    @property
    def preprocess(self) -> Optional[dict]:
        """The registry's preprocessing: ``{"resize", "crop", "resampling", "mean", "std"}``
        or None."""
        return self._net.preprocess

    def predict(self, batch: Any, threads: Optional[int] = None) -> np.ndarray:
        """Logits ``[N, classes]`` (float32) for a preprocessed NCHW batch ``[N, 3, H, W]``.

        Bitwise equal to the Rust library's (and ``dsconv run``'s) logits on the same input,
        for every thread count. ``threads``: this call's thread count (None: the object's,
        else ``dsconv.get_num_threads()``)."""
        return self._net.predict(batch, threads)

    __call__ = predict

    def preprocess_images(self, images: Union[ImageLike, Sequence[ImageLike]]) -> np.ndarray:
        """The NCHW float32 batch ``classify`` feeds to ``predict``: each image (a path, a
        PIL image or a uint8 ``[H, W, 3]``/``[H, W]`` array) resized, centre-cropped and
        normalised as ``self.preprocess`` says (needs Pillow)."""
        spec = self.preprocess
        if spec is None:
            raise ValueError(
                f"{self.name} has no known ImageNet preprocessing; call predict() on a "
                "preprocessed NCHW batch instead"
            )
        items = _as_list(images)
        if not items:
            raise ValueError("no images given")
        return np.stack([preprocess_image(im, spec) for im in items])

    def classify(
        self,
        images: Union[ImageLike, Sequence[ImageLike]],
        top: int = 5,
        threads: Optional[int] = None,
    ) -> List[List[dict]]:
        """Top-``top`` ImageNet classes of each image (paths, PIL images or uint8 arrays):
        one list per image of ``{"index", "label", "probability"}`` dicts, most probable
        first (softmax over the logits, in float64).

        >>> import dsconv
        >>> net = dsconv.load("efficientnet-lite0", weights="efficientnet-lite0-57934424.pth")
        >>> net.classify("chelsea.png", top=1)[0][0]["label"]    # doctest: +SKIP
        'tabby, tabby cat'
        """
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        logits = self.predict(self.preprocess_images(images), threads).astype(np.float64)
        return top_classes(logits, top)

    def cost(self, batch: int = 1, resolution: Optional[int] = None) -> dict:
        """The per-layer cost table for ``batch`` images of ``resolution``² pixels."""
        return self._net.cost(batch, resolution)

    def __repr__(self) -> str:
        return f"dsconv.Model({self.name!r}, width={self.width}, resolution={self.resolution})"


class OnnxModel:
    """An ONNX model (``dsconv.load("model.onnx")``): ``run`` (every output), ``predict``
    (the first output of a one-input model), ``classify`` with preprocessing given as
    arguments, ``cost`` tables. Immutable and safe to share between threads; every call
    releases the GIL; plans are cached per input shape.

    >>> import numpy as np, dsconv                                # doctest: +SKIP
    >>> m = dsconv.load("mobilenet_v3_small.onnx")                # doctest: +SKIP
    >>> m.predict(np.zeros((1, 3, 224, 224), np.float32)).shape   # doctest: +SKIP
    (1, 1000)
    """

    def __init__(self, model: "_dsconv.OnnxModel") -> None:
        self._m = model

    @property
    def path(self) -> str:
        """The file it was read from."""
        return self._m.path

    @property
    def inputs(self) -> list:
        """``[(name, dims or None)]``; a free dimension is None."""
        return self._m.inputs

    @property
    def outputs(self) -> List[str]:
        """The graph outputs' names."""
        return self._m.outputs

    def run(self, inputs: Any, threads: Optional[int] = None) -> List[np.ndarray]:
        """Every output (float32 arrays, in the graph's order) for ``inputs``: one NCHW
        array per graph input (a list, or one array for a one-input model)."""
        return self._m.run(inputs, threads)

    def predict(self, batch: Any, threads: Optional[int] = None) -> np.ndarray:
        """The first output (a classifier's logits) for one NCHW float32 batch."""
        return self._m.predict(batch, threads)

    __call__ = predict

    def classify(
        self,
        images: Union[ImageLike, Sequence[ImageLike]],
        top: int = 5,
        *,
        resize: Union[int, Sequence[int], None],
        crop: Union[int, Sequence[int], None],
        mean: Sequence[float],
        std: Sequence[float],
        resampling: str = "bilinear",
        threads: Optional[int] = None,
    ) -> List[List[dict]]:
        """Top-``top`` classes of each image, preprocessed as the arguments say (an ONNX
        file carries no preprocessing): ``resize`` the shorter side (int) or to
        ``(height, width)`` or not at all (None), centre ``crop`` (int, pair or None),
        ``mean``/``std`` per RGB channel after scaling to [0, 1]. Labels are ImageNet's
        when the model has 1000 classes, else the class index."""
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        if resampling not in ("bilinear", "bicubic"):
            raise ValueError(f"resampling must be 'bilinear' or 'bicubic', not {resampling!r}")
        if isinstance(crop, int):
            crop = (crop, crop)
        mean, std = [float(v) for v in mean], [float(v) for v in std]
        if len(mean) != 3 or len(std) != 3 or any(v == 0 for v in std):
            raise ValueError("mean and std need 3 values each, std non-zero")
        spec = {"resize": resize, "crop": crop, "resampling": resampling, "mean": mean, "std": std}
        items = _as_list(images)
        if not items:
            raise ValueError("no images given")
        batch = np.stack([preprocess_image(im, spec) for im in items])
        logits = np.asarray(self.predict(batch, threads), np.float64).reshape(len(items), -1)
        return top_classes(logits, top)

    def cost(self, shape: Sequence[int]) -> dict:
        """The per-layer cost table for one input of ``shape``, e.g. ``(1, 3, 224, 224)``."""
        return self._m.cost(list(shape))

    def __repr__(self) -> str:
        return f"dsconv.OnnxModel({self.path!r})"


def top_classes(logits: np.ndarray, top: int) -> List[List[dict]]:
    """Softmax (float64) and the ``top`` best classes of each row of ``logits``."""
    labels = _labels()
    out = []
    for row in np.asarray(logits, np.float64):
        p = np.exp(row - row.max())
        p /= p.sum()
        # Stable: ties keep the lower index first.
        order = np.argsort(-p, kind="stable")[: min(top, len(p))]
        out.append(
            [
                {
                    "index": int(i),
                    "label": labels[i] if len(p) == len(labels) else str(int(i)),
                    "probability": float(p[i]),
                }
                for i in order
            ]
        )
    return out


_LABELS: Optional[List[str]] = None


def _labels() -> List[str]:
    global _LABELS
    if _LABELS is None:
        _LABELS = _dsconv.imagenet_classes()
    return _LABELS


def _as_list(images: Any) -> list:
    if isinstance(images, (str, bytes, os.PathLike)) or isinstance(images, np.ndarray):
        return [images]
    try:
        from PIL import Image

        if isinstance(images, Image.Image):
            return [images]
    except ImportError:
        pass
    return list(images)


def _pillow():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "classify() needs Pillow to decode and resize images: pip install pillow"
        ) from e
    return Image


def preprocess_image(image: ImageLike, spec: Mapping[str, Any]) -> np.ndarray:
    """One image as a ``[3, crop, crop]`` float32 array, torchvision style:
    ``Resize(resize)`` of the shorter side (the longer side ``floor(resize·long/short)``)
    or to ``(height, width)``, ``CenterCrop(crop)`` (offsets rounded half to even),
    ``ToTensor`` (÷255) and ``Normalize(mean, std)`` in float32. Pillow decodes the image;
    the rest is the Rust library's ``dsconv::preprocess`` (Pillow's resampling filters
    ported byte for byte), what ``dsconv classify`` runs: the same array, bit for bit.
    """
    Image = _pillow()
    if isinstance(image, (str, bytes, os.PathLike)):
        with Image.open(image) as f:
            img = f.convert("RGB")
    elif isinstance(image, Image.Image):
        img = image.convert("RGB")
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (3, 4)
        ):
            raise TypeError(
                "an image array must be uint8 [H, W, 3] (RGB), [H, W, 4] or [H, W], got "
                f"{image.dtype} {image.shape}; pass preprocessed float batches to predict()"
            )
        img = Image.fromarray(image).convert("RGB")
    else:
        raise TypeError(
            f"an image must be a path, a PIL image or a uint8 array, not {type(image).__name__}"
        )
    resize, crop = spec["resize"], spec["crop"]
    return _dsconv._preprocess(
        np.asarray(img, dtype=np.uint8),
        None if resize is None else (tuple(resize) if isinstance(resize, (tuple, list)) else resize),
        None if crop is None else tuple(int(v) for v in crop),
        spec["resampling"],
        [float(v) for v in spec["mean"]],
        [float(v) for v in spec["std"]],
    )


def load(
    name: Union[str, "os.PathLike[str]"],
    weights: Union[None, str, "os.PathLike[str]", Mapping[str, Any]] = None,
    *,
    width: float = 1.0,
    seed: int = 0,
    resolution: Optional[int] = None,
    threads: Optional[int] = None,
) -> Union[Model, "OnnxModel"]:
    """A network by name: ``dsconv.models()`` lists them (aliases and any letter case
    work). ``weights``: a checkpoint path (PyTorch ``.pth``/``.pt``, zip or legacy, or
    ``.safetensors``, in the names ``dsconv.model_info(name)["checkpoint_names"]`` says),
    a mapping of names to arrays (a ``state_dict``, e.g.
    ``{k: v.numpy() for k, v in module.state_dict().items()}``), or None for seeded random
    weights (``seed``). ``width``: α of the MobileNets; ``resolution``: the input size
    MobileNetV1 is built for (the others take any); ``threads``: the object's default
    thread count.

    A path ending in ``.onnx`` is an ONNX model (``crates/dsconv-onnx``: torchvision and
    PP-OCR style separable networks): an :class:`OnnxModel`, planned for each input shape
    it is run on.

    >>> import dsconv
    >>> net = dsconv.load("mobilenet-v1", width=0.25, seed=1)
    >>> net.cost()["total"]["macs"]
    41121616
    """
    if isinstance(name, (str, os.PathLike)) and str(os.fspath(name)).lower().endswith(".onnx"):
        if weights is not None:
            raise ValueError(f"{os.fspath(name)}: a .onnx model holds its weights; leave weights out")
        return OnnxModel(_dsconv._load_onnx(os.fspath(name), threads))
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name or an .onnx path, not {type(name).__name__}")
    net = _dsconv._load(name, weights, width, seed, resolution, threads)
    return Model(net)


def _names(xs: Iterable[str]) -> str:  # pragma: no cover - helper for messages
    return ", ".join(xs)
