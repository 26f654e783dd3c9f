"""A queue per rig on bluesky-queueserver: ``labctl queue serve``, ``labctl submit``, ``labctl queue ...``.

- :mod:`labctl.queue.adapter`: the lab's plans restated for the queue (floats with SI bounds from
  their units and the lab's limits; devices and the cell's quantities filled in by the worker).
- :mod:`labctl.queue.startup`: the RE Worker's startup module (devices, plans, RunEngine, storage).
- :mod:`labctl.queue.manager`: the files the RE Manager reads, starting it, and the client calls.
- :mod:`labctl.queue.sequences`: a failed step stops the rest of its own file, not the files behind it.
"""
