"""The labelled text set: pictures carrying known text, drawn here, with their words and queries.

    .venv/bin/python bench/text_set.py bench/cache/text-set --per-kind 20 --seed 1

Five kinds, all drawn with Debian's fonts (packages fonts-dejavu-core and fonts-liberation):

* ``card``       — a card or note: 2-4 lines on a plain or pastel ground, several fonts and sizes;
* ``screenshot`` — a phone screen (1080×2340 PNG): a title and rows of label / value (a Wi-Fi
  network ``Name-Guest`` with its password, a boarding pass, an order);
* ``receipt``    — a till receipt in a monospaced font, photographed on a photo-like background;
* ``sign``       — a photo-like picture (3200×2400) with a sign on it, from across the street to close up;
* ``photo``      — the same photo-like pictures without any text (what most of a library is).

Pictures with text are turned by up to ±10° (receipts, signs) or ±4° (cards), some are blurred, all
but screenshots get sensor noise and JPEG compression. Each picture's record (``labels.jsonl``) gives
its lines, its words (``embedder.words.word_spans`` of the lines: what word recall counts), 1-3 word
queries made from its text (one word; a word inside a longer token, ``Guest`` in ``Name-Guest``; digits;
mixed case; a phrase) and its split: ``tune`` (settings are tuned on these) or ``test`` (the reported
recall), fixed by the seed and the picture's number. `queries(records)` gives every query with the
pictures it should find, for search R@K with CLIP only, text only and fused.

The drawing functions (`card`, `screenshot`, `receipt`, `sign_photo`, `photo_background`) are also
what tests/test_ocr.py draws its pictures with.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedder.words import word_spans, words  # noqa: E402

FONT_DIR = Path("/usr/share/fonts/truetype")
FONT_PACKAGES = "fonts-dejavu-core fonts-liberation"
FONTS = {  # name → file under FONT_DIR
    "DejaVu Sans": "dejavu/DejaVuSans.ttf",
    "DejaVu Sans Bold": "dejavu/DejaVuSans-Bold.ttf",
    "DejaVu Serif": "dejavu/DejaVuSerif.ttf",
    "DejaVu Sans Mono": "dejavu/DejaVuSansMono.ttf",
    "Liberation Sans": "liberation/LiberationSans-Regular.ttf",
    "Liberation Sans Bold": "liberation/LiberationSans-Bold.ttf",
    "Liberation Sans Narrow": "liberation/LiberationSansNarrow-Regular.ttf",
    "Liberation Serif": "liberation/LiberationSerif-Regular.ttf",
    "Liberation Serif Italic": "liberation/LiberationSerif-Italic.ttf",
    "Liberation Mono": "liberation/LiberationMono-Regular.ttf",
}
SANS = ("DejaVu Sans", "Liberation Sans", "DejaVu Sans Bold", "Liberation Sans Bold", "Liberation Sans Narrow")
MONO = ("DejaVu Sans Mono", "Liberation Mono")
KINDS = ("card", "screenshot", "receipt", "sign", "photo")
LABELS = "labels.jsonl"
TUNE_SHARE = 0.4  # of each kind's pictures, by a hash of (seed, number): the rest is the reported "test" split

# --- what the pictures say ----------------------------------------------------------------------------

NAMES = "Anna Tom Grandma Oliver Sophie Lukas Emma Noah Mia Jonas Clara Felix Lena Paul Ida Max".split()
CARD_TITLES = (
    "Happy Birthday {name}", "Recipe: Apple Crumble", "Thank you {name}", "Table {n} Reserved", "Welcome Home {name}",
    "Lemon Drizzle Cake", "Congratulations {name}", "Save the Date", "Crème Brûlée", "Best Wishes from {name}",
    "Garden Party", "Book Club Meeting", "Shopping List", "Get Well Soon {name}", "Bon Voyage {name}",
)
CARD_LINES = (
    "Meeting at {time} in Room {room}", "Oven 180°C for {m} minutes", "Call {name} on {phone}", "Flour {g} g, Sugar {g2} g",
    "Bring {thing} and {thing2}", "See you on {date}", "Love from {name} & {name2}", "Door code {code}",
    "Pick up {thing} at {time}", "Library card {code}", "Plant {thing} in May", "Dinner at {name}'s, {time}",
)
THINGS = "tomatoes basil lemons candles balloons umbrella blanket coffee bread cheese strawberries notebook".split()
SIGN_TEXTS = (
    ("Platform {n}",), ("EXIT",), ("Bahnhofstraße {n}",), ("Café Noir", "Open {hours}"), ("No Parking",),
    ("Station Road",), ("Main Street",), ("Bakery", "Fresh Bread Daily"), ("Museum", "Entrance {n}"),
    ("Hotel Aurora",), ("Gate {gate}",), ("Pharmacy",), ("Bus Stop", "Line {n}"), ("Beach Access",),
    ("Market Square",), ("Car Park", "Level {n}"), ("Ice Cream",), ("Harbour View",), ("Post Office",),
)
SCREENS = ("wifi", "boarding", "order", "contact")
SHOPS = ("GreenGrocer", "Corner Market", "FreshMart", "Bäckerei Müller", "City Pharmacy", "Hardware Hub")
ITEMS = (
    "Milk", "Bread", "Butter", "Eggs x6", "Apples", "Bananas", "Coffee Beans", "Orange Juice", "Pasta",
    "Tomato Sauce", "Cheddar", "Yoghurt", "Rice 1kg", "Olive Oil", "Dark Chocolate", "Tea Bags", "Soap",
    "Shampoo", "Batteries AA", "Light Bulb", "Honey", "Oat Flakes", "Sparkling Water", "Croissant",
)


@dataclass(frozen=True)
class TextPicture:
    """One picture of the set and what it says."""

    image: Image.Image
    kind: str
    lines: tuple[str, ...]
    font: str = ""
    angle: float = 0.0
    blur: float = 0.0


@dataclass
class Record:
    """One picture on disk: where, what it says, its words and queries, and which split it is in."""

    path: str  # relative to the set's folder
    kind: str
    split: str
    lines: list[str]
    words: list[str]  # the words a perfect reading gives (parts, as `word_spans` finds them)
    queries: list[dict] = field(default_factory=list)  # {"text", "kind"}
    font: str = ""
    angle: float = 0.0
    blur: float = 0.0


@dataclass(frozen=True)
class Query:
    """A query of the set and every picture (record path) whose words hold all the query's words."""

    text: str
    kind: str
    source: str  # the picture it was made from
    relevant: tuple[str, ...]


# --- fonts --------------------------------------------------------------------------------------------


def missing_fonts() -> list[str]:
    return [name for name, file in FONTS.items() if not (FONT_DIR / file).is_file()]


@lru_cache(maxsize=256)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A Debian font at `size` px; a clear error when its package is not installed."""
    path = FONT_DIR / FONTS[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: apt-get install {FONT_PACKAGES}")
    return ImageFont.truetype(str(path), size)


# --- drawing ------------------------------------------------------------------------------------------


def card(
    lines: Sequence[str], *, font_name: str = "DejaVu Sans", size: int = 44, width: int = 1000,
    background: tuple[int, int, int] = (250, 248, 240), ink: tuple[int, int, int] = (25, 25, 30),
) -> Image.Image:
    """A card: `lines` left-aligned with margins, the first one larger."""
    fonts = [font(font_name, round(size * 1.3))] + [font(font_name, size)] * (len(lines) - 1)
    margin = size
    heights = [f.getbbox("Ág")[3] + size // 2 for f in fonts]
    widest = max(int(f.getlength(line)) for f, line in zip(fonts, lines))
    image = Image.new("RGB", (max(width, widest + 2 * margin), sum(heights) + 2 * margin), background)
    draw = ImageDraw.Draw(image)
    y = margin
    for f, line, h in zip(fonts, lines, heights):
        draw.text((margin, y), line, font=f, fill=ink)
        y += h
    return image


def screenshot(
    title: str, rows: Sequence[tuple[str, str]], *, font_name: str = "DejaVu Sans", size: int = 44,
    dark: bool = False, screen: tuple[int, int] = (1080, 2340),
) -> Image.Image:
    """A phone screen: a status bar, a title, then rows of a label and its value, separated by rules."""
    width, height = screen
    ground, ink, faint = ((18, 18, 22), (235, 235, 240), (150, 150, 160)) if dark else ((248, 248, 250), (20, 20, 25), (110, 110, 120))
    image = Image.new("RGB", screen, ground)
    draw = ImageDraw.Draw(image)
    small = font(font_name, round(size * 0.75))
    draw.text((48, 24), "9:41", font=small, fill=ink)
    draw.rectangle((width - 140, 34, width - 60, 64), outline=ink, width=3)  # a battery
    draw.text((48, 150), title, font=font(font_name, round(size * 1.5)), fill=ink)
    y = 320
    for label, value in rows:
        draw.text((48, y), label, font=small, fill=faint)
        draw.text((48, y + round(size * 1.0)), value, font=font(font_name, size), fill=ink)
        y += round(size * 3.2)
        draw.line((48, y - size // 2, width - 48, y - size // 2), fill=faint, width=2)
    draw.rounded_rectangle((width // 2 - 200, height - 60, width // 2 + 200, height - 48), 6, fill=faint)
    return image


def receipt(
    shop: str, items: Sequence[tuple[str, str]], total: str, footer: Sequence[str], *,
    font_name: str = "DejaVu Sans Mono", size: int = 30,
) -> Image.Image:
    """A till receipt: the shop, items with prices aligned right, the total and footer lines."""
    f = font(font_name, size)
    columns = 28
    step = round(size * 1.45)
    lines = [shop.center(columns), ""] + [f"{name:<{columns - len(price)}}{price}" for name, price in items]
    lines += ["-" * columns, f"{'TOTAL':<{columns - len(total)}}{total}", ""] + list(footer)
    width = int(f.getlength("M" * columns)) + 2 * size
    image = Image.new("RGB", (width, step * len(lines) + 2 * size), (246, 244, 236))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * step), line, font=f, fill=(30, 30, 35))
    return image


def photo_background(rng: np.random.Generator, size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A photo-like picture without text: a smooth colour field, soft shapes, texture and noise."""
    width, height = size
    coarse = Image.fromarray(rng.integers(30, 230, (4, 5, 3), dtype=np.uint8))
    canvas = coarse.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(6, 16))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 30, width // 5))
        colour = tuple(int(c) for c in rng.integers(20, 240, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.polygon([(x + int(rng.integers(-r, r)), y + int(rng.integers(-r, r))) for _ in range(5)], fill=colour)
    canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 4.0))))
    pixels = np.asarray(canvas, dtype=np.int16)
    texture = rng.normal(0, 6, (height // 2 + 1, width // 2 + 1, 1)).astype(np.int16)
    pixels = pixels + np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)[:height, :width]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def place(picture: Image.Image, background: Image.Image, rng: np.random.Generator, angle: float, share: float) -> Image.Image:
    """`picture` turned by `angle` degrees, scaled to `share` of the background's width, pasted at random."""
    scale = share * background.width / picture.width
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
    if picture.height > 0.9 * background.height:
        shrink = 0.9 * background.height / picture.height
        picture = picture.resize((round(picture.width * shrink), round(picture.height * shrink)), Image.Resampling.LANCZOS)
    mask = Image.new("L", picture.size, 255).rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    turned = picture.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    out = background.copy()
    x = int(rng.integers(0, max(1, out.width - turned.width)))
    y = int(rng.integers(0, max(1, out.height - turned.height)))
    out.paste(turned, (x, y), mask)
    return out


def sign_photo(lines: Sequence[str], rng: np.random.Generator, *, font_name: str = "DejaVu Sans Bold",
               angle: float = 0.0, share: float = 0.4, size: tuple[int, int] = (3200, 2400)) -> Image.Image:
    """A photo-like picture with a sign on it, `share` of its width: `lines` on a plate of a contrasting colour."""
    light = rng.random() < 0.5
    plate, ink = ((245, 245, 240), (20, 30, 90)) if light else ((20, 80, 150), (250, 250, 250))
    sign = card(lines, font_name=font_name, size=72, width=0, background=plate, ink=ink)
    return place(sign, photo_background(rng, size), rng, angle, share)


def degrade(image: Image.Image, rng: np.random.Generator, blur: float, quality: int | None) -> Image.Image:
    """Blur (Gaussian, `blur` px), sensor noise and JPEG compression at `quality` (None: none)."""
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, float(rng.uniform(2, 6)), pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if quality is None:
        return image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        return jpeg.convert("RGB")


# --- the set ------------------------------------------------------------------------------------------


def _fill(template: str, rng: np.random.Generator) -> str:
    pick = lambda seq: str(seq[int(rng.integers(len(seq)))])  # noqa: E731
    return template.format(
        name=pick(NAMES), name2=pick(NAMES), n=int(rng.integers(1, 40)), room=f"{int(rng.integers(1, 9))}{pick('ABCD')}",
        time=f"{int(rng.integers(7, 22))}:{pick(['00', '15', '30', '45'])}", m=int(rng.integers(15, 60)),
        phone=f"0{int(rng.integers(150, 179))} {int(rng.integers(1000000, 9999999))}", g=int(rng.integers(1, 6)) * 50,
        g2=int(rng.integers(1, 5)) * 25, thing=pick(THINGS), thing2=pick(THINGS),
        date=f"{int(rng.integers(1, 29))}.{int(rng.integers(1, 13)):02d}.{int(rng.integers(2019, 2026))}",
        code=f"{int(rng.integers(1000, 9999))}-{pick(['A', 'B', 'X', 'K'])}{int(rng.integers(10, 99))}",
        hours=f"{int(rng.integers(6, 10))}-{int(rng.integers(17, 23))}", gate=f"{pick('ABCDE')}{int(rng.integers(1, 40))}",
    )


def _screen(kind: str, rng: np.random.Generator) -> tuple[str, list[tuple[str, str]]]:
    word = lambda: ["Guest", "Home", "Office", "Studio", "Garden", "Cafe"][int(rng.integers(6))]  # noqa: E731
    digits = lambda k: "".join(str(int(d)) for d in rng.integers(0, 10, k))  # noqa: E731
    if kind == "wifi":
        name = f"{['Name', 'Villa', 'Flat', 'Haus'][int(rng.integers(4))]}-{word()}"
        password = f"{['Pa55word', 'Sunny', 'BlueFox', 'Tiger'][int(rng.integers(4))]}{digits(2)}!"
        return "Wi-Fi", [("Network", name), ("Password", password), ("Security", "WPA2 Personal"), ("Frequency", "5 GHz")]
    if kind == "boarding":
        return "Boarding Pass", [
            ("Flight", f"LH{digits(4)}"), ("From", "Berlin BER"), ("To", ["Lisbon LIS", "Oslo OSL", "Rome FCO"][int(rng.integers(3))]),
            ("Gate", f"{'ABC'[int(rng.integers(3))]}{int(rng.integers(1, 40))}"), ("Seat", f"{int(rng.integers(1, 40))}{'ACDF'[int(rng.integers(4))]}"),
        ]
    if kind == "order":
        return "Order Confirmed", [
            ("Order number", f"#{digits(6)}"), ("Item", f"{['Blue', 'Green', 'Red'][int(rng.integers(3))]} Rain Jacket"),
            ("Delivery", f"Tuesday {int(rng.integers(1, 29))} March"), ("Total", f"EUR {int(rng.integers(10, 200))}.{digits(2)}"),
        ]
    name = NAMES[int(rng.integers(len(NAMES)))]
    return name, [("Mobile", f"+49 {digits(3)} {digits(7)}"), ("Email", f"{name.lower()}.mail@example.org"), ("Birthday", f"{int(rng.integers(1, 29))} June")]


def draw(kind: str, seed: int, number: int) -> TextPicture:
    """Picture `number` of `kind`: the same (kind, seed, number) always gives the same picture."""
    rng = np.random.default_rng([seed, KINDS.index(kind), number])
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    if kind == "card":
        lines = [_fill(pick(CARD_TITLES), rng)] + [_fill(pick(CARD_LINES), rng) for _ in range(int(rng.integers(1, 4)))]
        name = pick(tuple(n for n in FONTS if n not in MONO))
        pastel = tuple(int(c) for c in rng.integers(215, 256, 3))
        image = card(lines, font_name=name, size=int(rng.integers(22, 56)), background=pastel)
        angle, blur = float(rng.uniform(-4, 4)), float(pick([0.0, 0.0, 0.8, 1.4]))
        image = image.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=pastel)
        return TextPicture(degrade(image, rng, blur, int(rng.integers(70, 95))), kind, tuple(lines), name, angle, blur)
    if kind == "screenshot":
        title, rows = _screen(pick(SCREENS), rng)
        name = pick(SANS)
        image = screenshot(title, rows, font_name=name, size=int(rng.integers(28, 52)), dark=bool(rng.random() < 0.3))
        lines = [title] + [part for row in rows for part in row]
        return TextPicture(image, kind, tuple(lines), name)
    if kind == "receipt":
        chosen = rng.choice(len(ITEMS), int(rng.integers(4, 8)), replace=False)
        items = [(ITEMS[i], f"{int(rng.integers(0, 15))}.{int(rng.integers(0, 100)):02d}") for i in chosen]
        total = f"{sum(float(p) for _, p in items):.2f}"
        footer = [f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}.2024 {int(rng.integers(8, 21))}:{int(rng.integers(10, 60))}",
                  f"Card ****{int(rng.integers(1000, 9999))}", "Thank you!"]
        shop = pick(SHOPS)
        name = pick(MONO)
        paper = receipt(shop, items, total, footer, font_name=name, size=30)
        angle, blur = float(rng.uniform(-10, 10)), float(pick([0.0, 0.6, 1.0]))
        image = place(paper, photo_background(rng, (1500, 2000)), rng, angle, float(rng.uniform(0.4, 0.75)))
        lines = [shop] + [f"{n} {p}" for n, p in items] + [f"TOTAL {total}"] + footer
        return TextPicture(degrade(image, rng, blur, int(rng.integers(70, 92))), kind, tuple(lines), name, angle, blur)
    if kind == "sign":
        lines = [_fill(line, rng) for line in pick(SIGN_TEXTS)]
        name = pick(("DejaVu Sans Bold", "Liberation Sans Bold", "DejaVu Serif", "Liberation Sans Narrow", "DejaVu Sans"))
        angle, blur = float(rng.uniform(-10, 10)), float(pick([0.0, 0.0, 1.0, 2.0]))
        # From across the street to close up: the text's height is 0.5-3 % of the picture's height.
        image = sign_photo(lines, rng, font_name=name, angle=angle, share=float(rng.uniform(0.12, 0.6)))
        return TextPicture(degrade(image, rng, blur, int(rng.integers(70, 92))), kind, tuple(lines), name, angle, blur)
    if kind == "photo":
        return TextPicture(degrade(photo_background(rng), rng, 0.0, int(rng.integers(75, 92))), kind, ())
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def split_of(seed: int, kind: str, number: int) -> str:
    """``tune`` for about TUNE_SHARE of the pictures, ``test`` for the rest (fixed by seed, kind and number)."""
    return "tune" if np.random.default_rng([seed, KINDS.index(kind), number, 7]).random() < TUNE_SHARE else "test"


def truth_words(lines: Sequence[str]) -> list[str]:
    """The words a perfect reading of `lines` gives: every part `word_spans` finds, once each."""
    return list(dict.fromkeys(span.word for line in lines for span in word_spans(line)))


def make_queries(lines: Sequence[str], rng: np.random.Generator) -> list[dict]:
    """1-3 word queries from the text: a word, a word inside a longer token, digits, mixed case, a phrase."""
    tokens = [t for line in lines for t in line.split()]
    alpha = [s.word for line in lines for s in word_spans(line) if s.word.isalpha() and len(s.word) >= 4]
    inner = [s.word for t in tokens if len(spans := word_spans(t)) > 1 for s in spans if s.word.isalpha() and len(s.word) >= 3]
    digits = [s.word for line in lines for s in word_spans(line) if s.word.isdigit() and len(s.word) >= 3]
    digits = digits or [s.word for line in lines for s in word_spans(line) if s.word.isdigit() and s.word.strip("0")]
    out: list[dict] = []
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    if alpha:
        out.append({"text": pick(alpha), "kind": "word"})
    if inner:
        word = pick(inner)
        out.append({"text": word.capitalize(), "kind": "inner"})
    if digits:
        out.append({"text": pick(digits), "kind": "digits"})
    if alpha:
        word = pick(alpha)
        out.append({"text": word.upper() if rng.random() < 0.5 else word[0] + word[1:].upper(), "kind": "mixed"})
    phrases = [ws for line in lines if len(ws := [t for t in line.split() if any(c.isalpha() for c in t)]) >= 2]
    if phrases:
        line = pick(phrases)
        n = int(rng.integers(2, min(3, len(line)) + 1))
        start = int(rng.integers(0, len(line) - n + 1))
        out.append({"text": " ".join(line[start : start + n]), "kind": "phrase"})
    return out


def generate(per_kind: int, seed: int, kinds: Sequence[str] = KINDS) -> Iterator[tuple[str, int, TextPicture]]:
    for kind in kinds:
        for number in range(per_kind):
            yield kind, number, draw(kind, seed, number)


def write_set(folder: Path | str, per_kind: int, seed: int, kinds: Sequence[str] = KINDS) -> list[Record]:
    """Draw the set into `folder` (PNG screenshots, JPEG the rest) with `labels.jsonl`; reused when it is there."""
    folder = Path(folder)
    labels = folder / LABELS
    if labels.is_file():
        existing = load_records(folder)
        if len(existing) == per_kind * len(kinds):
            return existing
    if missing := missing_fonts():
        raise FileNotFoundError(f"fonts missing ({', '.join(missing)}): apt-get install {FONT_PACKAGES}")
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for kind, number, picture in generate(per_kind, seed, kinds):
        suffix = ".png" if kind == "screenshot" else ".jpg"
        relative = f"{kind}/{kind}-{number:04d}{suffix}"
        (folder / kind).mkdir(exist_ok=True)
        picture.image.save(folder / relative, **({"quality": 95} if suffix == ".jpg" else {}))
        rng = np.random.default_rng([seed, KINDS.index(kind), number, 9])
        records.append(Record(
            relative, kind, split_of(seed, kind, number), list(picture.lines), truth_words(picture.lines),
            make_queries(picture.lines, rng), picture.font, round(picture.angle, 2), picture.blur,
        ))
    tmp = labels.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(labels)
    return records


def load_records(folder: Path | str) -> list[Record]:
    """The set's records (image path relative to `folder`, lines, words, queries, split). The words are
    made again from the lines, so a set drawn before `embedder.words` changed counts today's words."""
    with open(Path(folder) / LABELS, encoding="utf-8") as fh:
        records = [Record(**json.loads(line)) for line in fh if line.strip()]
    for record in records:
        record.words = truth_words(record.lines)
    return records


def queries(records: Sequence[Record], split: str | None = None) -> list[Query]:
    """Every query of the set (of `split`, if given), with each picture whose words hold all its words."""
    vocab = {r.path: set(r.words) for r in records}
    found = []
    for record in records:
        if split and record.split != split:
            continue
        for q in record.queries:
            wanted = {s.word for s in word_spans(q["text"])}
            relevant = tuple(path for path, have in vocab.items() if wanted <= have)
            found.append(Query(q["text"], q["kind"], record.path, relevant))
    return found


def word_recall(truth: Sequence[str], text: str) -> tuple[int, int]:
    """(found, wanted): how many of `truth`'s words the words of `text` hold."""
    have = set(words(text))
    return sum(1 for w in truth if w in have), len(truth)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    records = write_set(args.folder, args.per_kind, args.seed)
    print(f"{len(records)} pictures, {sum(len(r.queries) for r in records)} queries in {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
