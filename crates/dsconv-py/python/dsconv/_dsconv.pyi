"""Type stubs of the compiled module dsconv._dsconv (the Rust half of the package)."""

from os import PathLike
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
IntOrPair = Union[int, Tuple[int, int], Sequence[int]]
Padding = Union[int, Tuple[int, int], Tuple[int, int, int, int], Sequence[int], str]
Activation = Union[None, str, Tuple[float, float]]
Shape4 = Union[Tuple[int, int, int, int], Sequence[int]]
F32Array = npt.NDArray[np.float32]

__version__: str

def conv2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "nchw",
    threads: Optional[int] = None,
) -> F32Array: ...
def conv2d_input(
    input_size: Shape4,
    weight: ArrayLike,
    grad_output: ArrayLike,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "nchw",
    threads: Optional[int] = None,
) -> F32Array: ...
def conv2d_weight(
    input: ArrayLike,
    weight_size: Shape4,
    grad_output: ArrayLike,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "nchw",
    threads: Optional[int] = None,
) -> F32Array: ...
def conv2d_bias(grad_output: ArrayLike, layout: str = "nchw") -> F32Array: ...
def cost(
    input_shape: Shape4,
    out_channels: int,
    kernel_size: IntOrPair = 3,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    bias: bool = False,
    layout: str = "nchw",
) -> Dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def models() -> List[str]: ...
def model_info(name: str) -> Dict[str, Any]: ...
def model_cost(
    name: str,
    width: float = 1.0,
    resolution: Optional[int] = None,
    batch: int = 1,
    as_standard: bool = False,
) -> Dict[str, Any]: ...
def imagenet_classes() -> List[str]: ...
def _preprocess(
    image: npt.NDArray[np.uint8],
    resize: Union[None, int, Tuple[int, int]],
    crop: Optional[Tuple[int, int]],
    resampling: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> F32Array: ...
def _load(
    name: str,
    weights: Union[None, str, PathLike, Mapping[str, ArrayLike]] = None,
    width: float = 1.0,
    seed: int = 0,
    resolution: Optional[int] = None,
    threads: Optional[int] = None,
) -> Network: ...

class Network:
    name: str
    width: float
    resolution: int
    preprocess: Optional[Dict[str, Any]]
    threads: Optional[int]
    def predict(self, batch: ArrayLike, threads: Optional[int] = None) -> F32Array: ...
    def cost(self, batch: int = 1, resolution: Optional[int] = None) -> Dict[str, Any]: ...

def _load_onnx(path: Union[str, PathLike], threads: Optional[int] = None) -> OnnxModel: ...

class OnnxModel:
    path: str
    inputs: List[Any]
    outputs: List[str]
    def run(self, inputs: Any, threads: Optional[int] = None) -> List[F32Array]: ...
    def predict(self, batch: ArrayLike, threads: Optional[int] = None) -> F32Array: ...
    def cost(self, shape: List[int]) -> Dict[str, Any]: ...

# The layer classes share these methods; `_Layer` and `_Conv` exist in the stubs only (the
# compiled classes have no common base).
class _Layer:
    layout: str
    def forward(self, input: ArrayLike, threads: Optional[int] = None) -> F32Array: ...
    def __call__(self, input: ArrayLike, threads: Optional[int] = None) -> F32Array: ...
    def cost(self, input_shape: Shape4) -> Dict[str, Any]: ...

class _Conv(_Layer):
    weight: F32Array
    bias: Optional[F32Array]

class Conv2d(_Conv):
    in_channels: int
    out_channels: int
    def __init__(
        self,
        weight: ArrayLike,
        bias: Optional[ArrayLike] = None,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_state_dict(
        state_dict: Mapping[str, ArrayLike],
        prefix: str = "",
        *,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> Conv2d: ...

class DepthwiseConv2d(_Conv):
    channels: int
    multiplier: int
    def __init__(
        self,
        weight: ArrayLike,
        bias: Optional[ArrayLike] = None,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        padding_mode: str = "zeros",
        multiplier: int = 1,
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_state_dict(
        state_dict: Mapping[str, ArrayLike],
        prefix: str = "",
        *,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        padding_mode: str = "zeros",
        multiplier: int = 1,
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> DepthwiseConv2d: ...

class PointwiseConv2d(_Conv):
    in_channels: int
    out_channels: int
    def __init__(
        self,
        weight: ArrayLike,
        bias: Optional[ArrayLike] = None,
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_state_dict(
        state_dict: Mapping[str, ArrayLike],
        prefix: str = "",
        *,
        activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> PointwiseConv2d: ...

class DepthwiseSeparableConv2d(_Layer):
    depthwise: DepthwiseConv2d
    pointwise: PointwiseConv2d
    def __init__(
        self,
        depthwise_weight: ArrayLike,
        pointwise_weight: ArrayLike,
        depthwise_bias: Optional[ArrayLike] = None,
        pointwise_bias: Optional[ArrayLike] = None,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        padding_mode: str = "zeros",
        multiplier: int = 1,
        depthwise_activation: Activation = None,
        pointwise_activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_state_dict(
        state_dict: Mapping[str, ArrayLike],
        prefix: str = "",
        *,
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        padding_mode: str = "zeros",
        multiplier: int = 1,
        depthwise_activation: Activation = None,
        pointwise_activation: Activation = None,
        layout: str = "nchw",
        threads: Optional[int] = None,
    ) -> DepthwiseSeparableConv2d: ...
    @staticmethod
    def from_layers(
        depthwise: DepthwiseConv2d,
        pointwise: PointwiseConv2d,
        layout: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> DepthwiseSeparableConv2d: ...

def trainable_models() -> List[str]: ...
def trainable_model(name: str) -> str: ...

class Dataset:
    image_shape: Tuple[int, int, int]
    classes: int
    labels: npt.NDArray[np.int64]
    images: F32Array
    def __init__(
        self, images: ArrayLike, labels: ArrayLike, classes: Optional[int] = None
    ) -> None: ...
    @staticmethod
    def digits(split: str = "train") -> Dataset: ...
    @staticmethod
    def from_npy(
        images_path: Union[str, PathLike], labels_path: Union[str, PathLike],
        classes: Optional[int] = None,
    ) -> Dataset: ...
    def split(self, test_fraction: float, seed: int = 0) -> Tuple[Dataset, Dataset]: ...
    def __len__(self) -> int: ...

class _Trainable:
    name: str
    def __init__(
        self,
        name: str,
        input_shape: Tuple[int, int, int],
        classes: int,
        widths: Optional[Sequence[int]] = None,
        kernel: int = 3,
        dropout: float = 0.0,
        seed: int = 0,
        weights: Union[None, str, PathLike, Mapping[str, ArrayLike]] = None,
        threads: Optional[int] = None,
        width_mult: float = 1.0,
        drop_path: float = 0.0,
        fine_tune: bool = False,
    ) -> None: ...
    def fit(self, data: Dataset, val: Optional[Dataset] = None, *args: Any) -> Tuple[List[Dict[str, Any]], int, float]: ...
    def predict(self, images: ArrayLike, batch: int = 256, threads: Optional[int] = None) -> F32Array: ...
    def evaluate(self, data: Dataset, batch: int = 256, threads: Optional[int] = None) -> Dict[str, Any]: ...
    def state_dict(self) -> Dict[str, np.ndarray]: ...
    def load_state_dict(self, state_dict: Union[str, Mapping[str, ArrayLike]]) -> None: ...
    def save(self, path: str, optimizer: bool = False) -> List[str]: ...
    def info(self) -> Dict[str, Any]: ...
