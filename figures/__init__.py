"""The figure set of MODEL.md §6.

- :mod:`figures.specs`: the figures as data (which sweeps feed which panel);
- :mod:`figures.compute`: the tables behind them, computed point by point with a cache (:func:`make`: compute
  and draw a set of figures; ``paper_figs.py`` parses its command line and calls it);
- :mod:`figures.panels`: the four figures drawn from the tables, with :mod:`figures.plotting`'s helpers.
"""

from figures.compute import make

__all__ = ["make"]
