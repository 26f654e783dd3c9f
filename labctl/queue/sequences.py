"""A failed step stops the rest of its own file, not the files queued behind it.

``labctl submit`` gives every item of one experiment file the same ``sequence_id`` in its
metadata. The queue runs with queueserver's ``ignore_failures`` mode (:func:`labctl.queue.manager.
queue_mode`), so a failed item does not stop the queue; instead the worker remembers the failed
sequence (in ``DATA_DIR/queue/failed-sequences.jsonl``, so a restarted worker remembers it too)
and refuses each later item of that sequence with :class:`StepSkipped`, which ends it at once,
before it touches an instrument, with a message naming the step that failed. The next file's
items run as they would have.

A step fails as ``labctl run`` sees it fail: the plan raised (a device fault, a refused call), or
a run of it stopped with exit status ``fail`` without raising (plating at the voltage limit);
then :class:`StepFailed` marks the item failed in the queue's history too. A stop, an abort or a
halt asked for by someone is not a failure of the file: queueserver stops the queue then.
"""

from __future__ import annotations

import json
from pathlib import Path

from labctl.core.errors import LabctlError

FAILED_FILE = "failed-sequences.jsonl"


class StepSkipped(LabctlError):
    """An item of a sequence (one submitted file) whose earlier step failed: it does not run."""


class StepFailed(LabctlError):
    """A step whose run ended as failed without raising (the stop document says why)."""


class Sequences:
    """The failed sequences of one queue, read from and appended to ``path``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.failed: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self.failed[record["sequence_id"]] = record
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: the others still count

    def record(self, meta: dict, why: str) -> None:
        """Remember that the step of ``meta`` failed, so the rest of its sequence is skipped."""
        record = {"sequence_id": meta["sequence_id"], "experiment_file": meta.get("experiment_file"),
                  "step_index": meta.get("step_index"), "step_label": meta.get("step_label"), "why": why}
        self.failed.setdefault(record["sequence_id"], record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")

    def refuse_if_failed(self, meta: dict) -> None:
        """Raise :class:`StepSkipped` if an earlier step of ``meta``'s sequence failed."""
        failed = self.failed.get(meta.get("sequence_id"))
        if failed is not None:
            index = failed.get("step_index")
            step = f"step {index + 1} ({failed.get('step_label')})" if isinstance(index, int) else "an earlier step"
            raise StepSkipped(f"skipped: {step} of {failed.get('experiment_file') or 'its file'} failed: {failed['why']}")

    def run(self, RE, start):
        """Run the plan ``start()`` returns as one step of the item ``RE`` runs (a generator, for ``yield from``).

        ``RE.item_meta`` is the item's metadata (:class:`labctl.queue.worker_env.QueueRunEngine`).
        An item without a ``sequence_id`` (added by another client) runs as it is.
        """
        from bluesky.utils import RunEngineControlException

        meta = dict(getattr(RE, "item_meta", None) or {})
        if meta.get("sequence_id") is None:
            return (yield from start())
        self.refuse_if_failed(meta)
        stops: list[dict] = []
        token = RE.subscribe(lambda name, doc: stops.append(doc), "stop")
        try:
            result = yield from start()
        except RunEngineControlException:  # stop or abort, asked for: the queue stops, the file is not failed
            raise
        except Exception as error:
            self.record(meta, f"{type(error).__name__}: {error}")
            raise
        finally:
            RE.unsubscribe(token)
        failed = [doc for doc in stops if doc.get("exit_status") == "fail"]
        if failed:
            why = failed[-1].get("reason") or "its run ended as failed"
            self.record(meta, why)
            raise StepFailed(f"run ended as failed: {why}")
        return result
