"""A layer whose backend fails raises LayerError, with the backend's own error as cause."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from chanlite import LayerError, get_layer
from chanlite.layers import BaseChannelLayer

logger = logging.getLogger("thumbnails")


async def queue_thumbnail(layer: BaseChannelLayer, image_id: int) -> bool:
    """Queue a thumbnail job; False, and a warning, if the layer cannot take it."""
    try:
        await layer.send("thumbnails", {"image_id": image_id})
    except LayerError as error:  # Redis down, an SQLite error, a closed layer
        logger.warning("thumbnail %d not queued: %s", image_id, error)
        return False
    return True


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        layer = get_layer(f"sqlite:///{Path(directory, 'layer.db')}")
        assert await queue_thumbnail(layer, 1)

        # Someone drops the layer's table: SQLite's error comes back as the cause.
        with closing(sqlite3.connect(Path(directory, "layer.db"))) as db:
            db.execute("DROP TABLE chanlite_messages")
        try:
            await layer.send("thumbnails", {"image_id": 2})
            raise AssertionError("a send to a dropped table succeeded")
        except LayerError as error:
            assert error.backend.startswith("SQLite database")
            assert isinstance(error.__cause__, sqlite3.OperationalError)

        # A closed layer refuses work the same way.
        await layer.aclose()
        assert not await queue_thumbnail(layer, 3)


if __name__ == "__main__":
    asyncio.run(main())
