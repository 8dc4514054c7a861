"""Run control: what users do to runs, the same for the CLI and the TUI.

:mod:`.submission` records new runs (one :class:`.submission.SubmitOptions` for all their
fields), :mod:`.spawn` starts a supervisor, :mod:`.run_actions` stops, pauses, continues and
starts now, :mod:`.reruns` resumes, forks and reruns, :mod:`.removal` removes, :mod:`.bundle`
exports and imports, :mod:`.sweeps` expands sweeps, :mod:`.readout` reads events and dumps
JSON; :mod:`.errors` holds :class:`~.errors.LifecycleError`.
"""
