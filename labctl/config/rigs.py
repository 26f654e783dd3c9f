"""The lab file's sections for a lab of many rigs: ``queue`` (this rig's queue) and ``alerts``.

Both optional. Kept apart from :mod:`labctl.config` (which holds the instruments) and free of its
imports, so the lab model only names them. Example (``configs/lab-two-rigs/rig-a.yaml``)::

    queue:
      address: tcp://127.0.0.1:60615     # the RE Manager's 0MQ control socket
      redis: 127.0.0.1:6379              # where the queue is kept
      members: [alice, bob]              # who may add items (group primary); others read only
    alerts:
      urls: {lab-chat: "ntfy://ntfy.sh/our-lab", night: "mailto://user:pass@example.org"}
      routes: {short: [lab-chat, night], no_data: [night]}
      no_data_after: 20 min
      server_behind_after: 10 min       # a run not yet on the data server this long after its end
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl.core.units import Unit

ZMQ_ADDRESS = re.compile(r"tcp://[A-Za-z0-9.*-]+:[0-9]{1,5}")
REDIS_ADDRESS = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[0-9]{1,2})?")
# The events labctl sends (labctl.alerts); a route names URLs for each.
EVENTS = ("short", "guard_pause", "guard_resume", "guard_end", "instrument_fault", "experiment_end",
          "server_behind", "no_data")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class QueueSection(_Section):
    """This rig's queue (bluesky-queueserver): where its RE Manager listens and keeps its queue."""

    address: str = Field("tcp://127.0.0.1:60615", description="the RE Manager's 0MQ control address, tcp://host:port")
    info_address: str = Field("tcp://127.0.0.1:60625", description="its 0MQ info (console) address, tcp://host:port")
    redis: str = Field("localhost:6379", description="the Redis server holding the queue: host[:port][/db]")
    members: list[str] = Field(default_factory=list,
                               description="lab members who may add items; empty: anyone who reaches the queue")

    @model_validator(mode="after")
    def _check(self):
        for name in ("address", "info_address"):
            if not ZMQ_ADDRESS.fullmatch(getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)!r} is not tcp://host:port")
        if not REDIS_ADDRESS.fullmatch(self.redis):
            raise ValueError(f"redis: {self.redis!r} is not host[:port][/db]")
        return self


class AlertsSection(_Section):
    """Where alerts go: apprise URLs by a name, and which events go to which names."""

    urls: dict[str, str] = Field(description="a name for each apprise URL (ntfy://, mailto://, slack://, json://...)")
    routes: dict[Literal[EVENTS], list[str]] = Field(
        default_factory=dict, description="event -> names of urls; an event not listed goes to every URL")
    no_data_after: Annotated[float, Unit("min", gt=0, le=24 * 60)] = 1200.0
    server_behind_after: Annotated[float, Unit("min", gt=0, le=24 * 60)] = 600.0  # runs not yet on the data server
    retries: int = Field(5, ge=0, le=100, description="attempts after a failed send, with growing waits")

    @model_validator(mode="after")
    def _check(self):
        unknown = sorted({name for names in self.routes.values() for name in names} - set(self.urls))
        if unknown:
            raise ValueError(f"routes name {', '.join(map(repr, unknown))}, not among urls ({', '.join(self.urls)})")
        return self

    def targets(self, event: str) -> list[str]:
        """Return the URLs ``event`` goes to."""
        return [self.urls[name] for name in self.routes.get(event, list(self.urls))]
