"""sensor_msgs images <-> numpy arrays, with numpy and PIL only (no cv_bridge needed).

Every failure raises ImageConversionError with what was expected and what was given,
so the node can turn it into a failed response or a log line and keep serving.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# Channels per supported 8-bit encoding, and where red, green, blue sit in a pixel.
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_RGB_ORDER = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)

# Larger than any camera we expect; guards against a corrupt header asking for GBs.
MAX_SIDE = 16384
MAX_PIXELS = 8192 * 8192


class ImageConversionError(ValueError):
    """An image message that cannot be read as the expected picture."""


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"empty image: {width}x{height} (width x height)")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageConversionError(
            f"image too large: {width}x{height}; at most {MAX_SIDE} per side and "
            f"{MAX_PIXELS} pixels")


def _pixels(msg: Image, encodings: tuple[str, ...]) -> np.ndarray:
    """The message's pixels as an (H, W, C) uint8 view, after checking every field."""
    if msg.encoding not in encodings:
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r}; expected one of {list(encodings)}")
    _check_size(msg.width, msg.height)
    channels = _CHANNELS[msg.encoding]
    row_bytes = msg.width * channels
    if msg.step < row_bytes:
        raise ImageConversionError(
            f"step {msg.step} is shorter than a {msg.encoding} row of width {msg.width} "
            f"({row_bytes} bytes)")
    expected = msg.step * msg.height
    if len(msg.data) != expected:
        raise ImageConversionError(
            f"data has {len(msg.data)} bytes; expected step * height = "
            f"{msg.step} * {msg.height} = {expected}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, :row_bytes].reshape(msg.height, msg.width, channels)  # (H, W, C)


def image_to_rgb(msg: Image) -> np.ndarray:
    """A camera image (rgb8, bgr8, rgba8, bgra8 or mono8) as a new (H, W, 3) uint8 RGB array."""
    pixels = _pixels(msg, SUPPORTED_ENCODINGS)
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)  # (H, W, 3)
    return np.ascontiguousarray(pixels[:, :, _RGB_ORDER[msg.encoding]])  # (H, W, 3)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A CompressedImage (JPEG, PNG, anything PIL reads) as an (H, W, 3) uint8 RGB array."""
    if len(msg.data) == 0:
        raise ImageConversionError("empty compressed image: no data")
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as picture:
            _check_size(*picture.size)
            rgb = np.asarray(picture.convert("RGB"))  # (H, W, 3)
    except (OSError, PILImage.DecompressionBombError) as error:
        raise ImageConversionError(
            f"cannot decode compressed image (format {msg.format!r}): {error}") from error
    return rgb


def image_to_mask(msg: Image) -> np.ndarray:
    """A mono8 prompt mask as an (H, W) bool array (nonzero = object)."""
    return _pixels(msg, ("mono8",))[:, :, 0] != 0  # (H, W)


def array_to_image(array: np.ndarray, *, encoding: str, header: Header) -> Image:
    """An (H, W) or (H, W, C) array as an Image with a tight step.

    Supports rgb8 (H, W, 3 uint8), mono8 (H, W uint8), mono16 and 16UC1 (H, W uint16) and
    32FC1 (H, W float32), little endian.
    """
    expected = {"rgb8": (3, np.uint8), "mono8": (2, np.uint8), "mono16": (2, np.uint16),
                "16UC1": (2, np.uint16), "32FC1": (2, np.float32)}
    if encoding not in expected:
        raise ImageConversionError(
            f"cannot publish encoding {encoding!r}; expected one of {list(expected)}")
    ndim, dtype = expected[encoding]
    if array.ndim != ndim or array.dtype != dtype or (ndim == 3 and array.shape[2] != 3):
        raise ImageConversionError(
            f"{encoding} needs a {'(H, W, 3)' if ndim == 3 else '(H, W)'} {np.dtype(dtype)} "
            f"array; given {array.shape} {array.dtype}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0)
    msg.step = width * array.itemsize * (3 if ndim == 3 else 1)
    msg.data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return msg


def mask_to_image(mask: np.ndarray, *, header: Header) -> Image:
    """An (H, W) bool mask as a mono8 Image: 255 = object, 0 = background."""
    return array_to_image(mask.astype(np.uint8) * 255, encoding="mono8", header=header)


# Depth images as drivers publish them: sample type per encoding.
_DEPTH_DTYPES = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}


def depth_image_to_array(msg: Image) -> np.ndarray:
    """A 16UC1 (or mono16; millimetres) or 32FC1 (metres) depth image as an (H, W) array of
    uint16 or float32, native byte order; a view of the message's data when possible."""
    if msg.encoding not in _DEPTH_DTYPES:
        raise ImageConversionError(f"unsupported depth encoding {msg.encoding!r}; expected one "
                                   f"of {list(_DEPTH_DTYPES)}")
    _check_size(msg.width, msg.height)
    dtype = np.dtype(_DEPTH_DTYPES[msg.encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * dtype.itemsize
    if msg.step < row_bytes or msg.step % dtype.itemsize:
        raise ImageConversionError(
            f"step {msg.step} does not hold a {msg.encoding} row of width {msg.width} "
            f"({row_bytes} bytes, a multiple of {dtype.itemsize})")
    expected = msg.step * msg.height
    if len(msg.data) != expected:
        raise ImageConversionError(f"data has {len(msg.data)} bytes; expected step * height = "
                                   f"{msg.step} * {msg.height} = {expected}")
    rows = np.frombuffer(msg.data, dtype=dtype).reshape(msg.height, msg.step // dtype.itemsize)
    return rows[:, :msg.width].astype(dtype.newbyteorder("="), copy=False)  # (H, W)
