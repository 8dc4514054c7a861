"""The per-run supervisor, split by concern (``python -m runner.supervisor.main``).

:mod:`.main` parses the command line, takes the lock and claims the attempt (:mod:`.claim`);
:class:`.loop.Supervisor` runs it, built in layers: :mod:`.records` (state and events),
:mod:`.escalate` (signals, control requests, the stop sequence), :mod:`.exit_record` (the end,
recorded truthfully), :mod:`.start` (starting the trainer). Helpers: :mod:`.inbox` (control
requests), :mod:`.output_cap`, :mod:`.recordkeeper`, :mod:`.exits` (naming an end),
:mod:`.proctree`, :mod:`.runcgroup`, :mod:`.members` and :mod:`.adopt` (re-adopting orphans).
"""
