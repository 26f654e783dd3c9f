"""The RE Worker's startup module for one lab (``start-re-manager --startup-module labctl.queue.startup``).

Everything in this module's namespace is what the queue offers: the lab's plans restated for
queueserver (:func:`labctl.queue.adapter.queue_plans`), the lab's devices, ``RE`` and
:func:`cell_state`. The lab file comes from ``$LABCTL_QUEUE_LAB`` (``labctl queue serve`` sets it),
the data directory from ``$LABCTL_QUEUE_DATA_DIR``, and on a simulated lab ``$LABCTL_QUEUE_PACE``
(simulated seconds per wall second; default as fast as possible). The simulated cell is the
default one (as in ``labctl shell``): a queue serves a rig whatever cell is in it.

Storage is opened as the writer of the data directory; runs go to the lab's data server
(``storage.uri``), the journal on local disk first.
"""

import os as _os
from multiprocessing import util as _mp_util
from pathlib import Path as _Path

from labctl.queue.worker_env import build as _build

_env = _build(_Path(_os.environ["LABCTL_QUEUE_LAB"]), _Path(_os.environ["LABCTL_QUEUE_DATA_DIR"]),
              float(_os.environ["LABCTL_QUEUE_PACE"]) if _os.environ.get("LABCTL_QUEUE_PACE") else None)
# The worker process ends with multiprocessing's exit function, which runs these finalizers
# (atexit is not run): storage delivers what it holds, the simulators' sockets close.
_mp_util.Finalize(None, _env.close, exitpriority=10)

RE = _env.RE
globals().update(_env.devices)
globals().update(_env.plans)
cell_state = _env.cell_state
