"""Metric capture: from a trainer's output line or report call to ``metrics.jsonl`` and summary.

``ingest`` (the supervisor's incremental loop), ``parsers`` (one output line to values),
``line_split``/``steps``/``metric_names``/``capture_noise`` (the parser's helpers: lines,
step inference, key names, what is not metrics), ``history`` (the ``metrics.jsonl`` format
and its readers), ``summary`` (the digest in ``summary.json``), ``health`` (nan, stall, OOM
flags), ``reporting`` (``runner.report``, the training-side helper) and ``reingest``
(rebuilding the history from ``output.log``). Kept empty: ``import runner`` must stay cheap.
"""
