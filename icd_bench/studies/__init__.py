"""Experiments built from the runner, the metrics and the reports: each composes those pieces and
adds no algorithm of its own. ``reproduce``: a declarative suite of runs → one paper table."""
