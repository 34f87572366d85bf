"""Where a study lives: an SQLite file in the runs dir, or a shared database.

By default a study is an SQLite file, ``<runs_dir>/<study>/study.db``: nothing to set up,
and every ``--jobs`` worker on this machine shares it. ``--storage
postgresql://user:password@host/db`` puts it in PostgreSQL (MySQL URLs work too), where
any number of machines can work on it at once: Optuna's RDB storage hands out trial
numbers in database transactions, so there is no coordinator to run.

Every storage is opened with a heartbeat: a running trial writes one every
``heartbeat_interval`` seconds, and a trial whose worker stopped writing (a killed
process, a machine that went away) is marked failed by the next worker that starts a
trial and queued again with the same parameters
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_HEARTBEAT",
    "StorageError",
    "default_storage_url",
    "driver_url",
    "open_storage",
    "redact",
    "study_dir",
]

#: Seconds between a running trial's heartbeats; a trial silent for twice this long is
#: failed and retried.
DEFAULT_HEARTBEAT = 30

#: Times a trial whose worker died is queued again.
MAX_RETRIES = 3

#: Seconds to wait for a database server before giving up.
CONNECT_TIMEOUT = 10


class StorageError(RuntimeError):
    """The study's storage cannot be opened or read; the message is one line."""


def study_dir(runs_dir: str | Path, study: str) -> Path:
    """The folder of a study on this machine: its trials' runs, ``best.yaml`` and, with
    the default storage, ``study.db``."""
    return Path(runs_dir) / study


def default_storage_url(runs_dir: str | Path, study: str) -> str:
    """The SQLite URL of a study's default storage."""
    return f"sqlite:///{(study_dir(runs_dir, study) / 'study.db').resolve()}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and tables)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(
    url: str,
    *,
    heartbeat_interval: int = DEFAULT_HEARTBEAT,
    create: bool = True,
) -> Any:
    """An ``optuna.storages.RDBStorage`` on ``url`` with heartbeats and retries of
    stale trials. Raise :class:`StorageError` (one line, password hidden) when the
    database cannot be reached or is not an Optuna storage."""
    import optuna
    import sqlalchemy.exc

    given, url = url, driver_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            folder = Path(path).parent
            if not create and not Path(path).exists():
                raise StorageError(f"no study storage at {path}")
            folder.mkdir(parents=True, exist_ok=True)
        # Several local workers write to one file: wait for the lock rather than fail.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql") or url.startswith("mysql"):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES
                ),
            )
        except sqlalchemy.exc.ArgumentError:
            raise StorageError(f"{redact(given)} is not a database URL") from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise StorageError(
                f"cannot open the study storage {redact(given)}: {_reason(exc)}"
            ) from None
        except ImportError:
            raise StorageError(
                f"no database driver for {redact(given)} (the tune extra installs the "
                "PostgreSQL one, psycopg2-binary)"
            ) from None
        except (RuntimeError, ValueError) as exc:  # e.g. a schema from another Optuna
            raise StorageError(f"cannot use the study storage {redact(given)}: {exc}") from None


def driver_url(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed named in it.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg (version 3); the ``tune`` extra
    installs psycopg2, so a bare URL is pointed at it unless psycopg is there.
    ``postgres://`` (the form many hosting services print) means the same.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def _reason(exc: BaseException) -> str:
    """The driver's own message, first line only (sqlalchemy appends SQL and links)."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # psycopg2 puts the useful cause last ("Connection refused" / "Is the server running").
    useful = [line for line in lines if not line.startswith("(Background")]
    if not useful:
        return type(inner).__name__
    first = useful[0]
    return first if len(useful) == 1 else f"{first} {useful[1]}"
