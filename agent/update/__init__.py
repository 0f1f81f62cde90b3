"""Over-the-air model updates: the pure state machine and plan, and the I/O around them.

- :mod:`agent.update.machine`: states, events, the transition table and the resume table (pure).
- :mod:`agent.update.plan`: what a desired state asks of this device (pure).
- :mod:`agent.update.journal`: the atomically persisted journal.
- :mod:`agent.update.download`: resumable downloads; :mod:`agent.update.verify`: the verifier seam.
- :mod:`agent.update.slots`: A/B slots and safe bundle extraction.
- :mod:`agent.update.selftest`: the post-load self-test.
- :mod:`agent.update.reconciler`: the shell that drives one update; :mod:`agent.update.worker`:
  the thread that feeds it.
"""

from agent.update.download import Downloader, DownloadLimits
from agent.update.journal import InstalledModel, Journal, JournalStore
from agent.update.machine import Event, InvalidTransition, Resume, next_state, resume_action
from agent.update.plan import Action, Plan, decide
from agent.update.reconciler import Outcome, Reconciler
from agent.update.slots import SlotStore
from agent.update.verify import Sha256Verifier, Verifier
from agent.update.worker import UpdateWorker

__all__ = [
    "Action",
    "DownloadLimits",
    "Downloader",
    "Event",
    "InstalledModel",
    "InvalidTransition",
    "Journal",
    "JournalStore",
    "Outcome",
    "Plan",
    "Reconciler",
    "Resume",
    "Sha256Verifier",
    "SlotStore",
    "UpdateWorker",
    "Verifier",
    "decide",
    "next_state",
    "resume_action",
]
