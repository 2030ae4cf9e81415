"""Checks of a drawn figure that a reader would make: no text cut by the figure's edge, no two texts on top of
each other, no legend over data.

Each check renders the figure (Agg) and returns a list of readable faults (empty: none), so a test can assert
on it and print what is wrong.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

#: Pixels a text may reach past the figure's edge or into another text (antialiasing).
SLACK = 1.0


def _renderer(fig: Figure):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _tick_texts(fig: Figure) -> list[Text]:
    """The tick labels matplotlib draws: visible, non-empty, at a tick inside the axis' view."""
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = hi - lo
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is None or not (lo - 1e-9 * abs(span) <= loc <= hi + 1e-9 * abs(span)):
                    continue
                for lab in (tick.label1, tick.label2):
                    if lab.get_visible() and lab.get_text():
                        out.append(lab)
    return out


def drawn_texts(fig: Figure) -> list[Text]:
    """Every text a reader sees: tick labels, axis labels, titles, legends, annotations, the suptitle."""
    texts = _tick_texts(fig)
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks() for t in (tick.label1, tick.label2)}
    for t in fig.findobj(Text):
        if id(t) in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        texts.append(t)
    return texts


def _name(t: Text) -> str:
    return repr(t.get_text()[:60])


def texts_outside(fig: Figure, renderer=None) -> list[str]:
    """Texts that reach past the figure's edge (the saved image cuts them)."""
    r = renderer or _renderer(fig)
    box = fig.bbox
    faults = []
    for t in drawn_texts(fig):
        bb = t.get_window_extent(r)
        if bb.x0 < box.x0 - SLACK or bb.y0 < box.y0 - SLACK or bb.x1 > box.x1 + SLACK or bb.y1 > box.y1 + SLACK:
            faults.append(f"text {_name(t)} at {np.round(bb.extents, 1).tolist()} is outside the figure "
                          f"{np.round(box.extents, 1).tolist()}")
    return faults


def texts_overlapping(fig: Figure, renderer=None) -> list[str]:
    """Pairs of texts whose boxes overlap (by more than :data:`SLACK` pixels each way)."""
    r = renderer or _renderer(fig)
    texts = drawn_texts(fig)
    boxes = [t.get_window_extent(r) for t in texts]
    faults = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > SLACK and h > SLACK:
                faults.append(f"texts {_name(texts[i])} and {_name(texts[j])} overlap")
    return faults


def _data_points(fig: Figure) -> list[tuple[str, np.ndarray]]:
    """Display coordinates of every drawn data vertex: lines and markers of every axes (legend handles are not
    the axes' lines)."""
    out = []
    for ax in fig.axes:
        clip = ax.bbox
        for line in ax.get_lines():
            if not line.get_visible():
                continue
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            xy = xy[np.isfinite(xy).all(axis=1)]
            if not len(xy):
                continue
            pts = line.get_transform().transform(xy)
            if line.get_clip_on():
                pts = pts[[clip.contains(*p) for p in pts]]
            out.append((line.get_label() or "line", pts))
        for coll in ax.collections:
            for seg in getattr(coll, "get_segments", lambda: [])():
                seg = np.asarray(seg, float)
                seg = seg[np.isfinite(seg).all(axis=1)] if seg.ndim == 2 else seg
                if len(seg):
                    out.append(("error bar", coll.get_transform().transform(seg)))
    return out


def legends_covering_data(fig: Figure, renderer=None) -> list[str]:
    """Legends (of an axes or the figure) whose box contains a data vertex of any axes."""
    r = renderer or _renderer(fig)
    legends: list[Legend] = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    faults = []
    points = _data_points(fig)
    for leg in legends:
        bb: Bbox = leg.get_window_extent(r)
        for name, pts in points:
            inside = (pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1) & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1)
            if inside.any():
                texts = [t.get_text() for t in leg.get_texts()][:3]
                faults.append(f"legend {texts} covers {int(inside.sum())} points of {name!r}")
    return faults


def layout_faults(fig: Figure) -> list[str]:
    """All of the above (the figure rendered once)."""
    r = _renderer(fig)
    return texts_outside(fig, r) + texts_overlapping(fig, r) + legends_covering_data(fig, r)

