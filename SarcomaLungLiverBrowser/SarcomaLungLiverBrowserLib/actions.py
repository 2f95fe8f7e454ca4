"""What happens when a user action (open, load, check, export) succeeds, is cancelled or fails.

The module's widget runs every button through :class:`ActionRunner`, so the rules live here, in
Qt-free code the tests reach, not in Qt slots:

- ``slicer.util.tryWithErrorDisplay`` shows its message box and then *re-raises*; a slot built on it
  ends in a traceback and skips the lines after the failing block. The runner catches instead and hands
  the widget one message to show.
- Cancel (:class:`~SarcomaLungLiverBrowserLib.errors.LoadCancelled`) is not an error: no message.
- Nothing is remembered on failure: ``remember`` runs only after the work succeeded (a folder is saved
  to the settings only once it has opened, so a bad folder is not retried at every start).
- Slicer's progress dialog is not modal; ``processEvents`` lets buttons and shortcuts start a second
  action inside the first. The runner refuses nested actions while one is running.
"""
from __future__ import annotations

import enum
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Optional, TypeVar

from .errors import DataError, LoadCancelled
from .text import spell_out_undecodable

__all__ = ["Outcome", "ActionResult", "ActionRunner", "failure_text", "OUTPUT_FOLDER_NAME", "output_folder"]

#: Where reports and corrections go when the user has not chosen a folder: beside the review store,
#: which is beside the collection (or wherever the user put the store for a read-only collection).
OUTPUT_FOLDER_NAME = "SarcomaLungLiverBrowser output"

T = TypeVar("T")


class Outcome(enum.Enum):
    """How a user action ended."""

    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    #: Refused because another action was still running (the widget's controls are disabled then).
    BUSY = "busy"


@dataclass(frozen=True)
class ActionResult(Generic[T]):
    """The end of one user action: its value, or the one message to show the user."""

    outcome: Outcome
    value: Optional[T] = None
    #: One clear sentence for the user (empty when done or cancelled).
    message: str = ""
    #: The traceback, for the message box's details and the log.
    details: str = ""

    @property
    def done(self) -> bool:
        return self.outcome is Outcome.DONE


def failure_text(failure_message: str, error: BaseException) -> str:
    """The message for a failed action: what failed, then why (data errors already name their file).

    A byte of a file name that is not UTF-8 is spelled out (text.py): Qt cannot show a lone surrogate.
    """
    if isinstance(error, DataError):
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return spell_out_undecodable(f"{failure_message}\n\n{reason}")


class ActionRunner:
    """Runs one user action at a time and turns its end into an :class:`ActionResult`."""

    def __init__(self, log: Optional[logging.Logger] = None) -> None:
        self.running: Optional[str] = None
        self._log = log or logging.getLogger("SarcomaLungLiverBrowser")

    @property
    def busy(self) -> bool:
        return self.running is not None

    def run(self, title: str, failure_message: str, work: Callable[[], T],
            remember: Optional[Callable[[T], None]] = None) -> ActionResult[T]:
        """Run ``work``; on success call ``remember(value)``; never raises (except KeyboardInterrupt).

        :param title: what the action is called (shown if a second action is refused).
        :param failure_message: the first sentence of the message when ``work`` raises.
        :param remember: saves what should outlive the action (settings), only after success.
        """
        if self.running is not None:
            return ActionResult(Outcome.BUSY, message=f"Wait until '{self.running}' has finished.")
        self.running = title
        try:
            value = work()
            if remember is not None:
                remember(value)
            return ActionResult(Outcome.DONE, value)
        except LoadCancelled:
            self._log.info(f"{title}: cancelled")
            return ActionResult(Outcome.CANCELLED)
        except Exception as error:
            details = spell_out_undecodable(traceback.format_exc())
            self._log.error(f"{title} failed:\n{details}")
            return ActionResult(Outcome.FAILED, message=failure_text(failure_message, error), details=details)
        finally:
            self.running = None


def output_folder(chosen: Optional[str], review_store_path: Path) -> Path:
    """The output folder the user chose, else ``<review store's folder>/SarcomaLungLiverBrowser output``.

    ``chosen`` is empty or ``"."`` when the user never chose one: that is what Qt's directory button
    starts with, i.e. Slicer's working directory, which is never the right place for a report.
    """
    if chosen and str(chosen).strip() not in ("", "."):
        return Path(chosen)
    return Path(review_store_path).parent / OUTPUT_FOLDER_NAME
