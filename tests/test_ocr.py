"""Reading text in pictures (embedder.models.ocr) with the real PP-OCRv6 models, on pictures drawn here.

The pictures are drawn with Debian's fonts (fonts-dejavu-core, fonts-liberation) by bench/text_set.py's
drawing functions, the same ones the labelled text set uses. One reader serves the whole module.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from embedder.errors import ModelLoadError, TextReadError
from embedder.media.images import decode
from embedder.models.ocr import DECODE_SIDE, TextLine, TextReader, TextReading
from embedder.words import words

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import text_set  # noqa: E402

MAX_PIXELS = 100_000_000


@pytest.fixture(scope="module")
def reader() -> TextReader:
    missing = text_set.missing_fonts()
    assert not missing, f"fonts missing ({', '.join(missing)}): apt-get install {text_set.FONT_PACKAGES}"
    return TextReader("auto", threads=2)


def read_words(reading: TextReading) -> set[str]:
    return set(words(reading.text))


def wifi_screen(**kwargs) -> Image.Image:
    rows = [("Network", "Name-Guest"), ("Password", "Pa55word!"), ("Security", "WPA2 Personal")]
    return text_set.screenshot("Wi-Fi", rows, **kwargs)


# --- what is read ----------------------------------------------------------------------------------


def test_a_card_is_read_line_by_line_with_boxes_and_confidences(reader: TextReader) -> None:
    image = text_set.card(["Happy Birthday Grandma", "Lemon Drizzle Cake", "Oven 180 for 45 minutes"], size=40)
    reading = reader.read(image)
    assert reading.complete and reading.size == image.size
    assert {"happy", "birthday", "grandma", "lemon", "drizzle", "cake", "oven", "180", "45", "minutes"} <= read_words(reading)
    assert [line.text for line in reading.lines][0] == "Happy Birthday Grandma"  # top to bottom
    for line in reading.lines:
        assert line.confidence >= reader.min_confidence
        x, y, w, h = line.bounds
        assert 0 <= x and 0 <= y and x + w <= image.width and y + h <= image.height and w > h > 0


def test_a_wifi_screenshot_gives_its_network_and_password_as_written(reader: TextReader) -> None:
    reading = reader.read(wifi_screen())
    texts = [line.text for line in reading.lines]
    assert "Name-Guest" in texts and "Pa55word!" in texts  # literally, punctuation and all
    assert {"guest", "nameguest", "pa55word", "wifi", "wpa2"} <= read_words(reading)
    assert reading.stats.turned == 0


def test_a_photographed_receipt_gives_its_items_prices_and_total(reader: TextReader) -> None:
    rng = np.random.default_rng(5)
    paper = text_set.receipt("Corner Market", [("Milk", "1.29"), ("Bread", "2.49"), ("Honey", "6.10")], "9.88",
                             ["14.07.2024 18:22", "Thank you!"])
    photo = text_set.degrade(text_set.place(paper, text_set.photo_background(rng, (1500, 2000)), rng, 4.0, 0.7), rng, 0.6, 85)
    assert {"corner", "market", "milk", "bread", "honey", "total", "988", "249", "2024"} <= read_words(reader.read(photo))


@pytest.mark.parametrize("angle", [5.0, -10.0])
def test_text_at_a_small_angle_is_read_along_its_slant(reader: TextReader, angle: float) -> None:
    image = text_set.card(["Platform 12", "Station Road"], size=56, width=700)
    turned = image.rotate(angle, expand=True, fillcolor=(250, 248, 240), resample=Image.Resampling.BICUBIC)
    reading = reader.read(turned)
    assert {"platform", "12", "station", "road"} <= read_words(reading)
    (x0, y0), (x1, y1) = reading.lines[0].box[:2]  # the top edge follows the text's slope
    assert np.degrees(np.arctan2(-(y1 - y0), x1 - x0)) == pytest.approx(angle, abs=3)


@pytest.mark.slow
@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_a_screenshot_stored_on_its_side_or_upside_down_is_read(reader: TextReader, quarter_turns: int) -> None:
    """No EXIF tag says it is turned: lines are turned one by one (a quarter for tall boxes, a half by the classifier)."""
    image = wifi_screen(size=40, screen=(720, 1280)).rotate(90 * quarter_turns, expand=True)
    reading = reader.read(image)
    assert {"wi", "fi", "network", "nameguest", "pa55word", "password"} <= read_words(reading)
    assert reading.stats.turned >= len(reading.lines) - 1  # the status bar's clock may be read either way


def test_a_photo_without_text_costs_only_the_first_look(reader: TextReader) -> None:
    photo = text_set.degrade(text_set.photo_background(np.random.default_rng(11), (1600, 1200)), np.random.default_rng(1), 0, 85)
    reading = reader.read(photo)
    assert reading.lines == () and reading.complete
    assert reading.stats.first_look and reading.stats.recognition_skipped
    assert reading.stats.detected == 0 and reading.stats.recognised == 0 and reading.stats.detect_size == (0, 0)


def test_a_photo_with_a_sign_passes_the_first_look_and_is_read(reader: TextReader) -> None:
    rng = np.random.default_rng(3)
    photo = text_set.sign_photo(["Harbour View", "Gate B22"], rng, angle=-6, share=0.3, size=(3200, 2400))
    reading = reader.read(decode(_jpeg(photo), MAX_PIXELS, min_side=DECODE_SIDE).image)
    assert reading.stats.first_look_boxes > 0 and reading.stats.recognised > 0
    assert {"harbour", "view", "gate", "b22", "22"} <= read_words(reading)


def test_boxes_are_in_the_pixels_of_the_picture_given(reader: TextReader) -> None:
    """A 3000×2000 picture is read smaller; its boxes still say where the text is in it."""
    image = Image.new("RGB", (3000, 2000), (235, 235, 228))
    word = text_set.card(["Checkpoint"], size=60, width=0, background=(255, 255, 255))
    image.paste(word, (1800, 1300))
    reading = reader.read(image)
    (line,) = reading.lines
    x, y, w, h = line.bounds
    assert line.text == "Checkpoint"
    assert abs(x - 1860) < 40 and abs(y - 1360) < 40 and abs(w - word.width + 120) < 80 and 40 < h < 150


def test_lines_round_trip_through_their_payload_form() -> None:
    line = TextLine("Name-Guest", ((1, 2), (30, 2), (30, 12), (1, 12)), 0.98765)
    assert TextLine.from_dict(line.to_dict()) == TextLine("Name-Guest", line.box, 0.9877)
    assert line.bounds == (1, 2, 29, 10)


# --- what reaches the reader from the decoder ------------------------------------------------------


def _jpeg(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **save)
    return buffer.getvalue()


def test_an_exif_rotated_photo_arrives_upright_and_is_read_without_turning(reader: TextReader) -> None:
    upright = text_set.card(["Garden Party", "Saturday 14:00"], size=48, width=800)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as the camera wrote it; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode(_jpeg(stored, exif=exif), MAX_PIXELS, min_side=DECODE_SIDE).image
    assert decoded.size == upright.size
    reading = reader.read(decoded)
    assert {"garden", "party", "saturday", "14", "00"} <= read_words(reading)
    assert reading.stats.turned == 0


def test_an_animated_picture_is_read_from_its_first_frame(reader: TextReader) -> None:
    frames = [text_set.card([text], size=48, width=500).convert("P") for text in ("First Frame", "Second Frame")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    found = read_words(reader.read(decode(buffer.getvalue(), MAX_PIXELS, min_side=DECODE_SIDE).image))
    assert "first" in found and "second" not in found


@pytest.mark.parametrize("kind", ["cmyk-jpeg", "16-bit-png"])
def test_cmyk_and_16_bit_pictures_arrive_as_rgb_and_are_read(reader: TextReader, kind: str) -> None:
    picture = text_set.card(["Museum Entrance 19"], size=48, width=700)
    buffer = io.BytesIO()
    if kind == "cmyk-jpeg":
        picture.convert("CMYK").save(buffer, "JPEG", quality=92)
    else:
        Image.fromarray(np.asarray(picture.convert("L"), dtype=np.uint16) * 257).save(buffer, "PNG")
    decoded = decode(buffer.getvalue(), MAX_PIXELS, min_side=DECODE_SIDE).image
    assert decoded.mode == "RGB"
    assert {"museum", "entrance", "19"} <= read_words(reader.read(decoded))


def test_a_picture_in_another_mode_is_converted(reader: TextReader) -> None:
    grey = text_set.card(["Bus Stop"], size=56, width=500).convert("L")
    assert {"bus", "stop"} <= read_words(reader.read(grey))


# --- bad input: each fails alone, with a reason ----------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (1, 20000), (20000, 5), (7, 300)])
def test_pictures_too_small_to_hold_text_are_not_looked_at(reader: TextReader, size: tuple[int, int]) -> None:
    reading = reader.read(Image.new("RGB", size, (255, 255, 255)))
    assert reading.lines == () and reading.stats.detect_size == (0, 0) and not reading.stats.first_look
    assert reading.skipped == f"{size[0]}×{size[1]} px is too small to hold text"


def test_a_thin_strip_of_text_is_padded_and_read(reader: TextReader) -> None:
    strip = Image.new("RGB", (3000, 40), (255, 255, 255))
    ImageDraw.Draw(strip).text((20, 4), "Breaking News Today", font=text_set.font("DejaVu Sans", 28), fill=(0, 0, 0))
    assert {"breaking", "news", "today"} <= read_words(reader.read(strip))


@pytest.mark.slow
def test_a_picture_over_the_pixel_budget_is_read_scaled_down(reader: TextReader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "max_pixels", 2_000_000)
    big = text_set.card(["Exhibition Hall", "Opening Hours 10-18"], size=220, width=4000)
    reading = reader.read(big)
    assert {"exhibition", "hall", "opening", "hours", "10", "18"} <= read_words(reading)
    assert max(x + w for x, _, w, _ in (line.bounds for line in reading.lines)) > 2000  # still the picture's pixels


def test_the_time_budget_stops_a_reading_with_a_reason(reader: TextReader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "time_budget_s", 1e-9)  # over before the first model runs
    reading = reader.read(text_set.card(["Save the Date"]))
    assert not reading.complete and reading.lines == ()
    assert reading.stopped == "stopped after 1e-09 s (the time budget) while looking for text"


def test_damaged_pixels_fail_that_picture_alone(reader: TextReader) -> None:
    data = _jpeg(text_set.card(["Broken"]))
    lazy = Image.open(io.BytesIO(data[: len(data) // 3]))  # not decoded yet: its pixels are missing
    with pytest.raises(TextReadError, match="the picture's pixels could not be read"):
        reader.read(lazy)
    assert "save" in read_words(reader.read(text_set.card(["Save the Date"])))  # the next picture is read


def test_device_choices(reader: TextReader) -> None:
    assert reader.device == "CPUExecutionProvider"  # auto, where onnxruntime has no CUDA provider
    with pytest.raises(ModelLoadError, match="needs onnxruntime-gpu"):
        TextReader("cuda")
    with pytest.raises(ValueError, match="device must be"):
        TextReader("tpu")
    with pytest.raises(ValueError, match="threads"):
        TextReader("cpu", threads=-1)


@pytest.mark.slow
def test_the_reader_runs_without_torch() -> None:
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from embedder.models.ocr import TextReader\n"
        "TextReader('cpu', threads=1).read(Image.new('RGB', (200, 100), 'white'))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
