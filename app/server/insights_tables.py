"""The conversation tables as the insights read them, and how question vectors are stored."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, MetaData, Table, inspect

from app.server.db import QuestionClusterRow, QuestionRow


class Tables:
    """The conversation tables as the database has them (reflected, not the models), so the
    reports read `messages.grounded/cited`, `sessions.assistant` and `handoffs` where the schema
    has them and fall back where it does not (older schemas)."""

    def __init__(self, engine: Engine) -> None:
        meta = MetaData()
        names = set(inspect(engine).get_table_names())
        self.messages = Table("messages", meta, autoload_with=engine)
        self.sessions = Table("sessions", meta, autoload_with=engine)
        self.feedback = Table("feedback", meta, autoload_with=engine)
        self.handoffs = (
            Table("handoffs", meta, autoload_with=engine) if "handoffs" in names else None
        )
        self.questions = QuestionRow.__table__
        self.clusters = QuestionClusterRow.__table__

    def column(self, table: Any, name: str) -> Any:
        return table.c.get(name)


def to_bytes(vector: np.ndarray, dtype: type = np.float16) -> bytes:
    return np.asarray(vector, dtype=dtype).tobytes()


def from_bytes(data: bytes, dtype: type = np.float16) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).astype(np.float32)
