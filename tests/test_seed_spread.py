"""benchmarks/seed_spread.py's split of the seed variance, on tables drawn with known parts."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("seed_spread",
                                              Path(__file__).parents[1] / "benchmarks" / "seed_spread.py")
seed_spread = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(seed_spread)


def drawn_table(seeds, identities, global_std, interaction_std, rng):
    level = rng.normal(0, global_std, (seeds, 1))  # a seed's model, whatever the identity
    identity = rng.normal(0, 5.0, (1, identities))  # easy and hard identities, the same for every model
    return 20 + level + identity + rng.normal(0, interaction_std, (seeds, identities))


def test_the_parts_are_found_where_they_were_drawn():
    rng = np.random.default_rng(0)
    split = seed_spread.split_variance(drawn_table(2000, 50, 1.0, 3.0, rng))
    assert split["var_global"] == pytest.approx(1.0, abs=0.1)
    assert split["var_interaction"] == pytest.approx(9.0 / 50, abs=0.01)
    assert split["var_global"] + split["var_interaction"] == pytest.approx(split["var_total"], abs=2e-3)
    # more identities shrink only the interaction's part
    assert split["std_if_4x_identities"] == pytest.approx(np.sqrt(1.0 + 9.0 / 200), abs=0.06)


def test_without_a_global_part_more_identities_shrink_the_whole_spread():
    for seed in range(20):  # five seeds, as the benchmark has: the interaction's estimate may exceed the whole
        split = seed_spread.split_variance(drawn_table(5, 150, 0.0, 3.0, np.random.default_rng(seed)))
        assert 0 <= split["var_interaction"] <= split["var_total"]
        assert split["var_global"] >= 0
        assert split["std_if_2x_identities"] <= split["std"] + 1e-9
