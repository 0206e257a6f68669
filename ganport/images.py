"""Image grids as PNG, with numpy and Pillow only (the sampling path must not import TensorFlow)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ganport.errors import UsageError
from ganport.files import atomic_path


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels [N, H, W] to float32 [N, H, W, 1] in [-1, 1], the generator's range (the lecture's scaling)."""
    return ((np.asarray(images).astype(np.float32) - 127.5) / 127.5)[..., None]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map generator output in [-1, 1] to uint8 pixels, keeping the shape."""
    return np.clip(np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# Channels a picture can show: gray, RGB, RGBA.
PICTURE_CHANNELS = (1, 3, 4)


def grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 images [N, H, W] or [N, H, W, C] (C 1, 3 or 4: gray, RGB, RGBA) into one uint8 picture, `columns`
    wide (square by default): [rows, cols] for gray, [rows, cols, C] in colour."""
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[-1] not in PICTURE_CHANNELS:
        raise UsageError(
            f"images of {images.shape[-1]} channels cannot be drawn as a picture (gray, RGB or RGBA only); "
            "write .npy instead."
        )
    count, height, width = images.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, *images.shape[3:]), np.uint8
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return canvas


def grid_png(images: np.ndarray, columns: int | None = None, scale: int = 2) -> bytes:
    """uint8 images [N, H, W(, C)] as the bytes of one PNG grid (in colour for RGB), enlarged `scale` times with
    nearest-neighbour pixels."""
    picture = Image.fromarray(grid(images, columns))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    encoded = io.BytesIO()
    picture.save(encoded, format="PNG")
    return encoded.getvalue()


def save_grid(images: np.ndarray, path: str | Path, columns: int | None = None, scale: int = 2) -> Path:
    """Write uint8 images [N, H, W(, C)] as one PNG grid (grid_png)."""
    path = Path(path)
    png = grid_png(images, columns, scale)
    with atomic_path(path) as temporary:
        temporary.write_bytes(png)
    return path
