"""Shared fixtures of the network tests: the simulator's networks and traffic."""

import pytest

from simulator.topology import Topology, load_topology
from simulator.traffic import Traffic, load_abilene, sine_traffic


@pytest.fixture(scope="session")
def abilene() -> Topology:
    return load_topology("abilene")


@pytest.fixture(scope="session")
def abilene_traffic() -> Traffic:
    return load_abilene()


@pytest.fixture(scope="session")
def nobel() -> Topology:
    return load_topology("nobel-eu")


@pytest.fixture(scope="session")
def nobel_traffic(nobel: Topology) -> Traffic:
    return sine_traffic(nobel, n_steps=2 * 288, step_seconds=300, seed=7)
