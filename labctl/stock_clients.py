"""What stock bluesky clients need of a tiled server holding labctl's runs.

bluesky-tiled-plugins' ``BlueskyRun.documents()`` asks the server for the run as
``application/json-seq``; a server answers that only when bluesky-tiled-plugins' exporter is
registered for the ``BlueskyRun`` spec, otherwise it answers 406. The embedded server registers it
(:func:`register_documents_exporter`, called by :class:`labctl.dataserver.DataServer`); a standalone
``tiled serve config`` takes :data:`TILED_CONFIG_MEDIA_TYPES` as its ``media_types`` section.
"""

from __future__ import annotations

DOCUMENTS_MEDIA_TYPE = "application/json-seq"
DOCUMENTS_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"

#: The ``media_types`` section of a tiled server configuration that serves ``run.documents()``.
TILED_CONFIG_MEDIA_TYPES = {"BlueskyRun": {DOCUMENTS_MEDIA_TYPE: DOCUMENTS_EXPORTER}}


def register_documents_exporter() -> None:
    """Let tiled servers built in this process (with the default registry) replay runs' documents.

    tiled's ``SimpleTiledServer`` takes no serialization registry of its own, so the exporter goes
    into tiled's default one, which every app built afterwards in this process uses. Idempotent.
    """
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    if DOCUMENTS_MEDIA_TYPE not in default_serialization_registry.media_types("BlueskyRun"):
        default_serialization_registry.register("BlueskyRun", DOCUMENTS_MEDIA_TYPE, json_seq_exporter)
