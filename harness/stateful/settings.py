"""How hard the state machines search, per Hypothesis profile (``HYPOTHESIS_PROFILE``).

Every step of a machine is a real round trip to a broker, so the budgets are counted in
examples (fresh topics and groups each) and steps per example, chosen per profile:

| profile | examples | steps per example | for |
|---|---|---|---|
| ``dev`` | 10 | 20 | a quick local run |
| ``ci`` | 5 | 15 | the project's CI: short, explicit |
| ``nightly`` | 200 | 50 | long searches |

`kconform conform` uses its own ``--examples`` / ``--steps`` (defaults from the profile).
"""

from __future__ import annotations

import os

import attrs
from hypothesis import HealthCheck, Phase, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"


@attrs.frozen
class Budget:
    examples: int
    steps: int


BUDGETS: dict[str, Budget] = {
    "dev": Budget(10, 20),
    "ci": Budget(5, 15),
    "nightly": Budget(200, 50),
}
DEFAULT_PROFILE = "ci"


def budget(profile: str | None = None) -> Budget:
    """The budget of ``profile`` (default: ``$HYPOTHESIS_PROFILE``, else ``ci``)."""
    name = profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    return BUDGETS.get(name, BUDGETS[DEFAULT_PROFILE])


def machine_settings(examples: int | None = None, steps: int | None = None,
                     profile: str | None = None, database: bool = True) -> settings:
    """Hypothesis settings for a machine over real I/O: no deadline (network latency is not
    the property under test), no example database when ``database`` is false (the runner
    replays from seeds instead)."""
    b = budget(profile)
    extra = {} if database else {"database": None}
    return settings(
        max_examples=examples if examples is not None else b.examples,
        stateful_step_count=steps if steps is not None else b.steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        **extra,  # type: ignore[arg-type]
    )


def register_profiles(override: bool = False) -> None:
    """Register Hypothesis profiles ``dev``, ``ci`` and ``nightly`` (for property tests that
    are not state machines); unless ``override``, keep those that exist already (a user's
    conftest may have its own). Hypothesis itself registers a ``ci`` profile (derandomized, no
    database): kconform's own tests override it, so that they explore and HypoFuzz can fuzz
    them."""
    defaults = {
        "dev": settings(max_examples=50, deadline=None),
        "ci": settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
        "nightly": settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
    }
    for name, profile in defaults.items():
        if not override:
            try:
                settings.get_profile(name)
                continue
            except Exception:  # noqa: BLE001 - InvalidArgument when the profile does not exist
                pass
        settings.register_profile(name, profile)
