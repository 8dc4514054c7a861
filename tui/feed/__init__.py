"""The feed: run files in, immutable snapshots out; Textual-free, the only reader of run files.

- ``snapshot``: the frozen values widgets draw (``Snapshot``, ``RunRow``, ``OutputView``...).
- ``tails``: incremental readers of ``metrics.jsonl`` and ``output.log`` by byte offset.
- ``rows``: a run's row from its registry view and metric digest.
- ``reader``: the runs' state, the reading of marked files, snapshots patched by what changed.
- ``producer``: the thread: file events (watchfiles), pacing, GPU and host probes.
- ``poll_watcher``: the watcher on a network file system (targeted polling, no inotify).
"""
