"""The network simulator: topologies, traffic, routing, failures and link loads.

Modules: :mod:`simulator.topology` (topohub and SNDlib XML networks),
:mod:`simulator.traffic` (sum-of-sines demands; replay of CSV traffic matrices,
with the Abilene 2004 data shipped in ``simulator/data/abilene``),
:mod:`simulator.routing` (shortest paths, ECMP, link loads),
:mod:`simulator.failures` (scenarios, shifts, the offline experiment's arrays) and
:mod:`simulator.network` (a step iterator for a live feeder).
"""
