"""Backprop governor: decides when and where a run may start.

There is no governor process. Each run's supervisor asks its own :class:`GovernorHook`
(:mod:`governor.hook`), which probes the machine (:mod:`governor.probes`), takes the shared
state's lock (:mod:`governor.store`: ``$BACKPROP_HOME/governor/``), and decides with a pure
function (:mod:`governor.policy`; its inputs and output in :mod:`governor.requests`) over
the token bucket (:mod:`governor.bucket`), the leases and their VRAM reservations
(:mod:`governor.reservations`) and the queue (:mod:`governor.queue`). Limits come from
``[governor]`` in ``backprop.toml`` (:mod:`governor.settings`); learned VRAM peaks from
:mod:`governor.learn`; framework memory settings from :mod:`governor.frameworks`; the running
run's GPU watch from :mod:`governor.watch`; ``backprop status`` from :mod:`governor.status`.
Tests and screenshots use :class:`governor.fake_nvml.FakeNvml`.
"""
