"""Draw datasets/samples/faces.png: synthetic talking faces over time, each frame with its edge map.

Run from the repository root:  python datasets/samples/faces_sheet.py
Per identity, the top row shows every 6th frame of a video and the row below the structure's edge
map (channel 0 of face16, Canny edges of the frame included) with the 68 landmarks as dots
(red: jaw, yellow: brows, green: nose, cyan: eyes, magenta: lips).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.data.face_structure import face_structure
from bench.data.faces import FaceGeneratorParams, render_video

RESOLUTION = 128
IDENTITIES = (0, 3, 4, 5, 14)
FRAME_STEP = 6
FRAMES = 6
PART_COLOURS = ((17, (255, 60, 60)), (27, (255, 220, 0)), (36, (60, 220, 60)), (48, (0, 220, 255)), (68, (255, 0, 255)))


def edge_panel(frame: np.ndarray, landmarks: np.ndarray) -> Image.Image:
    edges = face_structure(landmarks, RESOLUTION, RESOLUTION, frame, mode="edges")[0].numpy()
    panel = Image.fromarray((edges * 200).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(panel)
    for index, (x, y) in enumerate(landmarks.tolist()):
        colour = next(c for end, c in PART_COLOURS if index < end)
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=colour)
    return panel


def main() -> None:
    params = FaceGeneratorParams((RESOLUTION, RESOLUTION), max(IDENTITIES) + 1, 0, FRAME_STEP * FRAMES, 0)
    sheet = Image.new("RGB", (FRAMES * RESOLUTION, 2 * len(IDENTITIES) * RESOLUTION), "white")
    for row, video in enumerate(IDENTITIES):
        frames = list(render_video(params, "train", video))[::FRAME_STEP]
        for column, (frame, landmarks) in enumerate(frames):
            x, y = column * RESOLUTION, 2 * row * RESOLUTION
            sheet.paste(Image.fromarray(frame), (x, y))
            sheet.paste(edge_panel(frame, landmarks), (x, y + RESOLUTION))
    out = Path(__file__).with_name("faces.png")
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
