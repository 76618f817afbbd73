"""The network simulator: topologies, traffic, failures and link loads.

Modules: :mod:`simulator.topology` (topohub and SNDlib XML networks, as cables
over a :class:`network.topology.Topology`),
:mod:`simulator.traffic` (sum-of-sines demands; replay of CSV traffic matrices,
with the Abilene 2004 data shipped in ``simulator/data/abilene``),
:mod:`simulator.failures` (scenarios, shifts, the offline experiment's arrays) and
:mod:`simulator.network` (a step iterator for a live feeder). Routing (shortest
paths, ECMP, link loads) is :mod:`network.routing`'s.
"""
