"""Tests for FFHQ-style face alignment (lsap.align)."""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lsap.align import (
    REPORT_FILENAME,
    DegenerateLandmarksError,
    FaceDetection,
    FaceTooSmallError,
    MTCNNFaceDetector,
    NoFaceFoundError,
    align_face,
    align_folder,
    ffhq_quad,
    five_point_landmarks_from_68,
    main_align,
    select_face,
)
from lsap.align.geometry import _reflect_pad_and_soften
from lsap.data.images import load_rgb, to_rgb8

# Canonical face in "face units": eye midpoint at the origin, eyes level, y pointing down.
# Order: left eye, right eye, nose, left mouth corner, right mouth corner (as in MTCNN).
CANONICAL_FACE = np.array([[-30.0, 0.0], [30.0, 0.0], [0.0, 22.0], [-22.0, 50.0], [22.0, 50.0]])
# A face whose eye-to-mouth distance, not its eye distance, sets the crop size.
LONG_FACE = np.array([[-20.0, 0.0], [20.0, 0.0], [0.0, 30.0], [-15.0, 60.0], [15.0, 60.0]])
DOT_COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], dtype=np.float64
)


def rotation(angle_deg: float) -> np.ndarray:
    angle = np.deg2rad(angle_deg)
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def pose_landmarks(face: np.ndarray, scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """Landmarks in pixel-index coordinates after a similarity transform of ``face``."""
    return face @ rotation(angle_deg).T * scale + np.asarray(centre, dtype=np.float64)


def render_face(
    canvas: tuple[int, int],
    face: np.ndarray,
    scale: float,
    angle_deg: float,
    centre: tuple[float, float],
    dot_radius_px: float,
    textured: bool = False,
    visible: tuple[bool, ...] = (True,) * 5,
) -> Image.Image:
    """Coloured landmark discs (and optionally a smooth asymmetric texture) seen under a pose.

    Each pixel is evaluated in face units, so the whole picture, texture included, moves
    rigidly with the pose.
    """
    width, height = canvas
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    offsets = np.stack([cols - centre[0], rows - centre[1]], axis=-1)
    face_coords = offsets @ rotation(angle_deg) / scale  # inverse similarity
    u, v = face_coords[..., 0], face_coords[..., 1]
    if textured:
        base = 110.0 + 35.0 * np.sin(u / 9.0) * np.cos(v / 13.0) + 20.0 * np.sin((u + 2.0 * v) / 17.0)
        picture = np.stack([base, base * 0.9 + 10.0, base * 0.8 + 20.0], axis=-1)
    else:
        picture = np.full((height, width, 3), 90.0)
    for point, colour, shown in zip(face, DOT_COLOURS, visible):
        if not shown:
            continue
        distance_px = np.hypot(u - point[0], v - point[1]) * scale
        coverage = np.clip(dot_radius_px - distance_px + 0.5, 0.0, 1.0)[..., None]
        picture = picture * (1.0 - coverage) + colour * coverage
    return Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8))


def locate_dots(image: Image.Image, tolerance: float = 60.0) -> np.ndarray:
    """Centroids (x, y in pixel-index coordinates) of the five coloured dots; NaN if absent."""
    pixels = np.asarray(to_rgb8(image), dtype=np.float64)
    rows, cols = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    centroids = np.full((5, 2), np.nan)
    for index, colour in enumerate(DOT_COLOURS):
        mask = np.abs(pixels - colour).max(axis=-1) <= tolerance
        if mask.sum() >= 2:
            centroids[index] = [cols[mask].mean(), rows[mask].mean()]
    return centroids


def expected_aligned_positions(face: np.ndarray, output_size: int) -> np.ndarray:
    """Where FFHQ's crop puts a symmetric face's landmarks, derived independently.

    For a symmetric face the square is axis-aligned in face units: half-side
    s = max(2 * eye distance, 1.8 * eye-to-mouth distance), centred 0.1 of the way from the
    eye midpoint to the mouth midpoint. Output pixel centres sit at index + 0.5.
    """
    eye_mid = (face[0] + face[1]) / 2.0
    mouth_mid = (face[3] + face[4]) / 2.0
    eye_distance = np.linalg.norm(face[1] - face[0])
    eye_mouth_distance = np.linalg.norm(mouth_mid - eye_mid)
    half_side = max(2.0 * eye_distance, 1.8 * eye_mouth_distance)
    centre = eye_mid + 0.1 * (mouth_mid - eye_mid)
    return ((face - centre) / (2.0 * half_side) + 0.5) * output_size - 0.5


# --------------------------------------------------------------------------------------
# Geometry


def test_ffhq_quad_of_a_level_face_is_the_expected_square() -> None:
    quad, quad_size = ffhq_quad(CANONICAL_FACE + [40.0, 60.0])
    # eye distance 60 -> half side 120; centre = eye midpoint + 0.1 * (0, 50) = (40, 65).
    expected = np.array([[-80.0, -55.0], [-80.0, 185.0], [160.0, 185.0], [160.0, -55.0]])
    np.testing.assert_allclose(quad, expected, atol=1e-9)
    assert quad_size == pytest.approx(240.0)

    _, long_size = ffhq_quad(LONG_FACE)
    assert long_size == pytest.approx(2 * 1.8 * 60.0)  # mouth distance dominates


@pytest.mark.parametrize(
    ("face", "scale", "angle", "centre", "canvas", "output_size", "dot_radius", "tolerance"),
    [
        (CANONICAL_FACE, 1.3, 25.0, (260.0, 240.0), (520, 480), 256, 8.0, 0.3),
        (CANONICAL_FACE, 1.0, -140.0, (200.0, 210.0), (400, 420), 128, 8.0, 0.3),
        (LONG_FACE, 1.1, 70.0, (230.0, 220.0), (460, 450), 128, 8.0, 0.3),
        # Large face: exercises the pre-shrink branch (shrink factor 5).
        (CANONICAL_FACE, 4.0, 12.0, (520.0, 500.0), (1040, 1000), 96, 30.0, 0.5),
        # Face near the corner: exercises cropping against the border and mirror padding.
        (CANONICAL_FACE, 1.0, 10.0, (110.0, 95.0), (300, 260), 128, 8.0, 0.3),
    ],
)
def test_landmarks_land_where_ffhq_puts_them(
    face: np.ndarray,
    scale: float,
    angle: float,
    centre: tuple[float, float],
    canvas: tuple[int, int],
    output_size: int,
    dot_radius: float,
    tolerance: float,
) -> None:
    image = render_face(canvas, face, scale, angle, centre, dot_radius)
    landmarks = pose_landmarks(face, scale, angle, centre)
    np.testing.assert_allclose(locate_dots(image), landmarks, atol=0.15)  # renderer sanity

    aligned = align_face(image, landmarks, output_size=output_size)

    assert aligned.size == (output_size, output_size)
    found = locate_dots(aligned)
    expected = expected_aligned_positions(face, output_size)
    np.testing.assert_allclose(found, expected, atol=tolerance)
    # The FFHQ frame: level eyes, symmetric about the vertical centre line.
    assert found[0, 1] == pytest.approx(found[1, 1], abs=tolerance)
    assert (found[0, 0] + found[1, 0]) / 2 == pytest.approx((output_size - 1) / 2, abs=tolerance)


def test_alignment_is_invariant_to_rotation_scale_and_translation_of_the_input() -> None:
    output_size = 128
    poses = [
        (1.0, 0.0, (200.0, 200.0), (400, 400)),
        (1.4, 37.0, (300.0, 300.0), (600, 600)),
        (1.2, 90.0, (260.0, 250.0), (520, 500)),
        (0.8, 180.0, (170.0, 175.0), (340, 350)),
        (1.1, -120.0, (230.0, 240.0), (470, 480)),
    ]
    outputs = []
    for scale, angle, centre, canvas in poses:
        image = render_face(canvas, CANONICAL_FACE, scale, angle, centre, 8.0 * scale, textured=True)
        landmarks = pose_landmarks(CANONICAL_FACE, scale, angle, centre)
        outputs.append(np.asarray(align_face(image, landmarks, output_size=output_size), dtype=np.float64))

    reference = outputs[0]
    assert reference.std() > 20.0  # the texture is visible, so a wrong rotation would show
    for pose, output in zip(poses[1:], outputs[1:]):
        difference = np.abs(output - reference)
        assert difference.mean() < 2.0, (pose, difference.mean())


def test_padding_fills_outside_of_the_photo_with_softened_mirror() -> None:
    scale, angle, centre, canvas = 1.0, 10.0, (110.0, 95.0), (300, 260)
    image = render_face(canvas, CANONICAL_FACE, scale, angle, centre, 8.0)
    landmarks = pose_landmarks(CANONICAL_FACE, scale, angle, centre)

    padded = np.asarray(align_face(image, landmarks, output_size=64, enable_padding=True))
    unpadded = np.asarray(align_face(image, landmarks, output_size=64, enable_padding=False))

    # The crop's top-left corner lies outside the photo: black without padding, photo-like
    # (close to the flat grey background) with it.
    assert unpadded[0, 0].max() == 0
    assert np.abs(padded[0, 0].astype(int) - 90).max() < 25
    # Inside the photo both agree.
    assert np.abs(padded[40, 32].astype(int) - unpadded[40, 32].astype(int)).max() <= 2


def test_padding_is_blurred_and_faded_to_the_median_colour() -> None:
    rows, cols = np.mgrid[0:260, 0:300]
    checker = (((rows // 12) + (cols // 12)) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([checker] * 3, axis=-1))
    landmarks = pose_landmarks(CANONICAL_FACE, 1.0, 10.0, (110.0, 95.0))

    aligned = np.asarray(align_face(image, landmarks, output_size=64), dtype=np.float64)[..., 0]

    inside_photo, in_padding = aligned[28:36, 28:36], aligned[:6, :6]
    assert inside_photo.std() > 80.0  # the checkerboard survives where the photo is
    # A bare mirror would repeat the full-contrast checkerboard here.
    assert in_padding.std() < 40.0
    assert in_padding.mean() == pytest.approx(127.5, abs=20.0)


def _soften_whole_image(photo: np.ndarray, pad: tuple[int, int, int, int], quad_size: float) -> np.ndarray:
    """The padding recipe evaluated naively over every pixel, as a reference."""
    left, top, right, bottom = pad
    padded = np.pad(photo, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(quad_size * 0.02)))
    values = padded.astype(np.float32)
    height, width = values.shape[:2]
    y = np.arange(height, dtype=np.float32)[:, None, None]
    x = np.arange(width, dtype=np.float32)[None, :, None]
    mask = np.maximum(
        1.0 - np.minimum(x / left, (width - 1 - x) / right),
        1.0 - np.minimum(y / top, (height - 1 - y) / bottom),
    )
    values += (blurred - values) * np.clip(3.0 * mask + 1.0, 0.0, 1.0)
    values += (np.median(values, axis=(0, 1)) - values) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "pad", "quad_size"),
    [((50, 70), (10, 3, 25, 7), 40.0), ((120, 90), (40, 40, 40, 40), 130.0), ((12, 300), (150, 1, 2, 200), 500.0)],
)
def test_padding_matches_the_whole_image_recipe(
    shape: tuple[int, int], pad: tuple[int, int, int, int], quad_size: float
) -> None:
    photo = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    softened = np.asarray(_reflect_pad_and_soften(Image.fromarray(photo), pad, quad_size))
    np.testing.assert_array_equal(softened, _soften_whole_image(photo, pad, quad_size))


def test_five_points_from_68_use_eye_centres_and_outer_mouth_corners() -> None:
    landmarks_68 = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = five_point_landmarks_from_68(landmarks_68)
    np.testing.assert_allclose(five[0], landmarks_68[36:42].mean(axis=0))
    np.testing.assert_allclose(five[1], landmarks_68[42:48].mean(axis=0))
    np.testing.assert_allclose(five[3], landmarks_68[48])
    np.testing.assert_allclose(five[4], landmarks_68[54])


@pytest.mark.parametrize(
    "landmarks",
    [
        np.array([[50.0, 50.0], [50.2, 50.1], [52.0, 60.0], [45.0, 80.0], [55.0, 80.0]]),  # eyes coincide
        np.array([[80.0, 50.0], [20.0, 50.0], [50.0, 70.0], [72.0, 100.0], [28.0, 100.0]]),  # mirrored
        np.array([[np.nan, 50.0], [80.0, 50.0], [50.0, 70.0], [28.0, 100.0], [72.0, 100.0]]),
        np.zeros((4, 2)),
    ],
    ids=["coincident-eyes", "mirrored", "nan", "wrong-shape"],
)
def test_degenerate_landmarks_raise_a_typed_error(landmarks: np.ndarray) -> None:
    image = Image.new("RGB", (100, 120), (90, 90, 90))
    with pytest.raises(DegenerateLandmarksError):
        align_face(image, landmarks, output_size=32)


def test_face_far_outside_the_image_is_degenerate() -> None:
    image = Image.new("RGB", (100, 100), (90, 90, 90))
    with pytest.raises(DegenerateLandmarksError):
        align_face(image, CANONICAL_FACE + 5000.0, output_size=32)


# --------------------------------------------------------------------------------------
# Image modes


def _encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "expected_rgb"),
    [
        (Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)), (128, 128, 128)),  # 16-bit
        (Image.new("L", (8, 8), 77), (77, 77, 77)),
        (Image.new("RGBA", (8, 8), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("RGBA", (8, 8), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)), (128, 128, 128)),
    ],
    ids=["uint16", "L", "RGBA-transparent", "RGBA-opaque", "CMYK", "float"],
)
def test_images_of_any_mode_become_rgb(tmp_path: Path, image: Image.Image, expected_rgb: tuple[int, int, int]) -> None:
    converted = to_rgb8(image)
    assert converted.mode == "RGB"
    np.testing.assert_allclose(np.asarray(converted)[0, 0], expected_rgb, atol=1)
    if image.mode in ("I;16", "L", "RGBA"):  # modes PNG stores: also via the file loader
        path = tmp_path / "image.png"
        path.write_bytes(_encode(image))
        np.testing.assert_allclose(np.asarray(load_rgb(path))[0, 0], expected_rgb, atol=1)


# --------------------------------------------------------------------------------------
# Face selection


def _detection(size: float, score: float) -> FaceDetection:
    return FaceDetection(box=(0.0, 0.0, size, size), score=score, landmarks=CANONICAL_FACE.copy())


def test_select_face_by_size_or_confidence_and_min_size() -> None:
    big_unsure, small_sure, tiny_surest = _detection(200, 0.91), _detection(80, 0.99), _detection(20, 0.999)
    faces = [small_sure, big_unsure, tiny_surest]
    assert select_face(faces, "largest", min_face_size=40) is big_unsure
    assert select_face(faces, "most_confident", min_face_size=40) is small_sure
    assert select_face(faces, "most_confident", min_face_size=0) is tiny_surest
    with pytest.raises(FaceTooSmallError):
        select_face([tiny_surest], "largest", min_face_size=40)
    with pytest.raises(NoFaceFoundError):
        select_face([], "largest")
    with pytest.raises(ValueError):
        select_face(faces, "first")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Folder processing with a deterministic stand-in detector


class DotDetector:
    """Finds the coloured landmark discs. A missing eye is reported on top of the visible
    one, as landmark detectors do for profile faces."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        self.calls += 1
        assert image.mode == "RGB"
        points = locate_dots(image)
        for eye, other in ((0, 1), (1, 0)):
            if np.isnan(points[eye]).any():
                points[eye] = points[other]
        if np.isnan(points).any():
            return []
        eye_distance = max(np.linalg.norm(points[1] - points[0]), 1.0)
        x0, y0 = points.min(axis=0) - eye_distance / 2
        x1, y1 = points.max(axis=0) + eye_distance / 2
        return [FaceDetection(box=(x0, y0, x1, y1), score=0.99, landmarks=points)]


def _face_image(scale: float = 1.0, visible: tuple[bool, ...] = (True,) * 5) -> Image.Image:
    centre = (150.0 * scale + 20.0, 140.0 * scale + 20.0)
    canvas = (int(300 * scale) + 40, int(300 * scale) + 40)
    return render_face(canvas, CANONICAL_FACE, scale, 15.0, centre, max(8.0 * scale, 2.5), visible=visible)


def _build_messy_folder(root: Path) -> dict[str, str | None]:
    """Write test inputs; returns input path -> expected skip reason (None = aligned)."""
    (root / "nested" / "deeper").mkdir(parents=True)
    _face_image().save(root / "face.png")
    _face_image(1.2).save(root / "nested" / "deeper" / "face2.bmp")
    rgba = _face_image().convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(root / "rgba_face.png")
    _face_image(0.12).save(root / "tiny.png")
    _face_image(visible=(True, False, True, True, True)).save(root / "profile.png")
    Image.new("RGB", (120, 90), (200, 200, 200)).save(root / "blank.png")
    Image.new("L", (90, 120), 30).save(root / "gray_blank.png")
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(root / "blank16.png")
    valid_png = _encode(_face_image())
    (root / "corrupt.png").write_bytes(valid_png[: len(valid_png) // 2])
    (root / "notes.jpg").write_text("this is not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "readme.txt").write_text("not an image extension: ignored\n")
    return {
        "face.png": None,
        "nested/deeper/face2.bmp": None,
        "rgba_face.png": None,
        "tiny.png": "face_too_small",
        "profile.png": "degenerate_landmarks",
        "blank.png": "no_face",
        "gray_blank.png": "no_face",
        "blank16.png": "no_face",
        "corrupt.png": "unreadable",
        "notes.jpg": "unreadable",
        "empty.jpg": "unreadable",
    }


def test_align_folder_reports_every_bad_item_and_resumes(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    expected = _build_messy_folder(source)
    detector = DotDetector()

    report = align_folder(source, target, output_size=64, min_face_size=40, detector=detector)

    assert report.num_images == len(expected)
    assert sorted(item.path for item in report.aligned) == sorted(p for p, r in expected.items() if r is None)
    assert {item.path: item.reason for item in report.skipped} == {p: r for p, r in expected.items() if r}
    assert all(item.detail for item in report.skipped)
    assert report.num_already_aligned == 0
    assert report.skipped_by_reason == {
        "degenerate_landmarks": 1,
        "face_too_small": 1,
        "no_face": 3,
        "unreadable": 3,
    }

    # Outputs mirror the input tree as PNGs, and the face really is aligned.
    for relative in ("face.png", "nested/deeper/face2.png", "rgba_face.png"):
        with Image.open(target / relative) as written:
            assert written.size == (64, 64) and written.mode == "RGB"
            found = locate_dots(written)
        np.testing.assert_allclose(found, expected_aligned_positions(CANONICAL_FACE, 64), atol=0.6)
    assert not any(name.endswith(".partial") for name in os.listdir(target))

    saved = json.loads((target / REPORT_FILENAME).read_text())
    assert saved["counts"]["images"] == len(expected)
    assert saved["counts"]["aligned"] == 3 and saved["counts"]["skipped"] == 8
    assert {entry["path"]: entry["reason"] for entry in saved["skipped"]} == {p: r for p, r in expected.items() if r}
    face_entry = next(entry for entry in saved["aligned"] if entry["path"] == "face.png")
    assert np.asarray(face_entry["landmarks"]).shape == (5, 2)
    assert np.asarray(face_entry["quad"]).shape == (4, 2)

    # Resume: finished outputs are left alone; failures are retried.
    first_write = (target / "face.png").stat().st_mtime_ns
    calls_before = detector.calls
    resumed = align_folder(source, target, output_size=64, min_face_size=40, detector=detector)
    assert resumed.num_aligned == 0
    assert resumed.num_already_aligned == 3
    assert resumed.num_skipped == 8
    assert (target / "face.png").stat().st_mtime_ns == first_write
    assert detector.calls - calls_before == 5  # only the five readable failures re-detected
    carried = next(entry for entry in resumed.already_aligned if entry.path == "face.png")
    assert carried.landmarks == face_entry["landmarks"]  # metadata survives the resume

    (target / "rgba_face.png").unlink()
    again = align_folder(source, target, output_size=64, min_face_size=40, detector=detector)
    assert [item.path for item in again.aligned] == ["rgba_face.png"]
    assert again.num_already_aligned == 2


def test_align_folder_nested_output_and_same_stem_inputs(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    _face_image().save(source / "dup.png")
    _face_image().save(source / "dup.bmp")
    target = source / "aligned"  # output inside the input tree must not be re-read

    first = align_folder(source, target, output_size=32, min_face_size=10, detector=DotDetector())
    second = align_folder(source, target, output_size=32, min_face_size=10, detector=DotDetector())

    assert sorted(item.output for item in first.aligned) == ["dup.bmp.png", "dup.png.png"]
    assert second.num_images == 2 and second.num_already_aligned == 2
    with pytest.raises(ValueError):
        align_folder(source, source, detector=DotDetector())


# --------------------------------------------------------------------------------------
# MTCNN and the command-line entry point


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_mtcnn_loads_offline_on_cpu_and_handles_faceless_images(no_network: None) -> None:
    detector = MTCNNFaceDetector()
    parameters = list(detector.network.parameters())
    assert parameters and all(parameter.device.type == "cpu" for parameter in parameters)
    # Weights were loaded, not left at random init: P-net's first conv is non-trivial.
    assert float(parameters[0].detach().abs().sum()) > 0
    assert detector.detect(Image.new("RGB", (96, 80), (128, 128, 128))) == []
    assert detector.detect(Image.new("L", (8, 8), 0)) == []  # smaller than any face


def test_main_align_runs_mtcnn_over_a_folder(tmp_path: Path, no_network: None, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    Image.new("RGB", (96, 96), (128, 128, 128)).save(source / "blank.png")
    (source / "broken.jpg").write_text("nope")

    exit_code = main_align(str(source), str(target), output_size=64)

    assert exit_code == 0
    assert "aligned 0 of 2 images" in capsys.readouterr().out
    saved = json.loads((target / REPORT_FILENAME).read_text())
    assert {entry["path"]: entry["reason"] for entry in saved["skipped"]} == {
        "blank.png": "no_face",
        "broken.jpg": "unreadable",
    }
    assert main_align(str(tmp_path / "missing"), str(target)) == 2
    assert main_align(str(source), str(target), select="biggest") == 2
