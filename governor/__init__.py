"""Backprop governor: decides when and where a run may start.

Queued runs hold no process. One dispatcher per registry and machine
(:mod:`governor.dispatcher`, started on demand, gone when idle) and every command that
changes the queue run admission rounds (:mod:`governor.admit_round`): the queue in order
(:mod:`runner.tickets`), the start gate (run dependencies), then a pure decision
(:mod:`governor.policy`; its inputs and output in :mod:`governor.requests`) over a resource
snapshot (:mod:`governor.probes`), the token bucket (:mod:`governor.bucket`) and the leases
with their VRAM reservations (:mod:`governor.reservations`), all under short locks
(:mod:`governor.store`: ``$BACKPROP_HOME/governor/``). Limits come from ``[governor]``
(:mod:`governor.settings`); learned VRAM peaks from :mod:`governor.learn`; framework memory
settings from :mod:`governor.frameworks`; GPU heat and peaks of running runs are watched by
the dispatcher (:mod:`governor.watch`); ``backprop status`` is :mod:`governor.status`. Tests
and screenshots use :class:`governor.fake_nvml.FakeNvml`.
"""
