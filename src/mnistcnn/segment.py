"""Where the ink is in a photo, and which of it makes which digit: the image-analysis half of `images.extract`.

Usage: `groups = find_groups(ink_mask(ink_map(work, "photo.jpg")), multi=True, name="photo.jpg")`, where
`work` is a gray (H, W) float32 in [0, 1]; each group is (its uint8 mask inside its box, box (x0, y0, x1, y1)).
OpenCV does the image operations (imported here, inside functions, only when a picture is read).
"""

from __future__ import annotations

from statistics import median  # of short Python lists: a hundred times numpy's speed

import numpy as np

from mnistcnn.errors import ImageError

BG_KERNEL = 0.25  # background closing: this fraction of the shorter side, wider than any stroke
BG_SIDE = 128  # the background is smooth: estimate it on a copy this size
MIN_CONTRAST = 0.15  # normalised ink weaker than this everywhere: nothing is written
LINE = 0.25  # a thin straight line at least this fraction of the shorter side long is ruling, not a digit
PIECE = 0.04  # a component smaller than this fraction of the digit's main one is a speck


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def ink_map(work: np.ndarray, name: str) -> np.ndarray:
    """Gray photo → ink strength (H, W) float32 in [0, 1]: 0 on the paper or board, ~1 on the strokes, whichever
    the polarity and however uneven the light."""
    import cv2

    h, w = work.shape
    f = min(1.0, BG_SIDE / max(h, w))
    # the size given, not fx/fy: a 3000×10 strip scaled by 128/3000 would be 0 px tall (an OpenCV assertion)
    size = (max(3, round(w * f)), max(3, round(h * f)))
    small = cv2.resize(work, size, interpolation=cv2.INTER_AREA) if f < 1 else work
    k = _odd(BG_KERNEL * min(small.shape))
    u8 = np.round(cv2.GaussianBlur(small, (3, 3), 0) * 255).astype(np.uint8)
    d = u8.astype(np.int16) - cv2.medianBlur(u8, min(k, 255))  # ink stands out from its local median
    noise = 3 * max(1.0, float(np.median(np.abs(d))) * 1.5)
    dark = float(np.clip(-d - noise, 0, None).sum())
    light = float(np.clip(d - noise, 0, None).sum())
    light_ink = light > dark  # chalk, a white pen on a dark canvas
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    ground = cv2.morphologyEx(small, cv2.MORPH_OPEN if light_ink else cv2.MORPH_CLOSE, kernel)  # strokes gone
    bg = cv2.GaussianBlur(ground, (0, 0), k / 4)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR) if f < 1 else bg
    if light_ink:  # contrast relative to the ground (light cancels), scaled so chalk on a typical board is ~1
        m = max(float(np.median(bg)), 0.05)
        ink = (work - bg) / np.maximum(bg, 0.05) * (m / (1 - m))
    else:
        ink = (bg - work) / np.maximum(bg, 0.02)
    ink = np.clip(ink, 0, 1).astype(np.float32)
    ink = cv2.GaussianBlur(ink, (3, 3), 0)  # paper grain and JPEG noise
    if float(ink.max()) < MIN_CONTRAST:
        raise ImageError(f"{name} shows no digit (it is one flat colour); write the digit darker or larger")
    return ink.astype(np.float32)


def stroke_width(mask: np.ndarray) -> float:
    """The mean width of the ink in a uint8 mask, in px: a band of width s has a mean distance-to-background of
    s/4. The image's border counts as background: a mask that is ink everywhere (a 1-bit checkerboard's
    working copy, a black strip) has no background pixel, and OpenCV's distance to "none" is a huge sentinel
    whose sum overflows to inf."""
    import cv2

    framed = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(framed, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return 4 * float(dist.sum(dtype=np.float64)) / max(1, int(mask.sum()))


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Ink strength → uint8 mask (1 = ink): Otsu's threshold (never below a floor), ruled lines taken out."""
    import cv2

    u8 = np.round(ink * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = max(otsu / 255, 0.3 * float(ink.max()), 0.08)
    mask = (ink > t).astype(np.uint8)
    return _remove_lines(mask)


def _remove_lines(mask: np.ndarray) -> np.ndarray:
    """Long, thin, straight near-horizontal lines (ruled paper) and near-vertical ones across the image (a margin)
    out of the mask; strokes crossing them are bridged again. Thin: at most a third of a stroke's width."""
    import cv2

    h, w = mask.shape
    stroke = stroke_width(mask)
    d = max(3, int(0.5 * stroke) // 2 * 2 + 1)
    thin = mask & ~cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))
    )
    flat = _flat_pieces(thin, stroke)
    if flat is not None:
        mask = mask & ~flat
    length = LINE * min(h, w)  # Hough on the thin ink only: lines, stroke rims; a fraction of the pixels
    if int(thin.sum()) < int(length):  # a line needs that many votes, one per pixel: none can be found
        return mask
    found = cv2.HoughLinesP(
        thin, 1, np.pi / 360, int(length), minLineLength=length, maxLineGap=max(3, w // 100)
    )
    if found is None:
        return mask
    lines = np.zeros_like(mask)
    thick = 1
    for x0, y0, x1, y1 in found.reshape(-1, 4):
        horizontal = abs(y1 - y0) <= 0.2 * abs(x1 - x0)
        vertical = abs(x1 - x0) <= 0.2 * abs(y1 - y0) and abs(y1 - y0) >= 0.6 * h
        if not (horizontal or vertical):
            continue
        across = _thickness(mask, (x0, y0, x1, y1), horizontal, round(stroke) + 2)
        if across <= max(2, 0.35 * stroke):
            thick = max(thick, across)
            cv2.line(lines, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=across + 2)
    if not lines.any():
        return mask
    kept = mask & (1 - lines)
    bridge = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, thick + 5))
    )
    return kept | (bridge & lines)


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a uint8 mask: (count with the background, labels, stats), as OpenCV's
    connectedComponentsWithStats; BBDT's decision tree does it in a third of the default's time here."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_BBDT)
    return n, labels, stats


def _flat_pieces(thin: np.ndarray, stroke: float) -> np.ndarray | None:
    """The pieces of ruling between strokes: thin components at least 6 times longer than thick, straight along
    one axis (a slope up to 0.3), thinner than a third of a stroke. As a 0/1 mask; None when there are none."""

    n, labels, stats = components(thin)
    x, y, w, h, area = (stats[1:, i].astype(np.float64) for i in range(5))
    long = np.maximum(w, h)
    across = area / np.maximum(long, 1)
    flat = (np.minimum(w, h) <= 0.3 * long + 4) & (long >= 6 * across) & (across <= max(2.0, 0.35 * stroke))
    flat &= long >= 20
    if not flat.any():
        return None
    pick = np.zeros(n, np.uint8)
    pick[1:][flat] = 1
    return pick[labels]


def _thickness(mask: np.ndarray, seg, horizontal: bool, reach: int) -> int:
    """Ink across the segment (within `reach` px of it), sampled along it: its thickness in px."""
    x0, y0, x1, y1 = map(int, seg)
    runs = []
    for t in np.linspace(0.05, 0.95, 15):
        x, y = round(x0 + t * (x1 - x0)), round(y0 + t * (y1 - y0))
        across = (
            mask[max(0, y - reach) : y + reach + 1, x]
            if horizontal
            else mask[y, max(0, x - reach) : x + reach + 1]
        )
        runs.append(int(across.sum()))
    return max(1, int(np.percentile(runs, 25)))  # where it crosses a digit the run is the digit's


def find_groups(
    mask: np.ndarray, multi: bool, name: str
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Ink mask → the digit (its components), or with `multi` the digits left to right, each as (uint8 mask
    inside its box, box (x0, y0, x1, y1))."""

    n, labels, stats = components(mask)
    comps = [_Comp(i, *stats[i]) for i in range(1, n)]
    h, w = mask.shape
    comps = [c for c in comps if not _paper_edge(c, w, h)]
    if not comps:
        raise ImageError(
            f"{name}: the only ink found runs into the image's edges; photograph the digit with some paper around it"
        )
    least = max(4.0, 0.03 * min(h, w))
    cores = [c for c in comps if c.h >= least and c.w <= 3 * c.h]  # digit-like: not a dash, not a speck
    if not cores:
        raise ImageError(f"{name} shows no digit-like mark (only specks or dashes); write the digit larger")
    fat = median([c.area / max(c.w, c.h) for c in cores])  # about two strokes' width
    cores = [c for c in cores if c.area / max(c.w, c.h) >= 0.25 * fat] or cores  # not a hair or a line
    inner = [c for c in cores if c.x > 0 and c.y > 0 and c.box[2] < w and c.box[3] < h]
    if inner:  # ink cut by the image's edge (a table, a shadow's rim) is not a digit when there are others
        cores = inner
        comps = [c for c in comps if c.x > 0 and c.y > 0 and c.box[2] < w and c.box[3] < h]
    if multi:
        tallest = max(c.h for c in cores)
        cores = [c for c in cores if c.h >= 0.45 * tallest]
        parts = _columns(cores)
        _attach(parts, [c for c in _on_the_line(cores, comps) if c not in cores], near=0.25)
        line = median([g.box[3] - g.box[1] for g in parts])
        parts = [p for g in parts for p in _split(g, g.crop(labels)[0].sum(0), line)]
    else:
        main = max(cores, key=lambda c: c.area)
        parts = [_Group([main], main.box)]
        _attach(parts, [c for c in comps if c is not main], near=0.3)
    return [c for c in (g.crop(labels) for g in parts) if c[0].any()]  # a split can leave an empty slice


class _Comp:
    def __init__(self, label, x, y, w, h, area):
        self.label, self.x, self.y, self.w, self.h, self.area = (
            int(label),
            int(x),
            int(y),
            int(w),
            int(h),
            int(area),
        )
        self.box = (self.x, self.y, self.x + self.w, self.y + self.h)


class _Group:
    """Components that make one digit, and the box they are cut to (a split group keeps only its columns)."""

    def __init__(self, comps, box):
        self.comps, self.box = list(comps), tuple(int(v) for v in box)

    def add(self, c):
        self.comps.append(c)
        b = self.box
        self.box = (min(b[0], c.x), min(b[1], c.y), max(b[2], c.box[2]), max(b[3], c.box[3]))

    def crop(self, labels):
        x0, y0, x1, y1 = self.box
        inside = labels[y0:y1, x0:x1]
        own = (
            (inside == self.comps[0].label)
            if len(self.comps) == 1
            else np.isin(inside, [c.label for c in self.comps])
        ).astype(np.uint8)
        import cv2

        x, y, w, h = cv2.boundingRect(own)  # of the nonzero pixels; (0, 0, 0, 0) when there are none
        if w == 0:
            return own, self.box
        return own[y : y + h, x : x + w], (x0 + x, y0 + y, x0 + x + w, y0 + y + h)


def _paper_edge(c: _Comp, w: int, h: int) -> bool:
    """Ink touching three borders, or running along more than 60 % of a border it touches: a paper or table edge,
    a frame, a shadow's rim — not a digit."""
    touch = [c.x == 0, c.y == 0, c.x + c.w == w, c.y + c.h == h]
    along = [c.h > 0.6 * h, c.w > 0.6 * w, c.h > 0.6 * h, c.w > 0.6 * w]
    return sum(touch) >= 3 or any(t and a for t, a in zip(touch, along))


def _attach(groups: list[_Group], rest: list[_Comp], near: float) -> None:
    """Pieces (a 5's flag, a 4's stroke) join the group they are closest to when within `near` × its size;
    specks (smaller than PIECE × the group's ink) and far marks are left out."""
    changed = True
    while changed:
        changed = False
        for c in list(rest):
            best, where = None, float("inf")
            for g in groups:
                x0, y0, x1, y1 = g.box
                gap = max(x0 - c.box[2], c.x - x1, y0 - c.box[3], c.y - y1, 0) / max(x1 - x0, y1 - y0)
                overlap = min(x1, c.box[2]) - max(x0, c.x)  # among touching groups, the one it overlaps most
                if (
                    gap <= near
                    and c.area >= PIECE * sum(k.area for k in g.comps)
                    and gap - 1e-6 * overlap < where
                ):
                    best, where = g, gap - 1e-6 * overlap
            if best is not None:
                best.add(c)
                rest.remove(c)
                changed = True


def _on_the_line(cores: list[_Comp], comps: list[_Comp]) -> list[_Comp]:
    """The components of the written line: every core, and smaller ones inside the cores' vertical band."""
    top = median([c.y for c in cores])
    bottom = median([c.box[3] for c in cores])
    slack = 0.25 * (bottom - top)
    ok = [c for c in comps if top - slack <= c.y + c.h / 2 <= bottom + slack]
    return [c for c in ok if c in cores or c.area >= PIECE * median([k.area for k in cores])]


def _columns(comps: list[_Comp]) -> list[_Group]:
    """Digit-tall components → groups by horizontal overlap (half the narrower one's width), left to right."""
    groups: list[_Group] = []
    for c in sorted(comps, key=lambda c: c.x + c.w / 2):
        for g in groups:
            overlap = min(g.box[2], c.box[2]) - max(g.box[0], c.x)
            if overlap >= 0.5 * min(g.box[2] - g.box[0], c.w):
                g.add(c)
                break
        else:
            groups.append(_Group([c], c.box))
    return sorted(groups, key=lambda g: g.box[0])


def _split(g: _Group, profile: np.ndarray, line: float) -> list[_Group]:
    """A group wider than a digit is (touching digits) cut into round(width / (1.05 × the line's height)) at the
    columns with the least ink near the even cuts. (A 0 is about as wide as tall; two touching 1s stay one.)"""
    x0, y0, x1, y1 = g.box
    k = round((x1 - x0) / (1.05 * max(line, y1 - y0)))
    if k < 2:
        return [g]
    step = (x1 - x0) / k
    cuts = [x0]
    for i in range(1, k):
        lo, hi = round(x0 + (i - 0.3) * step), round(x0 + (i + 0.3) * step)
        cuts.append(lo + int(np.argmin(profile[lo - x0 : hi - x0])))
    cuts.append(x1)
    return [_Group(g.comps, (a, y0, b, y1)) for a, b in zip(cuts, cuts[1:]) if b > a]
