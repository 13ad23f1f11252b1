"""Training from Python: ``dsconv.train(...)`` and ``TrainableModel.fit(...)`` on the
library's training loop (the one ``dsconv train`` runs: same seed and options, same
weights, bit for bit)."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _dsconv
from ._dsconv import Dataset

PathLike = Union[str, "os.PathLike[str]"]
#: What ``data=`` / ``val=`` accept (see :func:`as_dataset`).
DataLike = Union[Dataset, Tuple[Any, Any], PathLike]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class History:
    """What a ``fit`` did: one dict per epoch (``epoch``, ``steps``, ``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy``, ``images_per_s``, ``seconds``, ``lr``),
    the optimizer steps taken and the wall time. ``history["val_accuracy"]`` is that
    column as a list (Keras's ``history.history[key]``).

    >>> import dsconv
    >>> net = dsconv.train("ds-cnn", data="digits", val="digits-test", steps=3,
    ...                    widths=(8, 16))
    >>> h = net.history
    >>> len(h.epochs), h.steps, len(h["val_accuracy"])
    (1, 3, 1)
    """

    def __init__(self, epochs: List[dict], steps: int, seconds: float) -> None:
        self.epochs = epochs
        self.steps = steps
        self.seconds = seconds

    def __getitem__(self, key: str) -> list:
        return [e[key] for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def loss(self) -> List[float]:
        """Mean training loss per epoch."""
        return self["loss"]

    @property
    def accuracy(self) -> List[float]:
        """Training accuracy per epoch."""
        return self["accuracy"]

    @property
    def val_loss(self) -> List[Optional[float]]:
        """Validation loss per epoch (None without ``val``)."""
        return self["val_loss"]

    @property
    def val_accuracy(self) -> List[Optional[float]]:
        """Validation accuracy per epoch (None without ``val``)."""
        return self["val_accuracy"]

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return (
            f"dsconv.History({len(self.epochs)} epoch(s), {self.steps} steps, "
            f"loss {last.get('loss')}, val_accuracy {last.get('val_accuracy')})"
        )


def image_folder(root: PathLike, classes: Optional[int] = None) -> Tuple[Dataset, List[str]]:
    """torchvision's ImageFolder as ``dsconv train`` reads it: one subfolder of PNG/JPEG
    images per class (classes sorted by name), decoded to RGB by Pillow and scaled to
    [0, 1]; every image must have the first one's size. Returns the data set and the class
    names."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading an image folder needs Pillow: pip install pillow") from e
    root = os.fspath(root)
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not names:
        raise ValueError(
            f"{root}: no class subfolders (expected one folder of images per class)"
        )
    images, labels, size = [], [], None
    for label, name in enumerate(names):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if not file.lower().endswith(_IMAGE_EXTENSIONS):
                continue
            path = os.path.join(folder, file)
            try:
                with Image.open(path) as f:
                    img = f.convert("RGB")
            except Exception as e:  # Pillow raises several kinds for a corrupt file
                raise ValueError(f"{path}: cannot decode image: {e}") from e
            if size is None:
                size = img.size
            elif img.size != size:
                raise ValueError(
                    f"{path}: {img.size[0]}x{img.size[1]} pixels, but the first image is "
                    f"{size[0]}x{size[1]} (all images must have one size)"
                )
            images.append(np.asarray(img, np.uint8).transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise ValueError(f"{root}: no PNG or JPEG images in its class subfolders")
    k = len(names) if classes is None else classes
    return Dataset(np.stack(images), np.asarray(labels, np.int64), k), names


def as_dataset(
    data: DataLike, classes: Optional[int] = None
) -> Tuple[Dataset, bool, Optional[List[str]]]:
    """``data`` as a :class:`Dataset`, whether it is a folder of photos (augmented with
    flips by default) and its class names when it has them. ``data`` is a ``Dataset``;
    ``(images, labels)`` arrays (images ``[N, C, H, W]`` float32 or uint8, labels int64 or
    int32); ``"digits"`` / ``"digits-test"`` (the embedded UCI digits' 80/20 split); a pair
    of ``.npy`` paths (or ``"X.npy,Y.npy"``); or a folder of class subfolders of images."""
    if isinstance(data, Dataset):
        return data, False, None
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be (images, labels), got {len(data)} items")
        x, y = data
        if isinstance(x, (str, os.PathLike)) and isinstance(y, (str, os.PathLike)):
            return Dataset.from_npy(os.fspath(x), os.fspath(y), classes), False, None
        return Dataset(x, y, classes), False, None
    if isinstance(data, (str, os.PathLike)):
        spec = os.fspath(data)
        if spec in ("digits", "digits-test"):
            d = Dataset.digits("train" if spec == "digits" else "test")
            return d, False, None
        if os.path.isdir(spec):
            d, names = image_folder(spec, classes)
            return d, True, names
        if "," in spec:
            x, y = spec.split(",", 1)
            return Dataset.from_npy(x.strip(), y.strip(), classes), False, None
        raise ValueError(
            f"data '{spec}': not digits, digits-test, a folder, nor X.npy,Y.npy"
        )
    raise TypeError(
        "data must be a dsconv.Dataset, (images, labels) arrays, 'digits', a folder or "
        f"a pair of .npy paths, not {type(data).__name__}"
    )


class TrainableModel:
    """A trainable classifier of ``dsconv.trainable_models()`` (``ds-cnn``, ``std-cnn``,
    ...), PyTorch-named parameters, trained by the library's loop with the GIL released.

    The network is built for its data: give ``input_shape=(C, H, W)`` and ``classes`` to
    build it now, or leave them out and the first ``fit`` builds it for its data.
    ``weights`` (a checkpoint path or a mapping of arrays) starts from trained weights
    (their widths, kernel and class count win); with ``fine_tune=True`` the network keeps
    ``classes`` (or its data's class count) and gets a fresh classifier where the
    checkpoint's has another class count, as ``dsconv train --init CKPT --classes N``.
    ``width_mult`` is MobileNetV1/V2's width multiplier α, ``drop_path`` EfficientNet-Lite0's
    stochastic depth. ``seed`` draws the initial weights and is ``fit``'s default seed.

    >>> import dsconv
    >>> net = dsconv.TrainableModel("ds-cnn", widths=(8, 16), seed=1)
    >>> history = net.fit("digits", val="digits-test", epochs=1, lr=3e-3)
    >>> net.predict(dsconv.Dataset.digits("test").images[:2]).shape
    (2, 10)
    >>> sorted(net.evaluate("digits-test"))[:2]
    ['accuracy', 'correct']
    """

    def __init__(
        self,
        model: str = "ds-cnn",
        *,
        input_shape: Optional[Sequence[int]] = None,
        classes: Optional[int] = None,
        widths: Optional[Sequence[int]] = None,
        kernel: int = 3,
        dropout: float = 0.0,
        seed: int = 0,
        weights: Union[None, PathLike, Mapping[str, Any]] = None,
        threads: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        width_mult: float = 1.0,
        drop_path: float = 0.0,
        fine_tune: bool = False,
    ) -> None:
        model = _dsconv.trainable_model(model)  # the canonical name, or ValueError
        if fine_tune and weights is None:
            raise ValueError("fine_tune=True needs weights= (the checkpoint to start from)")
        self._name = model
        self._options = dict(
            widths=None if widths is None else [int(w) for w in widths],
            kernel=kernel,
            dropout=dropout,
            seed=seed,
            weights=None if weights is None else _weights_arg(weights),
            threads=threads,
            width_mult=float(width_mult),
            drop_path=float(drop_path),
            fine_tune=bool(fine_tune),
        )
        self.seed = seed
        self.class_names: Optional[List[str]] = (
            None if class_names is None else [str(c) for c in class_names]
        )
        #: The last ``fit``'s :class:`History` (None before the first).
        self.history: Optional[History] = None
        self._t: Optional[_dsconv._Trainable] = None
        if input_shape is not None or classes is not None:
            if input_shape is None or classes is None:
                raise ValueError("give both input_shape=(C, H, W) and classes, or neither")
            self._build(tuple(int(v) for v in input_shape), int(classes))

    def _build(self, input_shape: Tuple[int, ...], classes: int) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
        o = self._options
        self._t = _dsconv._Trainable(
            self._name,
            input_shape,
            classes,
            o["widths"],
            o["kernel"],
            o["dropout"],
            o["seed"],
            o["weights"],
            o["threads"],
            o["width_mult"],
            o["drop_path"],
            o["fine_tune"],
        )

    def _trained(self) -> "_dsconv._Trainable":
        if self._t is None:
            raise RuntimeError(
                "the model is not built yet: fit it, or give input_shape and classes"
            )
        return self._t

    @classmethod
    def load(
        cls,
        weights: Union[PathLike, Mapping[str, Any]],
        model: str = "ds-cnn",
        *,
        input_shape: Sequence[int],
        threads: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
    ) -> "TrainableModel":
        """A trained model from a checkpoint (``dsconv train --out``, ``save``, or a
        PyTorch state_dict of the same names) for images of ``input_shape`` ``(C, H, W)``:
        widths, kernel and class count come from the checkpoint."""
        net = cls(model, weights=weights, threads=threads, class_names=class_names)
        net._build(tuple(int(v) for v in input_shape), 2)
        return net

    @property
    def built(self) -> bool:
        """Whether the network exists (after ``fit`` or with ``input_shape``/``classes``)."""
        return self._t is not None

    @property
    def name(self) -> str:
        """The architecture, e.g. ``"ds-cnn"``."""
        return self._trained().name if self._t is not None else self._name

    def info(self) -> dict:
        """``in_channels``, ``height``, ``width``, ``classes``, ``widths``, ``kernel``,
        ``dropout``, ``parameters``, ``macs_per_image``, ``optimizer_steps``."""
        return self._trained().info()

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` it is built for."""
        i = self.info()
        return (i["in_channels"], i["height"], i["width"])

    @property
    def classes(self) -> int:
        """The class count."""
        return self.info()["classes"]

    def fit(
        self,
        data: DataLike,
        val: Optional[DataLike] = None,
        *,
        epochs: Optional[int] = None,
        steps: Optional[int] = None,
        batch: int = 32,
        optimizer: str = "adamw",
        lr: Optional[float] = None,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: Optional[float] = None,
        decay_norm_bias: bool = True,
        schedule: str = "constant",
        warmup: int = 0,
        label_smoothing: float = 0.0,
        shuffle: bool = True,
        augment: Optional[bool] = None,
        seed: Optional[int] = None,
        threads: Optional[int] = None,
        callback: Optional[Callable[[dict], Any]] = None,
        out: Optional[PathLike] = None,
        resume: Union[bool, PathLike] = False,
    ) -> History:
        """Trains on ``data`` (see :func:`as_dataset`: a ``Dataset``, ``(images,
        labels)``, ``"digits"``, a folder, ``.npy`` paths) for ``epochs`` (default 10) or
        ``steps`` optimizer steps, evaluating ``val`` after every epoch. Returns the
        :class:`History` (also kept as ``self.history``).

        The options are ``dsconv train``'s: ``optimizer`` "adamw" (``lr`` 1e-3,
        ``weight_decay`` 1e-2 by default) or "sgd" (``lr`` 0.1, ``momentum``,
        ``dampening``, ``nesterov``, ``weight_decay`` 0); ``decay_norm_bias=False`` exempts
        BatchNorm and bias parameters from decay; ``schedule`` "constant", "cosine" or
        "step:EPOCHS:GAMMA" after ``warmup`` linear steps; ``label_smoothing``;
        ``shuffle`` (seeded per epoch); ``augment`` random crops (and flips for image
        folders; default: on for folders only); ``seed`` of shuffling and augmentation
        (default: the model's). A last batch of one image is skipped (BatchNorm).

        ``callback(event)`` is called with the GIL after every step (``event["event"] ==
        "step"``: ``step``, ``steps``, ``epoch``, ``epoch_step``, ``epoch_steps``, ``loss``,
        ``mean_loss``, ``accuracy``, ``lr``, ``images_per_s``) and every epoch
        (``"epoch"``: the history's fields). An exception it raises — or Ctrl-C — stops
        training at once and propagates; the model keeps the steps taken, and no
        checkpoint is written. ``out``: write the checkpoint and the optimizer state
        (``NAME.optim.safetensors``) atomically when training finished.
        ``resume=True`` continues the optimizer state of this model's last ``fit``
        (same optimizer); a checkpoint path loads the state saved beside it.

        Same seed, data and options → the same weights as ``dsconv train``, bit for bit,
        for any ``threads``.
        """
        if self._t is not None:
            classes: Optional[int] = self.classes
        else:
            classes = None
        train_set, folder, names = as_dataset(data, classes)
        if self._t is None:
            self._build(train_set.image_shape, train_set.classes)
            if self.class_names is None and names is not None:
                self.class_names = names
        val_set = None if val is None else as_dataset(val, self.classes)[0]
        aug = folder if augment is None else bool(augment)
        if isinstance(resume, (str, os.PathLike)):
            resume_arg: Any = os.fspath(resume)
        else:
            resume_arg = bool(resume)
        epochs_list, n, seconds = self._trained().fit(
            train_set,
            val_set,
            epochs,
            steps,
            batch,
            optimizer,
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            decay_norm_bias,
            schedule,
            warmup,
            label_smoothing,
            shuffle,
            aug,
            folder,
            self.seed if seed is None else seed,
            threads,
            callback,
            None if out is None else os.fspath(out),
            resume_arg,
        )
        self.history = History(epochs_list, n, seconds)
        return self.history

    def predict(self, images: Any, batch: int = 256, threads: Optional[int] = None) -> np.ndarray:
        """Eval-mode logits ``[N, classes]`` (float32) for images ``[N, C, H, W]``
        (float32, or uint8 scaled by 1/255 as in training)."""
        return self._trained().predict(images, batch, threads)

    __call__ = predict

    def classify(
        self, images: Any, top: int = 1, threads: Optional[int] = None
    ) -> List[List[dict]]:
        """The ``top`` most probable classes of each image: one list per image of
        ``{"index", "label", "probability"}`` dicts (softmax in float64; the label is the
        class name when known — an image folder's subfolder — else the index)."""
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        logits = self.predict(images, threads=threads).astype(np.float64)
        out = []
        for row in logits:
            p = np.exp(row - row.max())
            p /= p.sum()
            order = np.argsort(-p, kind="stable")[: min(top, len(p))]
            out.append(
                [
                    {
                        "index": int(i),
                        "label": self.class_names[i]
                        if self.class_names is not None and i < len(self.class_names)
                        else str(int(i)),
                        "probability": float(p[i]),
                    }
                    for i in order
                ]
            )
        return out

    def evaluate(
        self, data: DataLike, batch: int = 256, threads: Optional[int] = None
    ) -> dict:
        """Eval-mode ``{"loss", "accuracy", "images", "correct", "per_class_accuracy",
        "per_class_count"}`` on ``data`` (any form ``fit`` takes), as ``dsconv eval``."""
        d = as_dataset(data, self.classes)[0]
        return self._trained().evaluate(d, batch, threads)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every parameter, buffer and counter by PyTorch name (float32 arrays;
        ``num_batches_tracked`` int64 scalars): ``torch_model.load_state_dict({k:
        torch.from_numpy(v) for k, v in sd.items()})`` loads it."""
        return self._trained().state_dict()

    def load_state_dict(self, state_dict: Union[PathLike, Mapping[str, Any]]) -> None:
        """Loads weights (a mapping of arrays or a checkpoint path); every missing,
        unexpected or mis-shaped key is reported at once (ValueError) and nothing changes
        then."""
        self._trained().load_state_dict(_weights_arg(state_dict))

    def save(self, path: PathLike, optimizer: bool = False) -> List[str]:
        """Writes the checkpoint (``.safetensors``, PyTorch's names; ``dsconv eval`` and
        ``TrainableModel.load`` read it) atomically; with ``optimizer`` also the last
        fit's optimizer state beside it. Returns the paths written."""
        return [os.fspath(p) for p in self._trained().save(os.fspath(path), optimizer)]

    def __repr__(self) -> str:
        if self._t is None:
            return f"dsconv.TrainableModel({self._name!r}, not built)"
        i = self.info()
        return (
            f"dsconv.TrainableModel({self.name!r}, input_shape="
            f"({i['in_channels']}, {i['height']}, {i['width']}), classes={i['classes']}, "
            f"widths={i['widths']}, parameters={i['parameters']})"
        )


def _weights_arg(w: Any) -> Any:
    if isinstance(w, os.PathLike):
        return os.fspath(w)
    return w


def train(
    model: str = "ds-cnn",
    data: DataLike = "digits",
    val: Optional[DataLike] = None,
    *,
    widths: Optional[Sequence[int]] = None,
    kernel: int = 3,
    dropout: float = 0.0,
    seed: int = 0,
    threads: Optional[int] = None,
    init: Optional[PathLike] = None,
    resume: bool = False,
    width_mult: float = 1.0,
    drop_path: float = 0.0,
    fine_tune: bool = False,
    **options: Any,
) -> TrainableModel:
    """Trains ``model`` (``dsconv.trainable_models()``) on ``data`` as ``dsconv train``
    does, with the same options under the same names, and returns the trained
    :class:`TrainableModel`; its ``history`` holds the per-epoch loss and accuracy.

    ``widths``, ``kernel``, ``dropout``, ``width_mult`` (α of MobileNetV1/V2) and
    ``drop_path`` (EfficientNet-Lite0's stochastic depth) shape the network; ``seed``
    draws its weights and the shuffling, augmentation and dropout; ``init``: start from
    this checkpoint (``resume=True``: and its optimizer state; ``fine_tune=True``: keep the
    data's class count, with a fresh classifier if the checkpoint's differs). Every other keyword is
    :meth:`TrainableModel.fit`'s: ``epochs``, ``steps``, ``batch``, ``optimizer``, ``lr``,
    ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``, ``decay_norm_bias``,
    ``schedule``, ``warmup``, ``label_smoothing``, ``shuffle``, ``augment``,
    ``callback``, ``out`` (the checkpoint and optimizer state, written atomically at the
    end; nothing is written when training fails or the callback raises).

    >>> import dsconv
    >>> net = dsconv.train("ds-cnn", data="digits", val="digits-test", epochs=1,
    ...                    lr=3e-3, widths=(8, 16), seed=0)
    >>> 0.0 <= net.history.val_accuracy[-1] <= 1.0
    True
    """
    if resume and init is None:
        raise ValueError("resume=True needs init= (the checkpoint to resume)")
    net = TrainableModel(
        model,
        widths=widths,
        kernel=kernel,
        dropout=dropout,
        seed=seed,
        weights=init,
        threads=threads,
        width_mult=width_mult,
        drop_path=drop_path,
        fine_tune=fine_tune,
    )
    resume_from = os.fspath(init) if resume and init is not None else False
    net.fit(data, val, seed=seed, threads=threads, resume=resume_from, **options)
    return net
