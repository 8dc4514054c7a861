"""The environment variables Backprop reads or sets, spelled once.

Set by the supervisor for the trainer (``RUN_ID``, ``RUN_DIR``, ``CHECKPOINT_DIR``,
``ATTEMPT``, ``HOME``, ``RESUME_FROM``), by the notify hook (``EVENT`` ... ``MESSAGE``), by the
dependency gate (``AFTER_PREFIX`` + name), or read from the user (``HOME``, ``CONFIG``,
``GOVERNOR_DIR``, ``FAKE_NVML``, ``POLL``, ``HEARTBEAT_S``). This module imports nothing:
trainers load it.
"""

from __future__ import annotations

PREFIX = "BACKPROP_"  # every name below starts so
HOME = "BACKPROP_HOME"
CONFIG = "BACKPROP_CONFIG"
RUN_ID = "BACKPROP_RUN_ID"
RUN_DIR = "BACKPROP_RUN_DIR"
RUN_NAME = "BACKPROP_RUN_NAME"
CHECKPOINT_DIR = "BACKPROP_CHECKPOINT_DIR"
RESUME_FROM = "BACKPROP_RESUME_FROM"
ATTEMPT = "BACKPROP_ATTEMPT"
GROUP = "BACKPROP_GROUP"
EVENT = "BACKPROP_EVENT"
STATUS = "BACKPROP_STATUS"
REASON = "BACKPROP_REASON"
STEP = "BACKPROP_STEP"
MESSAGE = "BACKPROP_MESSAGE"
AFTER_PREFIX = "BACKPROP_AFTER_"
GOVERNOR_DIR = "BACKPROP_GOVERNOR_DIR"
FAKE_NVML = "BACKPROP_FAKE_NVML"
# Test only: ``before``/``after`` makes a submitter SIGKILL itself at that point of an engine's
# submit call (crash-safe submission is tested by really dying there).
FAULT_SUBMIT = "BACKPROP_FAULT_SUBMIT"
POLL = "BACKPROP_POLL"  # 1: treat the registry as shared storage (poll, no cross-host locks)
HEARTBEAT_S = "BACKPROP_HEARTBEAT_S"  # a remote supervisor's heartbeat interval (tests)
