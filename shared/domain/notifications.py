"""What a run tells its Sinks, and when: the vocabulary the engine and the notifier share.

The engine writes one ``sink_deliveries`` row per (run, Sink, event); the notifier
renders the event for the Sink and shows it to the Sink's ``condition`` as
``event``. Two events exist:

- ``run_finished``: the run ended (its result, its outputs); ``event_id`` is ''.
- ``approval_requested``: the run paused for a human's approval (``WaitingApproval``);
  ``event_id`` is the approval's id. Every Sink of the Workflow gets one; a Sink that
  should not hears it through its ``condition`` (``event == "run_finished"``).

Pure: no I/O. What this module must not do: decide who is told (the Workflow's
``sinks`` and their conditions do).
"""

from __future__ import annotations

import enum


class Event(enum.StrEnum):
    RUN_FINISHED = "run_finished"
    APPROVAL_REQUESTED = "approval_requested"


# The event_id of events that are about the run as a whole.
NO_ID = ""
