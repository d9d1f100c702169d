"""Multi-boundary consistency models: which timestep each step starts from and lands on.

The reverse model CDm (eq. 3) maps x_t to the lower boundary s_t^m of t's segment; the forward
model fCDm maps x_t to the upper boundary. A boundary set is written as in the paper and the
reference code: the reverse list holds the timesteps where decoding steps start (ascending,
e.g. [259, 519, 779, 999]) and the forward list the timesteps where encoding steps start (e.g.
[19, 259, 519, 779]). So

    decoding:  999 → 779 → 519 → 259 → 0      (0: the clean end, ᾱ = 1, a hard boundary)
    encoding:   19 → 259 → 519 → 779 → 999    (x_19: the image noised to the first forward step)

and a set is consistent when every interior boundary is shared: forward[1:] == reverse[:-1].
"""

from __future__ import annotations

from dataclasses import dataclass

from icd_bench.errors import ConfigError

#: The sets of the paper (Section 4, App. A) and of the public release (REFERENCE.md).
BOUNDARY_SETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # name: (reverse, forward)
    "4step-tau0.8": ((259, 519, 779, 999), (19, 259, 519, 779)),  # paper and release, SD1.5 editing
    "4step-tau0.7-paper": ((259, 519, 699, 999), (19, 259, 519, 699)),  # paper's τ = 0.7 list
    "4step-tau0.7": ((249, 499, 699, 999), (19, 249, 499, 699)),  # released τ = 0.7 pair (SDXL)
    "3step": ((339, 699, 999), (19, 339, 699)),  # paper and release, τ = 0.7
}


@dataclass(frozen=True)
class Boundaries:
    """A validated pair of reverse and forward boundary lists over ``num_train_timesteps``."""

    reverse: tuple[int, ...]
    forward: tuple[int, ...]
    num_train_timesteps: int = 1000

    def __post_init__(self):
        r, f, T = tuple(self.reverse), tuple(self.forward), self.num_train_timesteps
        object.__setattr__(self, "reverse", r)
        object.__setattr__(self, "forward", f)
        for name, xs in (("reverse", r), ("forward", f)):
            if not xs:
                raise ConfigError(f"{name} boundaries are empty")
            if any(not isinstance(x, int) for x in xs):
                raise ConfigError(f"{name} boundaries must be integers, got {list(xs)}")
            if list(xs) != sorted(set(xs)):
                raise ConfigError(f"{name} boundaries must be strictly increasing, got {list(xs)}")
            if xs[0] < 0 or xs[-1] >= T:
                raise ConfigError(f"{name} boundaries must lie in [0, {T}), got {list(xs)}")
        if len(r) != len(f):
            raise ConfigError(f"forward and reverse need the same number of steps: {list(f)} vs {list(r)}")
        if f[1:] != r[:-1]:
            raise ConfigError(f"forward and reverse boundaries are not consistent: the forward steps after "
                              f"the first ({list(f[1:])}) must equal the reverse steps before the last "
                              f"({list(r[:-1])})")
        if f[0] >= r[0]:
            raise ConfigError(f"the first forward step ({f[0]}) must lie below the first reverse boundary "
                              f"({r[0]})")

    @classmethod
    def named(cls, name: str) -> Boundaries:
        if name not in BOUNDARY_SETS:
            raise ConfigError(f"unknown boundary set {name!r}; known: {', '.join(BOUNDARY_SETS)}")
        reverse, forward = BOUNDARY_SETS[name]
        return cls(reverse, forward)

    @property
    def steps(self) -> int:
        return len(self.reverse)

    def reverse_steps(self) -> list[tuple[int, int]]:
        """(t, s_t^m) for decoding, highest t first; the last lands on 0 (the clean end)."""
        starts = list(reversed(self.reverse))
        return list(zip(starts, starts[1:] + [0], strict=True))

    def forward_steps(self) -> list[tuple[int, int]]:
        """(t, upper boundary) for encoding, lowest t first; the last lands on T − 1."""
        ends = list(self.forward[1:]) + [self.num_train_timesteps - 1]
        return list(zip(self.forward, ends, strict=True))

    @property
    def start_timestep(self) -> int:
        """Encoding starts from the image noised to this timestep."""
        return self.forward[0]

    def reverse_boundary(self, t: int) -> int:
        """s_t^m of the reverse model for any t of the solver grid: the segment's lower end."""
        lower = [b for b in self.reverse if b < t]
        return lower[-1] if lower else 0

    def forward_boundary(self, t: int) -> int:
        """The forward model's target for any t: its segment's upper end (T − 1 in the last)."""
        upper = [b for b in self.reverse if b >= t]
        return upper[0] if upper else self.num_train_timesteps - 1


def check_boundary_choice(name: str, reverse=None, forward=None) -> None:
    """The parameters' own check (ValueError): a known named set, or both custom lists."""
    if (reverse is None) != (forward is None):
        raise ValueError("give both reverse_boundaries and forward_boundaries, or neither")
    if reverse is None and name not in BOUNDARY_SETS:
        raise ValueError(f"unknown boundary set {name!r}; known: {', '.join(BOUNDARY_SETS)}")


def choose_boundaries(name: str, reverse=None, forward=None) -> Boundaries:
    """The custom pair when given (validated), else the named set."""
    if reverse is not None:
        return Boundaries(tuple(reverse), tuple(forward or ()))
    return Boundaries.named(name)
